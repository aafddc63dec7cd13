package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// referenceParse is parseBody as encoding/json reads it: UseNumber, then
// whole numbers that fit as int64, the others as float64 (their text when
// out of range); nil for what is not one JSON value or nests too deep.
func referenceParse(b []byte) any {
	if len(b) == 0 || len(b) > MaxBodyBytes || jsonDepth(b) > MaxBodyDepth {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil
	}
	return referenceNumbers(v)
}

// jsonDepth is the deepest nesting of brackets outside strings.
func jsonDepth(b []byte) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

func referenceNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if !strings.ContainsAny(string(v), ".eE") {
			if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				return i
			}
		}
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return string(v)
		}
		return f
	case map[string]any:
		for k, e := range v {
			v[k] = referenceNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = referenceNumbers(e)
		}
	}
	return v
}

var jsonSeeds = []string{
	`{"action":"opened","number":7,"id":9007199254740993,"ratio":0.5,"labels":["bug","ci"],"repo":{"name":"caddy"}}`,
	`[1, -0, 0.5, 1e3, 1E-3, -12.5e+2, 9223372036854775807, 9223372036854775808, -9223372036854775809, 1e400, 1.0]`,
	`"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00\ud83d x \udc00 \ud800\u0041"`,
	"\"raw \xff\xfe bytes \xc3\xa9\"", "\"\xe2\x82\\u00ac\"", `{"a":1,"a":2}`, ` {} `, `[]`, `{}`, `true`, `false`, `null`,
	`{"a":}`, `[1,]`, `{"a" 1}`, `01`, `-`, `1.`, `.5`, `1e`, `+1`, `"\x"`, `"\u12"`, `"a` + "\n" + `b"`, `[1] [2]`, `nul`, `{"a":1,}`, `[`, `"`,
	strings.Repeat("[", MaxBodyDepth) + strings.Repeat("]", MaxBodyDepth),
	strings.Repeat("[", MaxBodyDepth+1) + strings.Repeat("]", MaxBodyDepth+1),
	`{"s":"` + strings.Repeat("[", 100) + `"}`,
}

func TestParseBodyAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range jsonSeeds {
		if got, want := parseBody([]byte(s)), referenceParse([]byte(s)); !reflect.DeepEqual(got, want) {
			t.Errorf("parseBody(%q) = %#v, encoding/json reads %#v", s, got, want)
		}
	}
}

// FuzzParseBody checks parseBody against encoding/json on any input.
func FuzzParseBody(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := parseBody(b), referenceParse(b); !reflect.DeepEqual(got, want) {
			t.Fatalf("parseBody(%q) = %#v, encoding/json reads %#v", b, got, want)
		}
	})
}

func BenchmarkParseBody64KiB(b *testing.B) {
	body := []byte(`{"event":"bench","padding":"` + strings.Repeat("x", 64<<10-30) + `"}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if parseBody(body) == nil {
			b.Fatal("not parsed")
		}
	}
}
