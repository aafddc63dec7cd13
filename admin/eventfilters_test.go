package admin_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func (f *eventFixture) ids(query url.Values) []string {
	f.t.Helper()
	p := f.page("?" + query.Encode())
	ids := make([]string, len(p.Events))
	for i, ev := range p.Events {
		ids[i] = ev.ID
	}
	return ids
}

func TestEventListFiltersByTargetTimeAndSearch(t *testing.T) {
	f := newEventFixture(t)
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	bodies := []string{`{"n":0}`, `{"n":1,"fail":true}`, `{"n":2,"coupon":"50%_off' OR 1=1 --"}`, `{"n":3}`}
	var ids []string
	for i, body := range bodies {
		ids = append(ids, f.ingest(f.key, incoming{body: []byte(body), contentType: "application/json",
			receivedAt: base.Add(time.Duration(i) * time.Minute)}))
	}
	for _, id := range ids {
		f.settled(id, 2)
	}
	// A third target, added after these events: none of them went to it.
	late := f.addTarget(f.webhook.ID, map[string]any{"name": "late", "type": "database"})
	rfc := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339) }

	for _, tc := range []struct {
		name  string
		query url.Values
		want  []string
	}{
		{"failed at the http target", url.Values{"target": {f.http.ID}, "status": {"failed"}}, []string{ids[1]}},
		{"failed at the database target", url.Values{"target": {f.db.ID}, "status": {"failed"}}, []string{}},
		{"to a target that had none", url.Values{"target": {late.ID}}, []string{}},
		{"from inclusive", url.Values{"from": {rfc(2 * time.Minute)}}, []string{ids[3], ids[2]}},
		{"to exclusive", url.Values{"to": {rfc(time.Minute)}}, []string{ids[0]}},
		{"range and target", url.Values{"from": {rfc(time.Minute)}, "to": {rfc(3 * time.Minute)}, "target": {f.db.ID}},
			[]string{ids[2], ids[1]}},
		{"event id", url.Values{"q": {ids[2]}}, []string{ids[2]}},
		{"unknown event id", url.Values{"q": {uuid.NewString()}}, []string{}},
		{"body", url.Values{"q": {`"n":3`}}, []string{ids[3]}},
		{"percent is literal", url.Values{"q": {`%`}}, []string{ids[2]}},
		{"underscore is literal", url.Values{"q": {`_`}}, []string{ids[2]}},
		{"SQL is text", url.Values{"q": {`' OR 1=1 --`}}, []string{ids[2]}},
		{"search within a range", url.Values{"q": {`"n"`}, "to": {rfc(time.Minute)}}, []string{ids[0]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := f.ids(tc.query); !slices.Equal(got, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.query.Encode(), got, tc.want)
			}
		})
	}

	// Hostile input: 400 naming the parameter, before anything is read.
	for _, tc := range []struct {
		query url.Values
		names string
	}{
		{url.Values{"from": {"yesterday"}}, "from"},
		{url.Values{"to": {"2025-13-01T00:00:00Z"}}, "to"},
		{url.Values{"from": {"2025-06-01"}}, "from"},
		{url.Values{"from": {"9999-01-01T00:00:00Z"}}, "from"},
		{url.Values{"from": {"0001-01-01T00:00:00Z"}}, "from"},
		{url.Values{"from": {rfc(time.Minute)}, "to": {rfc(time.Minute)}}, "from"},
		{url.Values{"from": {rfc(2 * time.Minute)}, "to": {rfc(time.Minute)}}, "from"},
		{url.Values{"q": {strings.Repeat("x", 201)}}, "q"},
		{url.Values{"target": {"crm"}}, "target"},
		{url.Values{"target": {uuid.NewString()}}, "target"},
		{url.Values{"target": {f.http.ID}, "status": {"lost"}}, "status"},
	} {
		resp := f.call("GET", f.eventsURL+"?"+tc.query.Encode(), nil)
		if resp.status != http.StatusBadRequest {
			t.Errorf("%s: status %d (%s), want 400", tc.query.Encode(), resp.status, resp.body)
			continue
		}
		if msg := resp.errorMessage(t); !strings.HasPrefix(msg, tc.names) {
			t.Errorf("%s: error %q does not name %s", tc.query.Encode(), msg, tc.names)
		}
	}
	// 200 bytes is the most, and a search may be anything up to it.
	if got := f.ids(url.Values{"q": {strings.Repeat("é", 100)}}); len(got) != 0 {
		t.Errorf("200 bytes matched %v", got)
	}

	// Another webhook's target does not filter this one's events.
	other := f.createWebhook("other")
	otherTarget := f.addTarget(other.ID, map[string]any{"name": "x", "type": "database"})
	if resp := f.call("GET", f.eventsURL+"?target="+otherTarget.ID, nil); resp.status != http.StatusBadRequest {
		t.Errorf("another webhook's target: %d %s, want 400", resp.status, resp.body)
	}
}

func TestRedeliveryIsLabelled(t *testing.T) {
	f := newEventFixture(t)
	id := f.ingest(f.key, incoming{body: []byte(`{"fail":true}`), contentType: "application/json"})
	ev := f.settled(id, 2)
	for _, d := range ev.Deliveries {
		if d.Redelivery {
			t.Errorf("first delivery %+v labelled a redelivery", d)
		}
	}
	f.must(http.StatusAccepted, "POST", f.eventsURL+"/"+id+"/redeliver", map[string]any{"target_id": f.http.ID}, nil)
	ev = f.settled(id, 3)
	var labelled []string
	for _, d := range ev.Deliveries {
		if d.Redelivery {
			labelled = append(labelled, d.TargetID)
		}
	}
	if !slices.Equal(labelled, []string{f.http.ID}) {
		t.Errorf("redeliveries in detail: %v, want the second to %s; %+v", labelled, f.http.ID, ev.Deliveries)
	}
	row := f.page("").Events[0]
	n := 0
	for _, d := range row.Deliveries {
		if d.Redelivery {
			n++
		}
	}
	if n != 1 {
		t.Errorf("list row has %d redeliveries, want 1: %+v", n, row.Deliveries)
	}
}
