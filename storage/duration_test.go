package storage

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestDurationJSONStringsOnly checks that a target's durations read and
// write as Go duration strings, and that a bare number, once read as
// nanoseconds, is refused with a type error that names the field.
func TestDurationJSONStringsOnly(t *testing.T) {
	var tg Target
	if err := json.Unmarshal([]byte(`{"name":"t","type":"http","options":{"timeout":"5s","backoff_initial":"250ms","backoff_max":"1h30m","breaker_cooldown":null}}`), &tg); err != nil {
		t.Fatal(err)
	}
	o := tg.Options
	if time.Duration(o.Timeout) != 5*time.Second || time.Duration(o.BackoffInitial) != 250*time.Millisecond ||
		time.Duration(o.BackoffMax) != 90*time.Minute || o.BreakerCooldown != 0 {
		t.Errorf("read %+v", o)
	}
	out, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"timeout":"5s","backoff_initial":"250ms","backoff_max":"1h30m0s"}`; string(out) != want {
		t.Errorf("wrote %s, want %s", out, want)
	}

	for _, c := range []struct{ value, field, kind string }{
		{`5000000000`, "options.timeout", "number 5000000000"},
		{`-1`, "options.timeout", "number -1"},
		{`1e9`, "options.timeout", "number 1e9"},
		{`true`, "options.timeout", "bool"},
		{`{}`, "options.timeout", "object"},
		{`123456789012345678901234567890123456789`, "options.timeout", "number 12345678901234567890123456789012…"},
	} {
		err := json.Unmarshal([]byte(`{"options":{"timeout":`+c.value+`}}`), &tg)
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			t.Errorf("timeout %s: error %v, want a type error", c.value, err)
			continue
		}
		if typeErr.Field != c.field || !strings.HasPrefix(typeErr.Value, c.kind+" (a duration is a string with a unit") ||
			typeErr.Type.Kind().String() != "string" {
			t.Errorf("timeout %s: field %q, value %q, type %s", c.value, typeErr.Field, typeErr.Value, typeErr.Type)
		}
	}

	err = json.Unmarshal([]byte(`{"options":{"backoff_max":"5"}}`), &tg)
	if err == nil || !strings.Contains(err.Error(), `duration "5": want a Go duration such as "500ms"`) {
		t.Errorf("a string without a unit: %v", err)
	}
}
