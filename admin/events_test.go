package admin_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// eventFixture is a webhook with an http target (a receiver that refuses
// bodies with "fail", without retries) and a database target.
type eventFixture struct {
	*env
	rc        *receiver
	webhook   webhookJSON
	key       string
	http, db  targetJSON
	eventsURL string
}

func newEventFixture(t *testing.T) *eventFixture {
	e := newEnv(t)
	f := &eventFixture{env: e, rc: newReceiver(t)}
	f.webhook = e.createWebhook("shop")
	f.key = f.webhook.Entrypoints[0].Key
	f.http = e.addTarget(f.webhook.ID, map[string]any{
		"name": "crm", "type": "http", "url": f.rc.URL + "/in",
		"options": map[string]any{"max_retries": 0, "timeout": "5s", "breaker_threshold": 0,
			"headers": map[string]string{"X-Gateway": "webhooker"}},
	})
	f.db = e.addTarget(f.webhook.ID, map[string]any{"name": "archive", "type": "database"})
	f.eventsURL = "/webhooker/webhooks/" + f.webhook.ID + "/events"
	return f
}

func (f *eventFixture) detail(id string) eventJSON {
	f.t.Helper()
	var ev eventJSON
	f.must(http.StatusOK, "GET", f.eventsURL+"/"+id, nil, &ev)
	return ev
}

// settled waits until no delivery of event id is pending or retrying.
func (f *eventFixture) settled(id string, deliveries int) eventJSON {
	f.t.Helper()
	var ev eventJSON
	eventually(f.t, "deliveries of "+id, func() (bool, string) {
		ev = f.detail(id)
		if len(ev.Deliveries) != deliveries {
			return false, fmt.Sprintf("%d deliveries, want %d", len(ev.Deliveries), deliveries)
		}
		for _, d := range ev.Deliveries {
			if d.Status == "pending" || d.Status == "retrying" {
				return false, fmt.Sprintf("%+v", ev.Deliveries)
			}
		}
		return true, ""
	})
	return ev
}

func (f *eventFixture) page(query string) eventPage {
	f.t.Helper()
	var p eventPage
	f.must(http.StatusOK, "GET", f.eventsURL+query, nil, &p)
	return p
}

func TestEventListNewestFirstWithPagingAndStatus(t *testing.T) {
	f := newEventFixture(t)
	base := time.Now().Add(-time.Hour)
	var ids []string // oldest first
	for i := range 7 {
		body := fmt.Sprintf(`{"n":%d}`, i)
		if i == 2 || i == 5 {
			body = fmt.Sprintf(`{"n":%d,"fail":true}`, i)
		}
		ids = append(ids, f.ingest(f.key, incoming{body: []byte(body), contentType: "application/json",
			receivedAt: base.Add(time.Duration(i) * time.Second)}))
	}
	for _, id := range ids {
		f.settled(id, 2)
	}
	newest := slices.Clone(ids)
	slices.Reverse(newest)

	all := f.page("")
	var got []string
	for _, ev := range all.Events {
		got = append(got, ev.ID)
	}
	if !slices.Equal(got, newest) {
		t.Fatalf("list = %v, want newest first %v", got, newest)
	}
	if all.NextBefore != "" {
		t.Errorf("next_before = %q on the last page", all.NextBefore)
	}
	row := all.Events[0]
	if row.Method != "POST" || row.Path != "/hooks/"+f.key || row.ContentType != "application/json" ||
		row.BodySize != len(`{"n":6}`) || row.ReceivedAt.IsZero() {
		t.Errorf("row = %+v", row)
	}
	if len(row.Deliveries) != 2 {
		t.Fatalf("row deliveries = %+v", row.Deliveries)
	}
	statuses := map[string]string{}
	for _, d := range row.Deliveries {
		statuses[d.TargetName] = d.Status
		if (d.TargetName == "crm" && (d.TargetType != "http" || d.TargetID != f.http.ID)) ||
			(d.TargetName == "archive" && (d.TargetType != "database" || d.TargetID != f.db.ID)) {
			t.Errorf("delivery %+v: wrong target", d)
		}
		if d.Attempts != 1 {
			t.Errorf("delivery %+v: want 1 attempt", d)
		}
	}
	if statuses["crm"] != "delivered" || statuses["archive"] != "delivered" {
		t.Errorf("statuses of the newest event = %v", statuses)
	}

	// Pages of 3: 3 + 3 + 1, each continuing where the last stopped.
	var paged []string
	query := "?limit=3"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("paging does not end: %v", paged)
		}
		p := f.page(query)
		for _, ev := range p.Events {
			paged = append(paged, ev.ID)
		}
		if p.NextBefore == "" {
			if len(p.Events) == 3 {
				t.Errorf("a full page without next_before")
			}
			break
		}
		if p.NextBefore != p.Events[len(p.Events)-1].ID {
			t.Errorf("next_before %s is not the last row", p.NextBefore)
		}
		query = "?limit=3&before=" + p.NextBefore
	}
	if !slices.Equal(paged, newest) {
		t.Errorf("pages = %v, want every event once, newest first %v", paged, newest)
	}
	if p := f.page("?before=" + ids[3]); len(p.Events) != 3 || p.Events[0].ID != ids[2] {
		t.Errorf("before %s = %+v, want the 3 older events", ids[3], p.Events)
	}

	// Status filter: events with a delivery in that status.
	failed := f.page("?status=failed")
	if len(failed.Events) != 2 || failed.Events[0].ID != ids[5] || failed.Events[1].ID != ids[2] {
		t.Errorf("status=failed = %+v, want events 5 and 2", failed.Events)
	}
	for _, ev := range failed.Events {
		if len(ev.Deliveries) != 2 {
			t.Errorf("a filtered row shows %d deliveries, want all of them", len(ev.Deliveries))
		}
		for _, d := range ev.Deliveries {
			if d.TargetName == "crm" && (d.Status != "failed" || !strings.Contains(d.LastError, "500")) {
				t.Errorf("failed delivery %+v", d)
			}
		}
	}
	if p := f.page("?status=failed&limit=1"); len(p.Events) != 1 || p.NextBefore != ids[5] {
		t.Errorf("status=failed&limit=1 = %+v", p)
	} else if p2 := f.page("?status=failed&limit=1&before=" + p.NextBefore); len(p2.Events) != 1 || p2.Events[0].ID != ids[2] {
		t.Errorf("second page of failed = %+v", p2)
	}
	if p := f.page("?status=delivered"); len(p.Events) != 7 {
		t.Errorf("status=delivered lists %d events, want 7 (the database target delivers all)", len(p.Events))
	}
	if p := f.page("?status=pending"); len(p.Events) != 0 {
		t.Errorf("status=pending = %+v, want none", p.Events)
	}

	// Bad parameters.
	for _, q := range []string{"?limit=0", "?limit=-1", "?limit=x", "?status=lost", "?before=not-an-id"} {
		resp := f.call("GET", f.eventsURL+q, nil)
		if resp.status != http.StatusBadRequest {
			t.Errorf("GET events%s: %d %s, want 400", q, resp.status, resp)
			continue
		}
		resp.errorMessage(t)
	}
	if resp := f.call("GET", f.eventsURL+"?before="+uuid.NewString(), nil); resp.status != http.StatusNotFound {
		t.Errorf("before an unknown event: %d %s, want 404", resp.status, resp)
	}
	if p := f.page("?limit=100000"); len(p.Events) != 7 {
		t.Errorf("a huge limit is capped, not refused: %d events", len(p.Events))
	}
}

func TestEventDetail(t *testing.T) {
	f := newEventFixture(t)
	header := http.Header{"X-Shop-Topic": {"orders/create"}, "User-Agent": {"shop/1.0"}}
	jsonID := f.ingest(f.key, incoming{body: []byte(`{"order":42,"name":"Zoë"}`), contentType: "application/json",
		query: "a=1&b=two", header: header})
	binary := []byte{0x00, 0xff, 0xfe, 'f', 'a', 'i', 'l', 0x80}
	binID := f.ingest(f.key, incoming{body: binary, contentType: "application/octet-stream"})

	ev := f.settled(jsonID, 2)
	if ev.ID != jsonID || ev.WebhookID != f.webhook.ID || ev.EntrypointID != f.webhook.Entrypoints[0].ID ||
		ev.Method != "POST" || ev.Path != "/hooks/"+f.key || ev.Query != "a=1&b=two" ||
		ev.ContentType != "application/json" || ev.RemoteAddr != "192.0.2.7:41000" {
		t.Errorf("event = %+v", ev)
	}
	if ev.Body != `{"order":42,"name":"Zoë"}` || ev.BodyEncoding != "text" || ev.BodySize != len(`{"order":42,"name":"Zoë"}`) {
		t.Errorf("body %q (%s, %d), want the JSON as text", ev.Body, ev.BodyEncoding, ev.BodySize)
	}
	if ev.Headers.Get("X-Shop-Topic") != "orders/create" || ev.Headers.Get("User-Agent") != "shop/1.0" {
		t.Errorf("headers = %v", ev.Headers)
	}
	byName := map[string]deliveryJSON{}
	for _, d := range ev.Deliveries {
		byName[d.TargetName] = d
	}
	crm, archive := byName["crm"], byName["archive"]
	if crm.TargetType != "http" || crm.Status != "delivered" || crm.Attempts != 1 || len(crm.Results) != 1 {
		t.Fatalf("crm delivery = %+v", crm)
	}
	if r := crm.Results[0]; r.Attempt != 1 || r.StatusCode != 200 || r.Error != "" || r.ResponseBody != "thanks" ||
		r.ResponseBodyEncoding != "text" || r.DurationMS <= 0 {
		t.Errorf("crm attempt = %+v", r)
	}
	if archive.TargetType != "database" || archive.Status != "delivered" {
		t.Errorf("archive delivery = %+v", archive)
	}
	// The receiver got the body with the target's header.
	if hits := f.rc.received(); len(hits) == 0 || hits[0].header.Get("X-Gateway") != "webhooker" {
		t.Errorf("receiver hits = %+v", hits)
	}

	bin := f.settled(binID, 2)
	if bin.BodyEncoding != "base64" || bin.BodySize != len(binary) {
		t.Errorf("binary body: encoding %q size %d", bin.BodyEncoding, bin.BodySize)
	}
	if decoded, err := base64.StdEncoding.DecodeString(bin.Body); err != nil || string(decoded) != string(binary) {
		t.Errorf("binary body %q decodes to %q (%v)", bin.Body, decoded, err)
	}
	for _, d := range bin.Deliveries {
		if d.TargetName != "crm" {
			continue
		}
		if d.Status != "failed" || len(d.Results) != 1 || d.Results[0].StatusCode != 500 ||
			!strings.Contains(d.Results[0].ResponseBody, "refused") || d.Results[0].Error == "" {
			t.Errorf("failed delivery = %+v", d)
		}
	}

	// A deleted target still names its old deliveries.
	if resp := f.call("DELETE", "/webhooker/webhooks/"+f.webhook.ID+"/targets/"+f.http.ID, nil); resp.status != http.StatusNoContent {
		t.Fatalf("delete target: %d %s", resp.status, resp)
	}
	for _, d := range f.detail(jsonID).Deliveries {
		if d.TargetID == f.http.ID && (d.TargetName != "crm" || d.TargetType != "http") {
			t.Errorf("delivery to a deleted target = %+v, want it still named", d)
		}
	}

	for _, id := range []string{uuid.NewString(), "nope", strings.ToUpper(jsonID)} {
		resp := f.call("GET", f.eventsURL+"/"+id, nil)
		if resp.status != http.StatusNotFound {
			t.Errorf("GET event %q: %d %s, want 404", id, resp.status, resp)
		}
	}
	// An event of one webhook is not found through another.
	other := f.createWebhook("other")
	if resp := f.call("GET", "/webhooker/webhooks/"+other.ID+"/events/"+jsonID, nil); resp.status != http.StatusNotFound {
		t.Errorf("event through another webhook: %d %s, want 404", resp.status, resp)
	}
}

func TestRedeliver(t *testing.T) {
	f := newEventFixture(t)
	body := `{"redeliver":"me"}`
	id := f.ingest(f.key, incoming{body: []byte(body), contentType: "application/json"})
	f.settled(id, 2)
	if n := f.rc.count(body); n != 1 {
		t.Fatalf("receiver got the event %d times before redelivery", n)
	}
	redeliverURL := f.eventsURL + "/" + id + "/redeliver"

	// Every active target, with no body at all.
	var out struct {
		Deliveries []deliveryJSON `json:"deliveries"`
	}
	f.must(http.StatusAccepted, "POST", redeliverURL, nil, &out)
	if len(out.Deliveries) != 2 {
		t.Fatalf("redelivery = %+v, want one delivery per target", out.Deliveries)
	}
	for _, d := range out.Deliveries {
		if d.Status != "pending" || d.TargetName == "" || d.TargetType == "" {
			t.Errorf("new delivery = %+v", d)
		}
	}
	ev := f.settled(id, 4)
	for _, d := range ev.Deliveries {
		if d.Status != "delivered" || len(d.Results) != 1 {
			t.Errorf("after redelivery: %+v", d)
		}
	}
	eventually(t, "the receiver gets the event again", func() (bool, string) {
		n := f.rc.count(body)
		return n == 2, fmt.Sprintf("%d hits", n)
	})
	hits := f.rc.received()
	// Two deliveries of one message: receivers de-duplicate on its id.
	if a, b := hits[0].header.Get("Webhook-Id"), hits[1].header.Get("Webhook-Id"); a == "" || a != b {
		t.Errorf("webhook-id of the two deliveries: %q and %q, want the same id", a, b)
	}

	// One target only.
	f.must(http.StatusAccepted, "POST", redeliverURL, map[string]any{"target_id": f.http.ID}, &out)
	if len(out.Deliveries) != 1 || out.Deliveries[0].TargetID != f.http.ID || out.Deliveries[0].TargetName != "crm" {
		t.Fatalf("redelivery to crm = %+v", out.Deliveries)
	}
	f.settled(id, 5)
	eventually(t, "the third delivery", func() (bool, string) {
		n := f.rc.count(body)
		return n == 3, fmt.Sprintf("%d hits", n)
	})
	// In the list, the event shows all five deliveries.
	if p := f.page(""); len(p.Events) != 1 || len(p.Events[0].Deliveries) != 5 {
		t.Errorf("list after redeliveries = %+v", p.Events)
	}

	// Unknown target, event, or webhook: 404; no new delivery.
	for _, q := range []struct {
		path string
		body any
	}{
		{redeliverURL, map[string]any{"target_id": uuid.NewString()}},
		{redeliverURL, map[string]any{"target_id": "crm"}},
		{f.eventsURL + "/" + uuid.NewString() + "/redeliver", nil},
		{f.eventsURL + "/not-an-id/redeliver", nil},
		{"/webhooker/webhooks/" + uuid.NewString() + "/events/" + id + "/redeliver", nil},
	} {
		resp := f.call("POST", q.path, q.body)
		if resp.status != http.StatusNotFound {
			t.Errorf("POST %s %v: %d %s, want 404", q.path, q.body, resp.status, resp)
			continue
		}
		resp.errorMessage(t)
	}
	// A disabled target: 409, and so is a webhook with no active target.
	f.must(http.StatusOK, "PATCH", "/webhooker/webhooks/"+f.webhook.ID+"/targets/"+f.http.ID, map[string]any{"active": false}, nil)
	if resp := f.call("POST", redeliverURL, map[string]any{"target_id": f.http.ID}); resp.status != http.StatusConflict {
		t.Errorf("redeliver to a disabled target: %d %s, want 409", resp.status, resp)
	}
	f.must(http.StatusOK, "PATCH", "/webhooker/webhooks/"+f.webhook.ID+"/targets/"+f.db.ID, map[string]any{"active": false}, nil)
	if resp := f.call("POST", redeliverURL, nil); resp.status != http.StatusConflict {
		t.Errorf("redeliver with no active target: %d %s, want 409", resp.status, resp)
	}
	if n := len(f.detail(id).Deliveries); n != 5 {
		t.Errorf("%d deliveries after the refused redeliveries, want 5", n)
	}
	if resp := f.call("POST", redeliverURL, `{"target_id": 5}`); resp.status != http.StatusBadRequest {
		t.Errorf("target_id 5: %d %s, want 400", resp.status, resp)
	}
	if resp := f.call("GET", redeliverURL, nil); resp.status != http.StatusMethodNotAllowed || resp.header.Get("Allow") != "POST" {
		t.Errorf("GET redeliver: %d Allow %q, want 405 with Allow: POST", resp.status, resp.header.Get("Allow"))
	}
}
