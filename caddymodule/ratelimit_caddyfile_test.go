package caddymodule_test

import (
	"strings"
	"testing"
)

// rate_limit and max_in_flight: their mistakes refused at their line, and
// what they adapt to.
func TestCaddyfileRateLimitOptions(t *testing.T) {
	in := func(opts string) string {
		return "webhook a {\n\ttarget t http https://example.com/ {\n" + opts + "\n\t}\n}"
	}
	checkCaddyfileMistakes(t, []caddyfileMistake{
		{"rate_limit one argument", in("\t\trate_limit 50"), 5, "rate_limit: want <events> <window>, such as 50 1s"},
		{"rate_limit events 0", in("\t\trate_limit 0 1s"), 5, `rate_limit events "0": want a whole number, 1 or more`},
		{"rate_limit events not a number", in("\t\trate_limit many 1s"), 5, `rate_limit events "many"`},
		{"rate_limit events over the bound", in("\t\trate_limit 1000001 1s"), 5, "rate_limit events 1000001: want 1 to 1000000 (operator limits)"},
		{"rate_limit window under 1s", in("\t\trate_limit 5 500ms"), 5, "rate_limit window 500ms: want 1s to 1h0m0s"},
		{"rate_limit window over 1h", in("\t\trate_limit 5 2h"), 5, "rate_limit window 2h0m0s: want 1s to 1h0m0s"},
		{"rate_limit window 0", in("\t\trate_limit 5 0s"), 5, "rate_limit window: want a duration over 0"},
		{"rate_limit twice", in("\t\trate_limit 5 1s\n\t\trate_limit 6 1s"), 6, "rate_limit is set twice"},
		{"max_in_flight 0", in("\t\tmax_in_flight 0"), 5, "max_in_flight 0: want a whole number, 1 or more"},
		{"max_in_flight over the bound", in("\t\tmax_in_flight 5000"), 5, "max_in_flight 5000: want 1 to 4096 (operator limits)"},
		{"rate_limit on a database target", "webhook a {\n\ttarget t database {\n\t\trate_limit 5 1s\n\t}\n}", 5,
			"rate_limit is an option of http targets"},
	})
	raw, err := adaptWebhooker(t, "{\n\twebhooker {\n"+in("\t\trate_limit 5000 1m\n\t\tmax_in_flight 4")+"\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := `"options":{"rate_limit":{"events":5000,"window":"1m0s"},"max_in_flight":4}`; !strings.Contains(string(raw), want) {
		t.Errorf("adapted to %s, want it to hold %s", raw, want)
	}
}

// A JSON config gets the same checks, and max_in_flight over the workers
// is refused (that many could never be in flight).
func TestJSONConfigRateLimitChecks(t *testing.T) {
	target := func(options string) string {
		return `{"workers":8,"webhooks":[{"name":"a","targets":[{"name":"t","type":"http","url":"https://example.com/","options":` + options + `}]}]}`
	}
	for _, c := range []struct{ name, config, want string }{
		{"events 0", target(`{"rate_limit":{"events":0,"window":"1s"}}`), "webhook a: target t: rate_limit events 0: want 1 to 1000000"},
		{"no window", target(`{"rate_limit":{"events":5}}`), "webhook a: target t: rate_limit window 0s: want 1s to 1h0m0s"},
		{"max_in_flight over the workers", target(`{"max_in_flight":9}`), "webhook a: target t: max_in_flight 9 is over workers 8"},
	} {
		t.Run(c.name, func(t *testing.T) { checkJSONConfig(t, c.config, c.want) })
	}
}
