package filter

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func githubEvent(event string, body string) *Event {
	h := http.Header{"X-Github-Event": {event}, "Content-Type": {"application/json"}}
	return NewEvent("POST", "/hooks/github", "ref=main&ref=dev&x=1", h, []byte(body))
}

func TestMatch(t *testing.T) {
	// A fresh Event per case: an Event's time budget runs from its first
	// evaluation, and the compilations between cases would eat into it.
	opened := func() *Event {
		return githubEvent("pull_request", `{"action":"opened","number":7,"id":9007199254740993,"ratio":0.5,"labels":["bug","ci"],"repo":{"name":"caddy"}}`)
	}
	ping := func() *Event { return githubEvent("ping", "not json") }
	for _, c := range []struct {
		expr string
		ev   func() *Event
		want bool
	}{
		{`body.action == "opened" && header["X-Github-Event"] == "pull_request"`, opened, true},
		{`body.action == "closed" && header["X-Github-Event"] == "pull_request"`, opened, false},
		{`header["X-Github-Event"] == "push"`, opened, false},
		{`method == "POST" && path.startsWith("/hooks/")`, opened, true},
		{`query["ref"] == "main" && query.x == "1"`, opened, true}, // first value
		{`body.number == 7 && body.number == 7.0 && body.ratio < 1`, opened, true},
		{`body.id == 9007199254740993`, opened, true}, // past 2^53: exact as an int
		{`"ci" in body.labels && body.repo.name == "caddy"`, opened, true},
		{`has(body.action)`, opened, true},
		{`has(body.missing)`, opened, false},
		{`body.labels.exists(l, l.matches("^b.g$"))`, opened, true},
		{`body == null`, ping, true},
		// Errors are no match: a missing key, a field of null, a type mismatch.
		{`body.missing == "x"`, opened, false},
		{`body.action == "opened"`, ping, false},
		{`body.number == "7"`, opened, false},
		{`header["X-Missing"] == ""`, opened, false},
		{`body.action`, opened, false}, // a string where a bool is due
	} {
		p, err := Compile(c.expr)
		if err != nil {
			t.Fatalf("Compile(%s): %v", c.expr, err)
		}
		if got, _ := p.Match(c.ev()); got != c.want {
			t.Errorf("%s: match %v, want %v", c.expr, got, c.want)
		}
	}
}

// A sender's header names arrive in any case (HTTP/2 sends them lower
// case); the filter reads them by canonical name all the same.
func TestHeaderSpelledInOtherCases(t *testing.T) {
	p, err := Compile(`header["X-Github-Event"] == "push"`)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"x-github-event", "X-GITHUB-EVENT", "X-GitHub-Event"} {
		ev := NewEvent("POST", "/", "", http.Header{name: {"push"}}, nil)
		if ok, err := p.Match(ev); !ok {
			t.Errorf("header %s: no match (%v)", name, err)
		}
	}
	// Written in another case, the lookup could never match: refused.
	for _, expr := range []string{`header["x-github-event"] == "push"`, `header["X-GitHub-Event"] == "push"`, `has(header.host)`} {
		if _, err := Compile(expr); err == nil || !strings.Contains(err.Error(), "canonical") {
			t.Errorf("Compile(%s): %v, want the canonical name asked for", expr, err)
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	for _, c := range []struct{ name, expr, want string }{
		{"empty", "  ", "empty"},
		{"syntax", `body.action ==`, "Syntax error"},
		{"unknown variable", `request.method == "POST"`, "undeclared reference"},
		{"not a bool", `method + "x"`, "not a bool"},
		{"huge", `method == "` + strings.Repeat("a", MaxExpressionBytes) + `"`, "at most 4096"},
		{"deep", strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200), "recursion"},
		{"many nodes", `size([` + strings.Repeat("1,", 2030) + `1]) > 0`, "node"},
		{"many +", strings.TrimSuffix(strings.Repeat("body.s + ", maxAdds+2), " + ") + ` == ""`, "5 + operations, at most 4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.expr)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Compile: %v, want an error with %q", err, c.want)
			}
		})
	}
}

// Expressions that would run for long over a hostile body are cut short,
// and are no match: a loop by the event's time budget (cel-go's cost
// tracking alone lets one run for seconds), a string blown up by
// concatenation by the cost limit. The budget is the event's: a second
// filter gets what the first left.
func TestExpensiveExpressionsAreCutShort(t *testing.T) {
	items := "[" + strings.TrimSuffix(strings.Repeat(`"aaaaaaaaaaaaaaaa",`, 30000), ",") + "]"
	big := strings.Repeat("a", 900<<10)
	half := strings.Repeat("a", 400<<10)
	fewItems := "[" + strings.TrimSuffix(strings.Repeat(`"aaaaaaaaaaaaaaaa",`, 1000), ",") + "]"
	for _, c := range []struct {
		name, body, expr, want string
	}{
		{"a loop over a large array", `{"items":` + items + `}`, `body.items.all(x, x != "")`, "interrupted"},
		{"nested loops", `{"items":` + items + `}`, `body.items.all(x, body.items.all(y, body.items.all(z, x + y + z != "")))`, "interrupted"},
		{"a regexp in a loop", `{"items":` + items + `}`, `body.items.exists(x, x.matches("^(a|aa)*b$"))`, "interrupted"},
		{"a string concatenated with itself", `{"s":"` + big + `"}`,
			strings.TrimSuffix(strings.Repeat("body.s + ", maxAdds+1), " + ") + ` == "x"`, ""},
		{"the same in a loop", `{"s":"` + half + `","items":` + fewItems + `}`,
			`body.items.exists(x, ` + strings.TrimSuffix(strings.Repeat("body.s + ", maxAdds), " + ") + ` == x)`, "interrupted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev := NewEvent("POST", "/", "", nil, []byte(c.body))
			defer ev.Close()
			ev.bodyValue() // parsed before the clock starts: what is timed is the filter
			p, err := Compile(c.expr)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			ok, err := p.Match(ev)
			took := time.Since(start)
			if ok || (c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want))) {
				t.Fatalf("match %v, %v: want no match, %s", ok, err, c.want)
			}
			// 10 ms, checked at each iteration of a loop; 4 concatenations
			// of 900 KiB take 25 ms. Room for -race and a loaded machine,
			// far from the seconds these take unbounded.
			if took > time.Second {
				t.Fatalf("stopped after %s", took)
			}
			t.Logf("stopped after %s: %v", took, err)
			// The budget is spent: the next loop of this event stops at once.
			if c.want == "interrupted" {
				if ok, err := p.Match(ev); ok || err == nil {
					t.Fatalf("second evaluation: %v, %v", ok, err)
				}
			}
		})
	}
}

func TestBodyBounds(t *testing.T) {
	p, err := Compile(`body != null`)
	if err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat("[", MaxBodyDepth+1) + strings.Repeat("]", MaxBodyDepth+1)
	notDeep := strings.Repeat("[", MaxBodyDepth) + strings.Repeat("]", MaxBodyDepth)
	bracketsInString := `{"s":"` + strings.Repeat("[", 1000) + `\"["}`
	big := `{"s":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
	for _, c := range []struct {
		name, body string
		parsed     bool
	}{
		{"deep", deep, false},
		{"a million brackets", strings.Repeat("[", 1<<20), false},
		{"as deep as allowed", notDeep, true},
		{"brackets in a string", bracketsInString, true},
		{"over MaxBodyBytes", big, false},
		{"two documents", `{} {}`, false},
		{"form", `payload=%7B%7D`, false},
		{"empty", ``, false},
		{"number out of range", `1e400`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev := NewEvent("POST", "/", "", nil, []byte(c.body))
			if ok, _ := p.Match(ev); ok != c.parsed {
				t.Fatalf("body != null: %v, want %v", ok, c.parsed)
			}
		})
	}
}

// The body is parsed once per event, however many filters read it, and
// not at all when none does.
func TestBodyParsedOnlyWhenRead(t *testing.T) {
	byHeader, err := Compile(`header["X-Github-Event"] == "push"`)
	if err != nil {
		t.Fatal(err)
	}
	byBody, err := Compile(`body.ref == "refs/heads/main"`)
	if err != nil {
		t.Fatal(err)
	}
	if byHeader.UsesBody() || !byBody.UsesBody() {
		t.Fatalf("UsesBody: %v %v", byHeader.UsesBody(), byBody.UsesBody())
	}
	ev := githubEvent("push", `{"ref":"refs/heads/main"}`)
	if ok, _ := byHeader.Match(ev); !ok || ev.BodyParsed() {
		t.Fatalf("header filter: match %v, body parsed %v", ok, ev.BodyParsed())
	}
	for range 2 {
		if ok, err := byBody.Match(ev); !ok {
			t.Fatalf("body filter: %v", err)
		}
	}
	// The parsed body is kept: change the raw bytes and the filter still
	// sees the first parse.
	ev.rawBody = []byte(`{"ref":"other"}`)
	if ok, _ := byBody.Match(ev); !ok {
		t.Fatal("the body was parsed again")
	}
}

func BenchmarkMatch(b *testing.B) {
	body := []byte(`{"action":"opened","number":7,"pull_request":{"id":1,"title":"x","user":{"login":"a"}},"repository":{"full_name":"o/r"}}`)
	h := http.Header{"X-Github-Event": {"pull_request"}, "Content-Type": {"application/json"}, "User-Agent": {"GitHub-Hookshot/1"}}
	p, err := Compile(`body.action == "opened" && header["X-Github-Event"] == "pull_request"`)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, err := p.Match(NewEvent("POST", "/h/k", "", h, body)); !ok {
			b.Fatal(err)
		}
	}
}
