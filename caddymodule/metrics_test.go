package caddymodule_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestMetricsOnCaddysEndpoint checks that ingest answers and delivery
// attempts are counted, and the engine's gauges exported, on the /metrics
// of Caddy's admin endpoint.
func TestMetricsOnCaddysEndpoint(t *testing.T) {
	g := startGateway(t, `
		webhook counted {
			entrypoint counted-in
			target audit log
		}
`)
	g.mustIngest("counted-in", `{"n":1}`)
	if status, _ := g.post("no-such-key", `{}`); status != http.StatusNotFound {
		t.Fatalf("unknown key answered %d", status)
	}
	value := func(body, series string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(adminURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		want := map[string]float64{
			`caddy_webhooker_ingest_requests_total{code="200"}`:                             value(body, `caddy_webhooker_ingest_requests_total{code="200"}`),
			`caddy_webhooker_ingest_requests_total{code="404"}`:                             value(body, `caddy_webhooker_ingest_requests_total{code="404"}`),
			`caddy_webhooker_delivery_attempts_total{status="delivered",target_type="log"}`: value(body, `caddy_webhooker_delivery_attempts_total{status="delivered",target_type="log"}`),
		}
		ok := true
		for _, v := range want {
			ok = ok && v >= 1
		}
		gauges := value(body, `caddy_webhooker_delivery_queue_length{queue="fresh"}`) >= 0 &&
			value(body, `caddy_webhooker_delivery_queue_length{queue="retry"}`) >= 0 &&
			value(body, `caddy_webhooker_retry_timers`) >= 0 &&
			value(body, `caddy_webhooker_intake_events{state="unapplied"}`) >= 0 &&
			value(body, `caddy_webhooker_intake_events{state="unsynced"}`) >= 0 &&
			value(body, `caddy_webhooker_intake_memory_bytes`) >= 0 &&
			value(body, `caddy_webhooker_intake_events{state="spilled"}`) >= 0 &&
			value(body, `caddy_webhooker_intake_bytes`) >= 0 &&
			value(body, `caddy_webhooker_intake_apply_pauses_total`) >= 0 &&
			value(body, `caddy_webhooker_open_event_dbs`) >= 1 // the webhook that took the events
		if ok && gauges {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics missing or zero: %v (gauges present: %v)", want, gauges)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
