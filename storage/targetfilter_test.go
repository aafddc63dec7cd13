package storage

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/webhooker/caddy-webhooker/filter"
)

// A target's filter is configuration: stored with it in the main DB,
// changed and removed by UpdateTarget, compiled before it is stored, and
// bounded tighter for tenants.
func TestTargetFilterIsStoredValidatedAndBounded(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	w := mustCreateWebhook(t, db, NewWebhook{Name: "gh"})
	const pr = `header["X-Github-Event"] == "pull_request"`
	added, err := db.AddTarget(ctx, w.ID, Target{Name: "prs", Type: TargetDatabase, Active: true, Filter: pr})
	if err != nil {
		t.Fatal(err)
	}
	if got := readTarget(t, db, w.ID, added.ID); got.Filter != pr {
		t.Fatalf("stored filter %q, want %q", got.Filter, pr)
	}

	// A filter that does not compile is invalid (the API's 400), with CEL's message.
	_, err = db.AddTarget(ctx, w.ID, Target{Name: "bad", Type: TargetDatabase, Active: true, Filter: `body.action ==`})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "Syntax error") {
		t.Fatalf("AddTarget with a broken filter: %v, want ErrInvalid with CEL's message", err)
	}
	bad := `body.action ==`
	if _, err := db.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Filter: &bad}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("UpdateTarget with a broken filter: %v, want ErrInvalid", err)
	}

	// Changed, then removed, and other changes leave it alone.
	push := `header["X-Github-Event"] == "push"`
	if _, err := db.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Filter: &push}); err != nil {
		t.Fatal(err)
	}
	off := false
	if _, err := db.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Active: &off}); err != nil {
		t.Fatal(err)
	}
	if got := readTarget(t, db, w.ID, added.ID); got.Filter != push {
		t.Fatalf("filter after changes %q, want %q", got.Filter, push)
	}
	none := ""
	if _, err := db.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Filter: &none}); err != nil {
		t.Fatal(err)
	}
	if got := readTarget(t, db, w.ID, added.ID); got.Filter != "" {
		t.Fatalf("filter after removal %q", got.Filter)
	}

	// Tenants: 1024 bytes; the operator: filter.MaxExpressionBytes.
	long := `method == "` + strings.Repeat("a", 1100) + `"`
	tenant := db.WithRules(Rules{Limits: TenantLimits()})
	if _, err := tenant.AddTarget(ctx, w.ID, Target{Name: "long", Type: TargetDatabase, Active: true, Filter: long}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "at most 1024 (tenant limits)") {
		t.Fatalf("tenant's long filter: %v", err)
	}
	if _, err := db.AddTarget(ctx, w.ID, Target{Name: "long", Type: TargetDatabase, Active: true, Filter: long}); err != nil {
		t.Fatalf("operator's long filter: %v", err)
	}
	huge := `method == "` + strings.Repeat("a", filter.MaxExpressionBytes) + `"`
	if _, err := db.AddTarget(ctx, w.ID, Target{Name: "huge", Type: TargetDatabase, Active: true, Filter: huge}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("operator's huge filter: %v", err)
	}
}

func readTarget(t *testing.T, db *MainDB, webhookID, targetID string) Target {
	t.Helper()
	ts, err := db.TargetsOf(context.Background(), webhookID)
	if err != nil {
		t.Fatal(err)
	}
	return ts[targetID]
}

// Declared targets carry their filter through SyncDeclared, and the
// snapshot's route selects the targets whose filter an event matches.
func TestRouteSelectsTargetsByFilter(t *testing.T) {
	db := openMain(t)
	w := declare("gh", true, []string{"gh-key"},
		targetSpec{name: "prs", typ: TargetDatabase, active: true},
		targetSpec{name: "all", typ: TargetDatabase, active: true},
		targetSpec{name: "pushes", typ: TargetDatabase, active: true},
		targetSpec{name: "off", typ: TargetDatabase, active: false})
	w.Targets[0].Filter = `body.action == "opened" && header["X-Github-Event"] == "pull_request"`
	w.Targets[2].Filter = `header["X-Github-Event"] == "push"`
	w.Targets[3].Filter = `true`
	syncDeclared(t, db, w)
	route, ok := snapshot(t, db).Route("gh-key")
	if !ok || !route.Filtered() || route.FilterError() != nil {
		t.Fatalf("route %v: filtered %v, error %v", ok, route.Filtered(), route.FilterError())
	}
	for _, c := range []struct {
		event, body string
		want        []string
		rejected    []string
	}{
		{"pull_request", `{"action":"opened"}`, []string{"all", "prs"}, []string{"pushes"}},
		{"pull_request", `{"action":"closed"}`, []string{"all"}, []string{"prs", "pushes"}},
		{"push", `{"ref":"refs/heads/main"}`, []string{"all", "pushes"}, []string{"prs"}},
	} {
		ev := filter.NewEvent("POST", "/gh-key", "", http.Header{"X-Github-Event": {c.event}}, []byte(c.body))
		var rejected []string
		selected := route.Select(ev, func(t Target, _ error) { rejected = append(rejected, t.Name) })
		if got := strings.Join(targetNames(selected.Targets), ","); got != strings.Join(c.want, ",") {
			t.Errorf("%s %s: selected %s, want %v", c.event, c.body, got, c.want)
		}
		if got := strings.Join(rejected, ","); got != strings.Join(c.rejected, ",") {
			t.Errorf("%s %s: rejected %s, want %v", c.event, c.body, got, c.rejected)
		}
		if selected.Filtered() {
			t.Error("the selected route still has filters to apply")
		}
	}

	// No filter at all: no filtered route, Select gives every target.
	plain := declare("plain", true, []string{"plain-key"}, targetSpec{name: "a", typ: TargetDatabase, active: true})
	syncDeclared(t, db, w, plain)
	route, _ = snapshot(t, db).Route("plain-key")
	if route.Filtered() {
		t.Fatal("a route without filters is Filtered")
	}
}

// A stored filter that no longer compiles (the main DB edited by hand) does
// not stop the configuration from loading: its route reports it, for the
// ingest to refuse its events rather than misroute them.
func TestStoredFilterThatDoesNotCompileIsReportedByItsRoute(t *testing.T) {
	db := openMain(t)
	w := declare("gh", true, []string{"gh-key"}, targetSpec{name: "a", typ: TargetDatabase, active: true})
	syncDeclared(t, db, w)
	if _, err := db.file.writer.Exec(`UPDATE targets SET filter = 'body.action ==' WHERE name = 'a'`); err != nil {
		t.Fatal(err)
	}
	route, ok := snapshot(t, db).Route("gh-key")
	if !ok || !route.Filtered() || route.FilterError() == nil || !strings.Contains(route.FilterError().Error(), "target a") {
		t.Fatalf("route %v: filtered %v, error %v", ok, route.Filtered(), route.FilterError())
	}
}

// A snapshot reuses the programs of the one before for the filters that
// did not change (each API change loads a snapshot), compiles the others,
// and keeps only the filters in use.
func TestSnapshotReusesCompiledFilters(t *testing.T) {
	db := openMain(t)
	w := declare("gh", true, []string{"gh-key"},
		targetSpec{name: "a", typ: TargetDatabase, active: true},
		targetSpec{name: "b", typ: TargetDatabase, active: true})
	w.Targets[0].Filter = `method == "POST"`
	w.Targets[1].Filter = `path == "/x"`
	syncDeclared(t, db, w)
	first, _ := snapshot(t, db).Route("gh-key")

	w.Targets[1].Filter = `path == "/y"`
	syncDeclared(t, db, w)
	second, _ := snapshot(t, db).Route("gh-key")
	if first.filters[0] != second.filters[0] {
		t.Error("the unchanged filter was compiled again")
	}
	if first.filters[1] == second.filters[1] || second.filters[1].String() != `path == "/y"` {
		t.Errorf("the changed filter: %v", second.filters[1])
	}
	if n := len(db.filters.bySource); n != 2 {
		t.Errorf("%d filters kept, want the 2 in use", n)
	}
}
