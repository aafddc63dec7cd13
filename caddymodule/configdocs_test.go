package caddymodule_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFieldsDocumented checks that every exported field of the JSON
// config has a doc comment of its own, which caddyserver.com's module docs
// render beside the field (a comment shared by two fields on one line, or
// one above a group, renders for neither), and that it gives a default
// (or says the field is required).
func TestConfigFieldsDocumented(t *testing.T) {
	types := map[string][]string{
		".":          {"App", "WebhookConfig", "EntrypointConfig", "TargetConfig", "TargetPolicyConfig", "TenantQuotasConfig", "OperationalWebhookConfig"},
		"../storage": {"TargetOptions"},
	}
	for dir, names := range types {
		fset := token.NewFileSet()
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		structs := make(map[string]*ast.StructType)
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if ts, ok := n.(*ast.TypeSpec); ok {
					if st, ok := ts.Type.(*ast.StructType); ok {
						structs[ts.Name.Name] = st
					}
				}
				return true
			})
		}
		for _, name := range names {
			st := structs[name]
			if st == nil {
				t.Errorf("no struct %s in %s", name, dir)
				continue
			}
			for _, field := range st.Fields.List {
				for _, id := range field.Names {
					if !id.IsExported() {
						continue
					}
					switch doc := field.Doc.Text(); {
					case len(field.Names) > 1:
						t.Errorf("%s.%s shares its line, and its doc comment, with other fields", name, id.Name)
					case !strings.HasPrefix(doc, id.Name+" "):
						t.Errorf("%s.%s has no doc comment of its own (starting with its name): %q", name, id.Name, doc)
					case !strings.Contains(doc, "Default") && !strings.Contains(doc, "Absent:") && !strings.Contains(doc, "Required"):
						t.Errorf("%s.%s: the doc comment gives no default: %q", name, id.Name, doc)
					}
				}
			}
		}
	}
}
