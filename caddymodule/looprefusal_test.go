package caddymodule_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/webhooker/caddy-webhooker/engine"
)

// TestIngestLoopRefused sends requests carrying the hop marker of
// deliveries: one that names this gateway (its Caddy instance id) is a
// delivery of its own coming back, and gets 508 with nothing stored, however
// the header is spelled; one that names only other gateways is stored.
func TestIngestLoopRefused(t *testing.T) {
	g := startGateway(t, `
		webhook looped {
			entrypoint looped-in
			target archive database
		}
`)
	instance, err := caddy.InstanceID()
	if err != nil {
		t.Fatal(err)
	}
	self := instance.String()
	manyHops := make([]string, 33)
	for i := range manyHops {
		manyHops[i] = "gw-" + string(rune('a'+i%26))
	}
	for _, c := range []struct {
		name string
		via  []string // one header line each
		want int
	}{
		{"this gateway", []string{self}, http.StatusLoopDetected},
		{"this gateway after another", []string{"gw-upstream, " + self}, http.StatusLoopDetected},
		{"this gateway on a second header line", []string{"gw-upstream", " " + self + " "}, http.StatusLoopDetected},
		{"a chain longer than any sane one", []string{strings.Join(manyHops, ",")}, http.StatusLoopDetected},
		{"another gateway", []string{"some-other-gw"}, http.StatusOK},
		{"no marker", nil, http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := g.storedEvents("looped")
			req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/looped-in", strings.NewReader(`{"n":1}`))
			req.Header.Set("Content-Type", "application/json")
			for _, v := range c.via {
				req.Header.Add(engine.HopHeader, v)
			}
			status, _, body := g.do(req)
			if status != c.want {
				t.Fatalf("status %d (%s), want %d", status, body, c.want)
			}
			stored := g.storedEvents("looped") - before
			switch {
			case c.want == http.StatusOK && stored != 1:
				t.Errorf("%d events stored, want the one acknowledged", stored)
			case c.want != http.StatusOK && stored != 0:
				t.Errorf("%d events stored by a refused request, want none", stored)
			}
		})
	}
}
