package admin

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The target's row in the UI shows its rate limit and max_in_flight with
// its other delivery settings (deliverySettings, run as served, in Node,
// with el() reduced to its text).
func TestUIShowsTargetRateLimit(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node not found: install Node.js (apt-get install nodejs) to test the UI's script")
		}
		t.Skip("node not found: install Node.js to test the UI's script")
	}
	src := jsDeclaration(t, uiScript(), "deliverySettings") + `
function el(tag, attrs, ...kids) { return kids.join(''); }
console.log(deliverySettings({type: 'http', options: {rate_limit: {events: 50, window: '1s'}, max_in_flight: 4}}));
console.log(deliverySettings({type: 'http', options: {}}));
`
	cmd := exec.Command(node, "--input-type=module", "-")
	cmd.Stdin = strings.NewReader(src)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, b)
	}
	want := "default retries · at most 50 per 1s · 4 in flight at most\ndefault retries\n"
	if string(b) != want {
		t.Errorf("deliverySettings shows %q, want %q", b, want)
	}
}
