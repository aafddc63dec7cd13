package filter

import (
	"errors"
	"fmt"
	"strconv"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
)

// KeyProgram is a compiled key expression: a CEL expression over an event,
// in the environment and within the bounds of filters, that gives a string
// or an int identifying what the sender meant as one delivery, such as
// body.id for Stripe (a webhook's dedup expression). Safe for concurrent
// use.
type KeyProgram struct {
	source  string
	program cel.Program
}

// CompileKey checks and compiles a key expression. Its error is what a
// user needs to fix it: CEL's message with line and column.
func CompileKey(source string) (*KeyProgram, error) {
	c, err := compile("dedup expression", source, func(out *cel.Type) error {
		if !out.IsExactType(cel.StringType) && !out.IsExactType(cel.IntType) && !out.IsExactType(cel.UintType) &&
			!out.IsExactType(cel.DynType) {
			return fmt.Errorf("the expression gives %s, not a string or an int: name the id, such as body.id", out)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &KeyProgram{source: source, program: c.program}, nil
}

// String returns the expression's source.
func (p *KeyProgram) String() string { return p.source }

// Key evaluates the expression over ev: a string as it is, an int in
// decimal. An evaluation that fails (a key the body does not have, the
// cost limit, ev's time budget) or gives anything else, or an empty
// string, is no key: its error says why, for logs.
func (p *KeyProgram) Key(ev *Event) (string, error) {
	out, _, err := p.program.ContextEval(ev.budget(), activation{ev})
	if err != nil {
		return "", err
	}
	switch v := out.(type) {
	case types.String:
		if v == "" {
			return "", errors.New("the dedup expression gave an empty string")
		}
		return string(v), nil
	case types.Int:
		return strconv.FormatInt(int64(v), 10), nil
	case types.Uint:
		return strconv.FormatUint(uint64(v), 10), nil
	}
	return "", fmt.Errorf("the dedup expression gave %s, not a string or an int", out.Type().TypeName())
}
