package browsertest_test

// Browser tests of the event-log UI: a real headless Chromium, driven with
// chromedp, against a real in-process Caddy (gateway_test.go). Without
// Chromium they skip (naming the Debian package to install), except under
// CI=true, where .ci/run installs it and a missing browser is a failure.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// uiWait bounds each wait for the page; the UI polls every 3 s.
const uiWait = 30 * time.Second

// chromiumPath finds Chromium or skips the test (fails it under CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	msg := "headless Chromium not found (/usr/bin/chromium): install the Debian package chromium (apt-get install chromium) to run the browser tests"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// screenshotDir is $WEBHOOKER_SCREENSHOTS, or a directory of the test.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("WEBHOOKER_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one tab of a fresh headless Chromium.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string

	mu       sync.Mutex
	problems []string // uncaught exceptions and console errors of the page
}

func newBrowser(t *testing.T, chromium string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, shots: screenshotDir(t)}
	err := chromedp.Listen(ctx, func(ev any) {
		var problem string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			problem = "uncaught exception: " + d.Text
			if d.Exception != nil {
				problem += " " + d.Exception.Description
			}
		case *cdplog.EventEntryAdded:
			// Failed requests (source network) are the UI's to show; the
			// steps check that it does. Anything else is a problem, such
			// as a refusal by the Content-Security-Policy.
			if ev.Entry.Level == cdplog.EntryLevelError && ev.Entry.Source != cdplog.EntrySourceNetwork {
				problem = fmt.Sprintf("console (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if problem != "" {
			b.mu.Lock()
			b.problems = append(b.problems, problem)
			b.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return b
}

// takeProblems returns the page's errors since the last call.
func (b *browser) takeProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.problems
	b.problems = nil
	return p
}

// fail ends the test with a screenshot of the page and its error banner.
func (b *browser) fail(format string, args ...any) {
	b.t.Helper()
	msg := fmt.Sprintf(format, args...)
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if banner, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById('banner')||{}).innerText||''`)); err == nil && banner != "" {
		msg += "\nthe page's error banner: " + banner
	}
	if href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`)); err == nil {
		msg += "\nat " + href
	}
	if text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById('main')||document.body).innerText.slice(0, 3000)`)); err == nil {
		msg += "\nthe page says:\n" + text
	}
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		name := filepath.Join(b.shots, "failure-"+strings.ReplaceAll(b.t.Name(), "/", "_")+".png")
		if os.WriteFile(name, png, 0o644) == nil {
			msg += "\nscreenshot: " + name
		}
	}
	if p := b.takeProblems(); len(p) > 0 {
		msg += "\nbrowser errors:\n  " + strings.Join(p, "\n  ")
	}
	b.t.Fatal(msg)
}

// do runs actions, within uiWait.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression.
func uiEval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until the JavaScript expression is truthy.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	b.waitWithin(uiWait, what, expr)
}

// waitWithin is waitFor with a bound of its own, for what the server does
// at its pace (a bulk job) rather than what the page draws: under the
// race detector, beside the cluster tests' three Caddy processes, that
// took longer than uiWait.
func (b *browser) waitWithin(bound time.Duration, what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, bound+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")",
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(bound)))
	if err != nil {
		b.fail("waiting for %s (%s): %v", what, expr, err)
	}
}

func (b *browser) click(what, css string) {
	b.t.Helper()
	b.do("click "+what, chromedp.Click(chromedp.CSS(css)))
}

// fill types text into an empty input, as a user would.
func (b *browser) fill(css, text string) {
	b.t.Helper()
	b.set(css, "")
	b.do("fill "+css, chromedp.SendKeys(chromedp.CSS(css), text))
}

// set sets the value of an input or select and fires its input and change
// events, as a user's edit does.
func (b *browser) set(css, value string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q;
		e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); return true })()`, css, value)
	uiEval[bool](b, js)
}

func (b *browser) text(css string) string {
	b.t.Helper()
	return uiEval[string](b, fmt.Sprintf(`(document.querySelector(%q)||{}).innerText||''`, css))
}

// screenshot saves the whole page as name.png.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.fail("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// open navigates the tab to url and waits for the page to load. referrer is
// sent as the Referer (see openAdminUI).
func (b *browser) open(url, referrer string) {
	b.t.Helper()
	b.do("open "+url, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		loaded := chromedp.Events(ctx, page.LoadEventFired)
		res, err := cdp.Call(ctx, t, page.Navigate, page.NavigateParams{URL: url, Referrer: referrer})
		if err != nil {
			return chromedp.Void{}, err
		}
		if res.ErrorText != "" {
			return chromedp.Void{}, errors.New(res.ErrorText)
		}
		for _, err := range loaded {
			return chromedp.Void{}, err
		}
		return chromedp.Void{}, nil
	})
}

// openAdminUI opens the UI on Caddy's admin endpoint. Caddy v2.11 checks
// the Origin of every browser request there, reading it from Origin or
// else Referer, and refuses a request with neither (403): a navigation to
// a typed URL or a bookmark carries neither. The tab is sent there as by a
// link on the same origin, with a Referer; the page's own requests (its
// script, stylesheet and API calls) carry one by themselves.
func (b *browser) openAdminUI() {
	b.t.Helper()
	u := adminURL + "/webhooker/ui/"
	b.open(u, u)
}

func (b *browser) checkNoProblems() {
	b.t.Helper()
	if p := b.takeProblems(); len(p) > 0 {
		b.t.Errorf("the page logged errors:\n  %s", strings.Join(p, "\n  "))
	}
}

// uiAdminCall sends a JSON request to the admin API and decodes the answer.
func uiAdminCall(t *testing.T, method, path string, body any, want int) map[string]any {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, adminURL+"/webhooker"+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := adminClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d (%s), want %d", method, path, resp.StatusCode, data, want)
	}
	out := map[string]any{}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	return out
}

// closedPortURL is an http URL where nothing listens.
func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/gone"
}

// TestUIAdmin goes through the UI on the admin endpoint: create a webhook
// and its targets, watch events arrive without a reload, read one with its
// deliveries and attempts, redeliver it, and delete the webhook.
func TestUIAdmin(t *testing.T) {
	chromium := chromiumPath(t)
	g := startGateway(t, `
		webhook github {
			entrypoint github-push
			target ci http http://127.0.0.1:9/never {
				max_retries 2
			}
			target archive database
		}`)

	// The receiver refuses its first request, so that a delivery has a
	// failed attempt before it is delivered.
	var hits atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if hits.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":"database is restarting"}`)
			return
		}
		io.WriteString(w, `{"received":true}`)
	}))
	defer receiver.Close()
	dead := closedPortURL(t)

	b := newBrowser(t, chromium)
	b.openAdminUI()
	b.waitFor("the declared webhook in the list", `document.querySelector('#webhooks tr[data-webhook-id] .webhook-link')?.textContent === 'github'`)
	if row := b.text("#webhooks tbody"); !strings.Contains(row, "Caddyfile") || !strings.Contains(row, "none yet") {
		b.fail("declared webhook row %q: want it marked as the Caddyfile's, with no deliveries yet", row)
	}
	// Its counts did not create its event DB: its first event does.
	if _, err := os.Stat(g.eventDBPath("github")); !os.IsNotExist(err) {
		t.Errorf("the list created the event DB of a webhook with no event: %v", err)
	}
	// An event for the declared webhook, whose ci target is down.
	g.mustIngest("github-push", `{"ref":"refs/heads/main"}`)
	// A marker that only survives if the page is never reloaded.
	uiEval[bool](b, `window.__noReload = true`)

	// Create a webhook.
	b.click("New webhook", "#new-webhook")
	b.fill("#webhook-name", "orders")
	b.fill("#webhook-description", "Orders from the storefront")
	b.click("Create webhook", "#create-webhook")
	b.waitFor("the new webhook's page", `location.hash.startsWith('#/webhooks/') && document.querySelector('h1')?.textContent.includes('orders')`)
	whID := strings.TrimPrefix(uiEval[string](b, `location.hash`), "#/webhooks/")
	if b.text("#read-only-note") != "" {
		b.fail("an API webhook is shown as read-only")
	}

	// Its entrypoint URL, built from the prefix, is the one to POST to.
	b.set("#entrypoint-base", siteURL+"/hooks/")
	entrypointURL := b.text("#entrypoints code.entrypoint-url")
	if !strings.HasPrefix(entrypointURL, siteURL+"/hooks/") {
		b.fail("entrypoint URL %q does not start with %s/hooks/", entrypointURL, siteURL)
	}

	// Two http targets: one that fails once then answers, one that is down.
	addTarget := func(name, url, retries string) {
		b.click("Add target", "#add-target")
		b.fill("#target-name", name)
		b.fill("#target-url", url)
		b.fill("#target-max-retries", retries)
		b.fill("#target-backoff", "200ms")
		b.click("Save target", "#save-target")
		b.waitFor("target "+name+" in the table", fmt.Sprintf(`document.querySelector('#targets tr[data-name=%q]')`, name))
	}
	addTarget("receiver", receiver.URL+"/hook", "3")
	addTarget("dead", dead, "0")
	if txt := b.text(`#targets tr[data-name="dead"]`); !strings.Contains(txt, "closed") || !strings.Contains(txt, "0 retries") {
		b.fail("target row %q: want its circuit (closed) and 0 retries", txt)
	}
	b.waitFor("the empty event log", `document.getElementById('no-events')`)

	post := func(body string) string {
		req, _ := http.NewRequest(http.MethodPost, entrypointURL+"?source=test", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Shop-Topic", "orders/create")
		status, _, resp := g.do(req)
		if status != http.StatusOK {
			t.Fatalf("POST %s: %d %s", entrypointURL, status, resp)
		}
		return eventIDFrom(t, resp)
	}

	// The first event: the receiver's first attempt fails (then a retry
	// delivers it), the dead target fails for good.
	first := post(`{"order":1001,"total":"42.50","items":[{"sku":"A-1","qty":2}]}`)
	b.waitFor("the first event in the log, without a reload", fmt.Sprintf(`document.querySelector('tr[data-event-id=%q]')`, first))
	b.waitFor("the first event failed (dead) and delivered (receiver)", fmt.Sprintf(
		`(r => r && r.dataset.status === 'failed' && r.querySelector('.chip.st-delivered') && r.querySelector('.chip.st-failed'))(document.querySelector('tr[data-event-id=%q]'))`, first))

	// Disable the dead target: the next event is delivered.
	b.click("Disable dead", `#targets tr[data-name="dead"] .toggle-target`)
	b.waitFor("dead disabled", `document.querySelector('#targets tr[data-name="dead"]')?.classList.contains('inactive')`)
	second := post(`{"order":1002,"total":"9.90"}`)
	b.waitFor("the second event delivered", fmt.Sprintf(`document.querySelector('tr[data-event-id=%q]')?.dataset.status === 'delivered'`, second))
	if !uiEval[bool](b, `window.__noReload === true`) {
		b.fail("the page was reloaded")
	}
	b.screenshot("event-log")

	// The filter shows only events with a failed delivery.
	b.set("#event-filter", "failed")
	b.waitFor("only the failed event", fmt.Sprintf(`document.querySelectorAll('#event-table tr[data-event-id]').length === 1 && document.querySelector('tr[data-event-id=%q]')`, first))
	b.set("#event-filter", "")
	b.waitFor("both events again", `document.querySelectorAll('#event-table tr[data-event-id]').length === 2`)

	// The list shows the counts.
	b.click("the Webhooks crumb", `#crumbs a[href="#/"]`)
	b.waitFor("orders in the list with 2 events", fmt.Sprintf(
		`(r => r && r.querySelector('td.num')?.textContent === '2' && r.querySelector('.chip.st-failed'))(document.querySelector('#webhooks tr[data-webhook-id=%q]'))`, whID))
	b.screenshot("webhooks")

	// The first event, with every delivery and attempt.
	b.click("orders", fmt.Sprintf(`#webhooks tr[data-webhook-id=%q] .webhook-link`, whID))
	b.click("the first event", fmt.Sprintf(`tr[data-event-id=%q] a.event-link`, first))
	b.waitFor("the event page", `document.getElementById('deliveries')?.querySelectorAll('.delivery').length === 2`)
	b.waitFor("receiver: delivered on the second attempt after a 500", `(c => c && c.querySelectorAll('tr.attempt').length === 2 &&
		c.querySelector('tr.attempt[data-attempt="1"]').innerText.includes('500') &&
		c.querySelector('tr.attempt[data-attempt="1"]').innerText.includes('database is restarting') &&
		c.querySelector('tr.attempt[data-attempt="2"]').innerText.includes('200'))(
		[...document.querySelectorAll('.delivery')].find(d => d.innerText.includes('receiver') && d.dataset.status === 'delivered'))`)
	b.waitFor("dead: failed, refused", `[...document.querySelectorAll('.delivery')].some(d => d.dataset.status === 'failed' &&
		d.innerText.includes('dead') && d.innerText.includes('connection refused') && d.querySelectorAll('tr.attempt').length === 1)`)
	summary := b.text("#event-summary")
	for _, want := range []string{"POST", "/hooks/", "source=test", "application/json"} {
		if !strings.Contains(summary, want) {
			b.fail("event summary %q lacks %q", summary, want)
		}
	}
	if h := b.text("#request-headers"); !strings.Contains(h, "X-Shop-Topic") || !strings.Contains(h, "orders/create") {
		b.fail("request headers %q lack X-Shop-Topic", h)
	}
	if body := b.text("#event-body"); !strings.Contains(body, "\n  \"order\": 1001,") {
		b.fail("the JSON body is not pretty-printed: %q", body)
	}
	b.screenshot("event")

	// Redeliver: a new delivery to the active target (receiver), delivered.
	before := hits.Load()
	b.click("Redeliver", "#redeliver")
	b.waitFor("a third delivery, delivered", `document.querySelectorAll('.delivery').length === 3 &&
		[...document.querySelectorAll('.delivery')].filter(d => d.dataset.status === 'delivered').length === 2`)
	if hits.Load() != before+1 {
		t.Errorf("the receiver got %d requests on redelivery, want 1", hits.Load()-before)
	}

	// Delete the webhook, after confirming.
	b.click("the webhook crumb", fmt.Sprintf(`#crumbs a[href="#/webhooks/%s"]`, whID))
	b.click("Delete", "#delete-webhook")
	b.waitFor("the confirmation", `document.getElementById('confirm').open`)
	b.click("Cancel", "#confirm-cancel")
	b.waitFor("the confirmation closed", `!document.getElementById('confirm').open`)
	uiAdminCall(t, http.MethodGet, "/webhooks/"+whID, nil, http.StatusOK)
	b.click("Delete", "#delete-webhook")
	b.waitFor("the confirmation", `document.getElementById('confirm').open`)
	b.click("Delete webhook", "#confirm-ok")
	b.waitFor("the list without orders", fmt.Sprintf(`location.hash === '#/' && document.querySelector('#webhooks') && !document.querySelector('#webhooks tr[data-webhook-id=%q]')`, whID))
	uiAdminCall(t, http.MethodGet, "/webhooks/"+whID, nil, http.StatusNotFound)
	if _, err := os.Stat(filepath.Join(g.dataDir, "events-"+whID+".db")); !os.IsNotExist(err) {
		t.Errorf("the event DB of the deleted webhook: %v, want it gone", err)
	}
	if status, body := g.post(strings.TrimPrefix(entrypointURL, siteURL+"/hooks/"), `{}`); status != http.StatusNotFound {
		t.Errorf("POST to the deleted webhook's entrypoint: %d %s, want 404", status, body)
	}
	b.checkNoProblems()
}

// uiSiteConfig serves entrypoints and the tenant API (with the UI) on the
// test site, with data_dir dataDir.
func uiSiteConfig(dataDir string) string {
	return fmt.Sprintf(`{
%s
	webhooker {
		data_dir %s
	}
}

%s {
	webhooker /hooks/*
	webhooker_api
}
`, globalOptions(), dataDir, siteURL)
}

// TestUISignIn signs in to the UI of a webhooker_api site: a wrong key is
// refused with a message, a right one shows that user's webhooks only, and
// the key stays in sessionStorage.
func TestUISignIn(t *testing.T) {
	chromium := chromiumPath(t)
	g := startGateway(t, "")
	if status, body := loadConfig(t, uiSiteConfig(g.dataDir), "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("load the site config: %d %s", status, body)
	}
	users := map[string]string{} // name -> API key
	hooks := map[string]string{} // name -> webhook id
	for _, name := range []string{"alice", "bob"} {
		u := uiAdminCall(t, http.MethodPost, "/users", map[string]any{"name": name}, http.StatusCreated)
		id := u["id"].(string)
		k := uiAdminCall(t, http.MethodPost, "/users/"+id+"/api-keys", map[string]any{"name": "ui"}, http.StatusCreated)
		users[name] = k["key"].(string)
		wh := uiAdminCall(t, http.MethodPost, "/webhooks", map[string]any{"name": name + "-hooks", "user_id": id}, http.StatusCreated)
		hooks[name] = wh["id"].(string)
	}

	b := newBrowser(t, chromium)
	b.open(siteURL+"/webhooker/ui/", "")
	b.waitFor("the sign-in form", `document.getElementById('sign-in-form')`)

	b.fill("#api-key", "whk_not-a-key")
	b.click("Sign in", "#sign-in")
	b.waitFor("the refusal", `!document.getElementById('sign-in-error').hidden`)
	if msg := b.text("#sign-in-error"); !strings.Contains(msg, "refused") {
		b.fail("sign-in error %q does not say the key was refused", msg)
	}
	if uiEval[bool](b, `sessionStorage.length > 0 || localStorage.length > 0`) {
		b.fail("a refused key was kept in storage")
	}
	b.screenshot("sign-in-refused")

	b.fill("#api-key", users["alice"])
	b.click("Sign in", "#sign-in")
	b.waitFor("alice's webhooks", fmt.Sprintf(`document.querySelector('#webhooks tr[data-webhook-id=%q]')`, hooks["alice"]))
	if uiEval[bool](b, fmt.Sprintf(`!!document.querySelector('#webhooks tr[data-webhook-id=%q]')`, hooks["bob"])) {
		b.fail("alice sees bob's webhook")
	}
	if n := uiEval[int](b, `document.querySelectorAll('#webhooks tr[data-webhook-id]').length`); n != 1 {
		b.fail("alice sees %d webhooks, want 1", n)
	}
	key := users["alice"]
	if got := uiEval[string](b, `sessionStorage.getItem('webhooker.apiKey')`); got != key {
		b.fail("sessionStorage holds %q, want the key", got)
	}
	if uiEval[bool](b, fmt.Sprintf(`JSON.stringify(localStorage).includes(%q) || location.href.includes(%q)`, key, key)) {
		b.fail("the key is in localStorage or the URL")
	}

	// Bob's webhook, by its id, does not exist for alice.
	uiEval[string](b, fmt.Sprintf(`location.hash = '#/webhooks/%s'`, hooks["bob"]))
	b.waitFor("not found", `!document.getElementById('banner').hidden`)
	if msg := b.text("#banner-text"); !strings.Contains(msg, "no webhook") {
		b.fail("banner %q: want the API's 404 message", msg)
	}

	// Alice's own webhook opens; signing out forgets the key.
	uiEval[string](b, fmt.Sprintf(`location.hash = '#/webhooks/%s'`, hooks["alice"]))
	b.waitFor("alice's webhook page", `document.querySelector('h1')?.textContent.includes('alice-hooks')`)
	b.click("Sign out", "#sign-out")
	b.waitFor("the sign-in form again", `document.getElementById('sign-in-form')`)
	if uiEval[bool](b, `sessionStorage.length > 0`) {
		b.fail("the key outlived sign-out")
	}
	b.checkNoProblems()
}
