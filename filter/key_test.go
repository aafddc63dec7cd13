package filter

import (
	"strings"
	"testing"
	"time"
)

// A key expression gives a string or an int, through the filters'
// environment; anything else, or a failure, is no key.
func TestKeyProgram(t *testing.T) {
	header := map[string][]string{"Idempotency-Key": {"ik-1"}}
	for _, c := range []struct {
		expr, body, want string
		wantErr          bool
	}{
		{"body.id", `{"id":"evt_1"}`, "evt_1", false},
		{"body.id", `{"id":42}`, "42", false},
		{"body.id", `{"id":18446744073709551615}`, "", true}, // past int64: a double
		{"body.id", `{"id":1.5}`, "", true},
		{"body.id", `{"id":true}`, "", true},
		{"body.id", `{"id":""}`, "", true},
		{"body.id", `{}`, "", true},
		{"body.id", `not json`, "", true},
		{`header["Idempotency-Key"]`, `{}`, "ik-1", false},
		{`body.data.object.id + ":" + body.type`, `{"data":{"object":{"id":"ch_1"}},"type":"charge.succeeded"}`, "ch_1:charge.succeeded", false},
		{`string(body.n)`, `{"n":7}`, "7", false},
	} {
		p, err := CompileKey(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		ev := NewEvent("POST", "/", "", header, []byte(c.body))
		got, err := p.Key(ev)
		ev.Close()
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("%s over %s: %q, %v; want %q (error %v)", c.expr, c.body, got, err, c.want, c.wantErr)
		}
	}
	for _, c := range []struct{ expr, want string }{
		{"body.id ==", "Syntax error"},
		{"body.a == 1", "gives bool"},
		{"size(body)", ""}, // an int: a key
		{"[body.id]", "not a string or an int"},
		{`header["idempotency-key"]`, `write header["Idempotency-Key"]`},
		{strings.TrimSuffix(strings.Repeat("body.s + ", maxAdds+2), " + "), "+ operations, at most 4"},
		{"", "empty expression"},
		{"'" + strings.Repeat("a", MaxExpressionBytes) + "'", "at most 4096"},
	} {
		_, err := CompileKey(c.expr)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%.40s: %v", c.expr, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%.40s: %v, want an error with %q", c.expr, err, c.want)
		}
	}
}

// A key expression over a hostile body is cut short by the event's time
// budget, as a filter is: no key, in milliseconds.
func TestKeyExpressionCutShort(t *testing.T) {
	items := "[" + strings.TrimSuffix(strings.Repeat(`"aaaaaaaaaaaaaaaa",`, 30000), ",") + "]"
	p, err := CompileKey(`body.items.filter(x, body.items.exists(y, y == x + "b")).size()`)
	if err != nil {
		t.Fatal(err)
	}
	ev := NewEvent("POST", "/", "", nil, []byte(`{"items":`+items+`}`))
	defer ev.Close()
	ev.bodyValue()
	start := time.Now()
	key, err := p.Key(ev)
	took := time.Since(start)
	if key != "" || err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("key %q, %v: want none, interrupted", key, err)
	}
	if took > time.Second {
		t.Fatalf("stopped after %s", took)
	}
	t.Logf("stopped after %s: %v", took, err)
}
