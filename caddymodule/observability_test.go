package caddymodule_test

// What an operator sees of failures, through a real in-process Caddy: a
// target that fails until a delivery gives up and its breaker opens, then
// recovers. The alerts arrive as Caddy events (to a test events handler
// subscribed in the Caddyfile's events option) and at the operational
// webhook, signed; the metrics name the webhook and target, or fold them.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddyfilelib "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/webhooker/caddy-webhooker/storage"
)

func init() {
	caddy.RegisterModule(eventRecorder{})
}

// recordedEvents receives the Caddy events the recorder is subscribed to.
var recordedEvents = make(chan caddy.Event, 64)

// eventRecorder is an events handler (events.handlers.webhooker_test_recorder)
// that hands each event to recordedEvents.
type eventRecorder struct{}

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "events.handlers.webhooker_test_recorder",
		New: func() caddy.Module { return new(eventRecorder) },
	}
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	select {
	case recordedEvents <- e:
	default:
		return fmt.Errorf("the test's event channel is full: %s dropped", e.Name())
	}
	return nil
}

func (*eventRecorder) UnmarshalCaddyfile(d *caddyfilelib.Dispenser) error {
	d.Next()
	return nil
}

// nextEvents waits for the next recorded events, one of each name in any
// order (the engine tells of a breaker opening and of the attempt that
// opened it giving up in either order); any other event fails the test.
func nextEvents(t *testing.T, names ...string) map[string]map[string]any {
	t.Helper()
	got := make(map[string]map[string]any)
	for range names {
		select {
		case e := <-recordedEvents:
			if _, dup := got[e.Name()]; dup || !slices.Contains(names, e.Name()) {
				t.Fatalf("Caddy event %s %v, want one each of %v", e.Name(), e.Data, names)
			}
			got[e.Name()] = e.Data
		case <-time.After(20 * time.Second):
			t.Fatalf("Caddy events %v, want one each of %v", got, names)
		}
	}
	return got
}

// scrapeMetrics reads Caddy's /metrics.
func scrapeMetrics(t *testing.T) string {
	t.Helper()
	resp, err := adminClient.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// seriesValue is the value of the series of metric whose labels include
// all of labels (`name="value"` each), or -1 when there is none.
func seriesValue(body, metric string, labels ...string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(metric) + `\{([^}]*)\} (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		ok := true
		for _, l := range labels {
			ok = ok && regexp.MustCompile(`(^|,)`+regexp.QuoteMeta(l)+`(,|$)`).MatchString(m[1])
		}
		if ok {
			v, _ := strconv.ParseFloat(m[2], 64)
			return v
		}
	}
	return -1
}

// waitMetric waits until the series reaches at least want.
func waitMetric(t *testing.T, want float64, metric string, labels ...string) string {
	t.Helper()
	var body string
	eventually(t, 20*time.Second, func() bool {
		body = scrapeMetrics(t)
		return seriesValue(body, metric, labels...) >= want
	}, fmt.Sprintf("%s%v to reach %v", metric, labels, want))
	return body
}

// observedConfig is a config whose one webhook has a target at url that
// gives up at once and opens its breaker after one failure, with Caddy
// events to the recorder and alerts to alertsURL.
func observedConfig(dataDir, url, alertsURL, extra string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	events {
		on webhooker.delivery_exhausted webhooker_test_recorder
		on webhooker.breaker_opened webhooker_test_recorder
		on webhooker.breaker_closed webhooker_test_recorder
		on webhooker.target_paused webhooker_test_recorder
		on webhooker.target_resumed webhooker_test_recorder
	}
	webhooker {
		data_dir %s
		operational_webhook %s {
			signing_secret %s
		}
%s
		webhook flaky {
			entrypoint flaky-in
			target app http %s {
				max_retries 0
				breaker 1 3s
			}
		}
	}
}

http://localhost:9080 {
	webhooker /hooks/*
}
`, dataDir, alertsURL, testSecret, extra, url)
}

func TestFailuresSeenInEventsAlertsAndMetrics(t *testing.T) {
	var healthy atomic.Bool
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			http.Error(w, "down for maintenance", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(target.Close)
	type alert struct {
		header http.Header
		body   map[string]any
	}
	alerts := make(chan alert, 64)
	alertsServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		alerts <- alert{r.Header.Clone(), body}
	}))
	t.Cleanup(alertsServer.Close)

	g := startGateway(t, "")
	for len(recordedEvents) > 0 { // another test's leftovers
		<-recordedEvents
	}
	if status, body := loadConfig(t, observedConfig(g.dataDir, target.URL+"/hook", alertsServer.URL+"/alerts", ""), "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("load: %d %s", status, body)
	}
	webhookID := storage.DeclaredWebhookID("flaky")
	targetID := storage.DeclaredTargetID(webhookID, "app")

	// The target answers 500: the delivery gives up at once and the
	// breaker opens.
	first := g.mustIngest("flaky-in", `{"n":1}`)
	events := nextEvents(t, "webhooker.delivery_exhausted", "webhooker.breaker_opened")
	exhausted := events["webhooker.delivery_exhausted"]
	for k, want := range map[string]any{"webhook_name": "flaky", "webhook_id": webhookID, "target_name": "app",
		"target_id": targetID, "event_id": first, "attempts": 1} {
		if exhausted[k] != want {
			t.Errorf("delivery_exhausted %s = %v, want %v (%v)", k, exhausted[k], want, exhausted)
		}
	}
	if e, _ := exhausted["error"].(string); !strings.Contains(e, "500") {
		t.Errorf("delivery_exhausted error %q does not name the 500", e)
	}
	opened := events["webhooker.breaker_opened"]
	if opened["target_name"] != "app" || opened["retry_at"] == nil {
		t.Errorf("breaker_opened %v, want target app and retry_at", opened)
	}

	// The same alerts at the operational webhook, signed.
	types := make(map[any]bool)
	for range 2 {
		select {
		case a := <-alerts:
			types[a.body["type"]] = true
			if a.header.Get("Webhook-Signature") == "" || a.header.Get("Webhook-Id") == "" {
				t.Errorf("operational webhook got %v with headers %v, want it signed", a.body, a.header)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("the operational webhook got %v, want delivery.exhausted and breaker.opened", types)
		}
	}
	if !types["delivery.exhausted"] || !types["breaker.opened"] {
		t.Errorf("the operational webhook got %v, want delivery.exhausted and breaker.opened", types)
	}

	labels := []string{`webhook="flaky"`, `webhook_id="` + webhookID + `"`, `target="app"`}
	body := waitMetric(t, 1, "caddy_webhooker_attempts_total", append(labels, `target_type="http"`, `status="failed"`)...)
	for metric, want := range map[string]float64{
		"caddy_webhooker_deliveries_exhausted_total":     1,
		"caddy_webhooker_breaker_openings_total":         1,
		"caddy_webhooker_attempt_duration_seconds_count": 1,
	} {
		if v := seriesValue(body, metric, labels...); v != want {
			t.Errorf("%s%v = %v, want %v", metric, labels, v, want)
		}
	}
	if v := seriesValue(body, "caddy_webhooker_events_ingested_total", labels[:2]...); v != 1 {
		t.Errorf("events_ingested_total = %v, want 1", v)
	}
	if v := seriesValue(body, "caddy_webhooker_breaker_state", append(labels, `state="open"`)...); v != 1 {
		t.Errorf("breaker_state open = %v, want 1\n%s", v, grepLines(body, "breaker_state"))
	}

	// Well again: the next event waits for the breaker's cooldown (an open
	// delivery, so an oldest age), then its probe closes the breaker.
	healthy.Store(true)
	second := g.mustIngest("flaky-in", `{"n":2}`)
	if v := seriesValue(scrapeMetrics(t), "caddy_webhooker_oldest_open_delivery_age_seconds", labels[:2]...); v < 0 {
		t.Errorf("no oldest open delivery age for the webhook while its delivery waits for the breaker")
	}
	closed := nextEvents(t, "webhooker.breaker_closed")["webhooker.breaker_closed"]
	if closed["target_name"] != "app" {
		t.Errorf("breaker_closed %v", closed)
	}
	waitDelivery(t, g.eventDB("flaky"), second, storage.DeliveryDelivered)
	body = waitMetric(t, 1, "caddy_webhooker_attempts_total", append(labels, `status="delivered"`)...)
	if strings.Contains(body, "caddy_webhooker_breaker_state{") {
		t.Errorf("a breaker state is still reported after it closed:\n%s", grepLines(body, "breaker_state"))
	}
	if v := seriesValue(body, "caddy_webhooker_oldest_open_delivery_age_seconds", labels[:2]...); v >= 0 {
		t.Errorf("oldest open delivery age %v with nothing open", v)
	}

	// Pausing and resuming the target are alerts too.
	for _, c := range []struct{ action, event string }{{"pause", "webhooker.target_paused"}, {"resume", "webhooker.target_resumed"}} {
		if a := g.admin("POST", "/webhooks/"+webhookID+"/targets/"+targetID+"/"+c.action, nil); a.status != http.StatusOK {
			t.Fatalf("%s the target: %s", c.action, a)
		}
		if e := nextEvents(t, c.event)[c.event]; e["target_name"] != "app" || e["webhook_name"] != "flaky" {
			t.Errorf("%s: %v", c.event, e)
		}
	}

	// Folded: the same config with metrics_per_target off counts without
	// the webhook and target.
	if status, b := loadConfig(t, observedConfig(g.dataDir, target.URL+"/hook", alertsServer.URL+"/alerts", "\t\tmetrics_per_target off"), "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("reload: %d %s", status, b)
	}
	third := g.mustIngest("flaky-in", `{"n":3}`)
	waitDelivery(t, g.eventDB("flaky"), third, storage.DeliveryDelivered)
	body = waitMetric(t, 1, "caddy_webhooker_attempts_total", `webhook=""`, `target=""`, `target_type="http"`, `status="delivered"`)
	if v := seriesValue(body, "caddy_webhooker_events_ingested_total", `webhook=""`); v != 1 {
		t.Errorf("folded events_ingested_total = %v, want 1", v)
	}
	if v := seriesValue(body, "caddy_webhooker_attempts_total", append(labels, `status="delivered"`)...); v != 1 {
		t.Errorf("per-target delivered = %v, want it left at 1 once folded", v)
	}
}

// grepLines is the lines of body that contain s.
func grepLines(body, s string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
