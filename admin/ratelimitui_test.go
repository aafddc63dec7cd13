package admin

import "testing"

// The target's row in the UI shows its rate limit and max_in_flight with
// its other delivery settings (deliverySettings, run as served, in Node,
// with el() reduced to its text).
func TestUIShowsTargetRateLimit(t *testing.T) {
	src := jsDeclaration(t, uiScript(), "deliverySettings") + `
function el(tag, attrs, ...kids) { return kids.join(''); }
console.log(deliverySettings({type: 'http', options: {rate_limit: {events: 50, window: '1s'}, max_in_flight: 4}}));
console.log(deliverySettings({type: 'http', options: {}}));
`
	b := runNode(t, src)
	want := "default retries · at most 50 per 1s · 4 in flight at most\ndefault retries\n"
	if string(b) != want {
		t.Errorf("deliverySettings shows %q, want %q", b, want)
	}
}
