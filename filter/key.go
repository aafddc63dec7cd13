package filter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
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
	if len(source) > MaxExpressionBytes {
		return nil, fmt.Errorf("dedup expression: %d bytes, at most %d", len(source), MaxExpressionBytes)
	}
	if strings.TrimSpace(source) == "" {
		return nil, errors.New("dedup expression: empty expression")
	}
	ast, issues := env.Compile(source)
	if issues != nil && issues.Err() != nil {
		return nil, fmt.Errorf("dedup expression: %s", strings.TrimSpace(issues.Err().Error()))
	}
	out := ast.OutputType()
	if !out.IsExactType(cel.StringType) && !out.IsExactType(cel.IntType) && !out.IsExactType(cel.UintType) &&
		!out.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("dedup expression: the expression gives %s, not a string or an int: name the id, such as body.id", out)
	}
	// The same lint and bound as a filter's (see Compile).
	var (
		lint error
		adds int
	)
	celast.PreOrderVisit(ast.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.CallKind:
			if e.AsCall().FunctionName() == operators.Add {
				adds++
			}
			if lint == nil {
				lint = checkHeaderName(e.AsCall())
			}
		case celast.SelectKind:
			s := e.AsSelect()
			if lint == nil && isIdent(s.Operand(), "header") {
				lint = headerNameError(s.FieldName())
			}
		}
	}))
	if lint != nil {
		return nil, fmt.Errorf("dedup expression: %s", strings.TrimPrefix(lint.Error(), "filter: "))
	}
	if adds > maxAdds {
		return nil, fmt.Errorf("dedup expression: %d + operations, at most %d", adds, maxAdds)
	}
	program, err := env.Program(ast, cel.CostLimit(CostLimit), cel.InterruptCheckFrequency(interruptEvery))
	if err != nil {
		return nil, fmt.Errorf("dedup expression: %w", err)
	}
	return &KeyProgram{source: source, program: program}, nil
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
