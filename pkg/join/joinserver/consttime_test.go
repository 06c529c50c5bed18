package joinserver

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretsComparedInConstantTime: the code that handles join secrets
// never compares a secret or a node password with == or != (whose time
// tells how many leading bytes match), except with "" to see whether one
// was given; it uses token.Equal or subtle.ConstantTimeCompare.
func TestSecretsComparedInConstantTime(t *testing.T) {
	var files []string
	for _, dir := range []string{".", "..", "../joinclient", "../../token", "../../tokenadmin", "../../server", "../../cli/token", "../../agent"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(m) == 0 {
			t.Fatalf("no Go files in %s: %v", dir, err)
		}
		files = append(files, m...)
	}
	fset := gotoken.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			b, ok := n.(*ast.BinaryExpr)
			if !ok || (b.Op != gotoken.EQL && b.Op != gotoken.NEQ) {
				return true
			}
			if isEmptyString(b.X) || isEmptyString(b.Y) {
				return true
			}
			if isSecret(b.X) || isSecret(b.Y) {
				t.Errorf("%s: a secret compared with %s; use token.Equal", fset.Position(b.Pos()), b.Op)
			}
			checked++
			return true
		})
	}
	if checked < 50 {
		t.Fatalf("only %d comparisons looked at: are the files there?", checked)
	}
}

// isSecret reports whether e names a secret: an identifier or field that
// ends in secret or password, or a secret's Reveal().
func isSecret(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.ParenExpr:
		return isSecret(e.X)
	case *ast.Ident:
		return secretName(e.Name)
	case *ast.SelectorExpr:
		return secretName(e.Sel.Name)
	case *ast.CallExpr:
		if s, ok := e.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "Reveal" {
			return true
		}
		if id, ok := e.Fun.(*ast.Ident); ok && (id.Name == "string" || id.Name == "[]byte") && len(e.Args) == 1 {
			return isSecret(e.Args[0])
		}
	}
	return false
}

func secretName(name string) bool {
	n := strings.ToLower(name)
	return strings.HasSuffix(n, "secret") || strings.HasSuffix(n, "password")
}

func isEmptyString(e ast.Expr) bool {
	l, ok := e.(*ast.BasicLit)
	return ok && l.Kind == gotoken.STRING && (l.Value == `""` || l.Value == "``")
}
