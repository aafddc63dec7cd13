// Package filter owns the filters of targets: CEL expressions over an event
// (its method, path, query, headers and JSON body) that choose, at ingest,
// which targets of a webhook get a delivery of it. It compiles an
// expression once, when the configuration that holds it loads, and
// evaluates the program once per event and target, within bounds that a
// hostile expression or body cannot stretch: the expression's length,
// nesting and concatenations, the cost of one evaluation, the time of all
// the evaluations of one event, and the size and depth of the JSON parsed.
//
// The variables an expression sees:
//
//	method  string               the request method, "POST"
//	path    string               the request path, "/hooks/github"
//	query   map(string, string)  the first value of each query parameter
//	header  map(string, string)  the first value of each header, keyed by
//	                             its canonical name (http.CanonicalHeaderKey):
//	                             header["X-Github-Event"], whatever case the
//	                             sender used
//	body    dyn                  the body parsed as JSON (whatever its
//	                             Content-Type); null when it is not JSON, is
//	                             over MaxBodyBytes or nests deeper than
//	                             MaxBodyDepth
//
// An evaluation that ends in an error (a key the event does not have, a
// type mismatch, a bound reached) or in a value other than a bool is not a
// match.
package filter

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

const (
	// MaxExpressionBytes bounds the source of a filter, whoever writes it;
	// storage.Limits may bound it tighter (tenants).
	MaxExpressionBytes = 4096
	// maxNesting bounds the parser's recursion: a((((…)))) cannot blow the
	// stack or the checker's time.
	maxNesting = 32
	// maxNodes bounds the expression's nodes after macro expansion.
	maxNodes = 2000
	// CostLimit bounds one evaluation, in CEL's cost units (about one per
	// operation, more for work proportional to the size of a string or
	// list): an expression that would go over, such as one that
	// concatenates a large string of the body with itself again and again,
	// stops with an error, which is not a match. A usual filter costs under
	// 100.
	CostLimit = 100_000
	// EventBudget bounds the time all the filters of one event may take
	// together (the first evaluation starts the clock): a loop (all,
	// exists, map, filter) still running after it stops with an error,
	// which is not a match. A usual filter takes microseconds. The cost
	// limit alone is not enough: cel-go's cost tracking takes time
	// quadratic in the iterations of a loop (over a 30,000-element array
	// of the body, 1.5 s before the limit stops it).
	EventBudget = 10 * time.Millisecond
	// interruptEvery is how many loop iterations pass between two checks
	// of EventBudget.
	interruptEvery = 1
	// maxAdds bounds the + of a filter. cel-go's cost tracking misses some
	// concatenations (body.s + body.s costs 1, whatever the size of s), and
	// outside a loop nothing else stops them: 30 of a 900 KiB string copy
	// 400 MB and take a second. 4 copy at most 14 times the body; in a
	// loop, EventBudget is checked at each iteration.
	maxAdds = 4
)

// Program is a compiled filter, safe for concurrent use.
type Program struct {
	source   string
	program  cel.Program
	usesBody bool
}

// env is the one CEL environment of every filter: the variables above and
// CEL's standard functions and macros, no extension.
var env = func() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable("method", cel.StringType),
		cel.Variable("path", cel.StringType),
		cel.Variable("query", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("header", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("body", cel.DynType),
		// JSON numbers arrive as int or double (see parseBody): body.n == 1
		// and body.n < 1.5 must both work whichever they are.
		cel.CrossTypeNumericComparisons(true),
		cel.ParserRecursionLimit(maxNesting),
		cel.ParserExpressionSizeLimit(MaxExpressionBytes),
		cel.ExpressionNodeLimit(maxNodes),
	)
	if err != nil {
		panic(fmt.Sprintf("filter: the CEL environment: %v", err))
	}
	return e
}()

// Compile checks and compiles a filter's source. Its error is what a user
// needs to fix it: CEL's message with line and column in the expression.
func Compile(source string) (*Program, error) {
	c, err := compile("filter", source, func(out *cel.Type) error {
		if !out.IsExactType(cel.BoolType) && !out.IsExactType(cel.DynType) {
			return fmt.Errorf("the expression gives %s, not a bool: compare it, such as body.action == \"opened\"", out)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Program{source: source, program: c.program, usesBody: c.usesBody}, nil
}

// compiled is an expression compiled by compile.
type compiled struct {
	program  cel.Program
	usesBody bool
}

// compile checks and compiles source, an expression of kind (its errors'
// prefix: "filter", "dedup expression"), in the one environment every
// expression shares, with the same bounds and lint: its length, CEL's
// checks, a result type output accepts, header names in canonical form, at
// most maxAdds + operations, and CEL's cost limit.
func compile(kind, source string, output func(*cel.Type) error) (compiled, error) {
	if len(source) > MaxExpressionBytes {
		return compiled{}, fmt.Errorf("%s: %d bytes, at most %d", kind, len(source), MaxExpressionBytes)
	}
	if strings.TrimSpace(source) == "" {
		return compiled{}, fmt.Errorf("%s: empty expression", kind)
	}
	ast, issues := env.Compile(source)
	if issues != nil && issues.Err() != nil {
		return compiled{}, fmt.Errorf("%s: %s", kind, strings.TrimSpace(issues.Err().Error()))
	}
	if err := output(ast.OutputType()); err != nil {
		return compiled{}, fmt.Errorf("%s: %w", kind, err)
	}
	var (
		c    compiled
		lint error
		adds int
	)
	celast.PreOrderVisit(ast.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.IdentKind:
			if e.AsIdent() == "body" {
				c.usesBody = true
			}
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
		return compiled{}, fmt.Errorf("%s: %s", kind, strings.TrimPrefix(lint.Error(), "filter: "))
	}
	if adds > maxAdds {
		return compiled{}, fmt.Errorf("%s: %d + operations, at most %d", kind, adds, maxAdds)
	}
	program, err := env.Program(ast, cel.CostLimit(CostLimit), cel.InterruptCheckFrequency(interruptEvery))
	if err != nil {
		return compiled{}, fmt.Errorf("%s: %w", kind, err)
	}
	c.program = program
	return c, nil
}

// checkHeaderName refuses header["x-github-event"]: the map is keyed by
// canonical names, so that lookup could never match, and the filter would
// silently reject every event.
func checkHeaderName(call celast.CallExpr) error {
	args := call.Args()
	if (call.FunctionName() != operators.Index && call.FunctionName() != operators.OptIndex) ||
		len(args) != 2 || !isIdent(args[0], "header") || args[1].Kind() != celast.LiteralKind {
		return nil
	}
	name, ok := args[1].AsLiteral().(types.String)
	if !ok {
		return nil
	}
	return headerNameError(string(name))
}

func headerNameError(name string) error {
	if canonical := http.CanonicalHeaderKey(name); canonical != name {
		return fmt.Errorf("filter: header %q: header names are canonical, write header[%q]", name, canonical)
	}
	return nil
}

func isIdent(e celast.Expr, name string) bool {
	return e.Kind() == celast.IdentKind && e.AsIdent() == name
}

// String returns the filter's source.
func (p *Program) String() string { return p.source }

// UsesBody reports whether the filter reads the body. The body is parsed
// the first time an evaluation reads it (Event), so an event whose filters
// do not read it is never parsed.
func (p *Program) UsesBody() bool { return p.usesBody }

// Match evaluates the filter over ev. An evaluation that fails (a missing
// key, a type mismatch, the cost limit, ev's time budget) or gives
// something other than a bool is not a match; its error says why, for the
// counters and logs.
func (p *Program) Match(ev *Event) (bool, error) {
	out, _, err := p.program.ContextEval(ev.budget(), activation{ev})
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("the filter gave %s, not a bool", out.Type().TypeName())
	}
	return bool(b), nil
}
