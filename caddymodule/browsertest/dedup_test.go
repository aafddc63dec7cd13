package browsertest_test

import (
	"strings"
	"testing"
)

// TestUIWebhookDedup checks that a webhook's page shows its dedup (a
// declared one, and one set through the form), that the edit form holds
// it, and that an expression that does not compile is refused with CEL's
// message in the banner, the stored dedup kept.
func TestUIWebhookDedup(t *testing.T) {
	chromium := chromiumPath(t)
	startGateway(t, `
		webhook github {
			dedup header X-GitHub-Delivery 48h
			entrypoint github-in
		}`)
	b := newBrowser(t, chromium)
	b.openAdminUI()
	b.waitFor("the declared webhook in the list", `document.querySelector('#webhooks tr[data-webhook-id] .webhook-link')?.textContent === 'github'`)
	b.click("the declared webhook", "#webhooks tr[data-webhook-id] .webhook-link")
	b.waitFor("its dedup", `document.querySelector('#webhook-dedup')`)
	if txt := b.text("#webhook-dedup"); !strings.Contains(txt, "header X-GitHub-Delivery for 48h") {
		b.fail("declared webhook's dedup shown as %q", txt)
	}

	b.openAdminUI()
	b.click("New webhook", "#new-webhook")
	b.fill("#webhook-name", "stripe")
	b.set("#webhook-dedup-kind", "expression")
	b.set("#webhook-dedup-source", "body.id")
	b.set("#webhook-dedup-window", "2h")
	b.click("Create webhook", "#create-webhook")
	b.waitFor("the new webhook's page", `location.hash.startsWith('#/webhooks/') && document.querySelector('h1')?.textContent.includes('stripe')`)
	b.waitFor("its dedup", `document.querySelector('#webhook-dedup')`)
	if txt := b.text("#webhook-dedup"); !strings.Contains(txt, "body.id for 2h") {
		b.fail("created webhook's dedup shown as %q", txt)
	}
	b.screenshot("webhook-dedup")

	b.click("Edit", "#edit-webhook")
	b.waitFor("the form with the dedup", `document.querySelector('#webhook-dedup-source')?.value === 'body.id' && document.querySelector('#webhook-dedup-kind')?.value === 'expression' && document.querySelector('#webhook-dedup-window')?.value === '2h'`)
	b.set("#webhook-dedup-source", "body.id ==")
	b.click("Save", "#save-webhook")
	b.waitFor("the error banner", `(document.getElementById('banner-text')?.textContent || '').includes('Syntax error')`)
	b.set("#webhook-dedup-kind", "")
	b.click("Save", "#save-webhook")
	b.waitFor("the dedup removed", `document.querySelector('h1')?.textContent.includes('stripe') && !document.querySelector('#webhook-dedup')`)
	b.takeProblems() // the 400 of the broken expression is logged by the browser, as intended
}
