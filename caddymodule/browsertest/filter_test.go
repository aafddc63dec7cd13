package browsertest_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestUITargetFilter checks that the targets table shows each target's
// filter (a declared one, and one added through the form), that an event
// no filter matched is listed with no delivery, that the form
// sends it and shows it back to edit, and that a filter that does not
// compile is refused with CEL's message in the banner.
func TestUITargetFilter(t *testing.T) {
	chromium := chromiumPath(t)
	g := startGateway(t, `
		webhook github {
			entrypoint github-in
			target prs database {
				filter body.action == "opened" && header["X-Github-Event"] == "pull_request"
			}
		}`)
	b := newBrowser(t, chromium)
	b.openAdminUI()
	b.waitFor("the declared webhook in the list", `document.querySelector('#webhooks tr[data-webhook-id] .webhook-link')?.textContent === 'github'`)
	b.click("the declared webhook", "#webhooks tr[data-webhook-id] .webhook-link")
	b.waitFor("its target prs", `document.querySelector('#targets tr[data-name="prs"]')`)
	if txt := b.text(`#targets tr[data-name="prs"] .target-filter`); !strings.Contains(txt, `body.action == "opened" && header["X-Github-Event"] == "pull_request"`) {
		b.fail("declared target's filter shown as %q", txt)
	}
	// An event its filter does not match: stored, shown with no delivery.
	id := g.mustIngest("github-in", `{"zen":"Design for failure."}`)
	b.waitFor("the event with no delivery", fmt.Sprintf(
		`(r => r && r.innerText.includes('no delivery'))(document.querySelector('tr[data-event-id=%q]'))`, id))

	b.openAdminUI()
	b.click("New webhook", "#new-webhook")
	b.fill("#webhook-name", "shop")
	b.click("Create webhook", "#create-webhook")
	b.waitFor("the new webhook's page", `location.hash.startsWith('#/webhooks/') && document.querySelector('h1')?.textContent.includes('shop')`)
	const pushes = `header["X-Github-Event"] == "push"`
	b.click("Add target", "#add-target")
	b.fill("#target-name", "pushes")
	b.set("#target-type", "database")
	b.set("#target-filter", pushes)
	b.click("Save target", "#save-target")
	b.waitFor("target pushes in the table", `document.querySelector('#targets tr[data-name="pushes"] .target-filter')`)
	if txt := b.text(`#targets tr[data-name="pushes"] .target-filter`); !strings.Contains(txt, pushes) {
		b.fail("added target's filter shown as %q", txt)
	}
	b.screenshot("target-filter")

	// Edit: the form holds the filter; a broken one is refused, CEL's
	// message in the banner, and the stored one stays.
	b.click("Edit pushes", `#targets tr[data-name="pushes"] .edit-target`)
	b.waitFor("the form with the filter", fmt.Sprintf(`document.querySelector('#target-filter')?.value === %q`, pushes))
	b.set("#target-filter", `header["X-Github-Event"] ==`)
	b.click("Save target", "#save-target")
	b.waitFor("the error banner", `(document.getElementById('banner-text')?.textContent || '').includes('Syntax error')`)
	b.set("#target-filter", "")
	b.click("Save target", "#save-target")
	b.waitFor("the filter removed", `document.querySelector('#targets tr[data-name="pushes"]') && !document.querySelector('#targets tr[data-name="pushes"] .target-filter')`)
	b.takeProblems() // the 400 of the broken filter is logged by the browser, as intended
}
