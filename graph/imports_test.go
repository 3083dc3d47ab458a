package graph

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps graph a pure renderer: it knows Kubernetes' API types
// (they are its input) but no client, no network stack and no other podnet
// package; the command fetches the objects and flows.
func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		switch {
		case strings.HasPrefix(dep, "k8s.io/client-go/"):
			return "graph draws the objects it is given; the command fetches them"
		case strings.HasPrefix(dep, "gvisor.dev/"), strings.HasPrefix(dep, "golang.zx2c4.com/"),
			strings.HasPrefix(dep, "github.com/vishvananda/"):
			return "graph must not know the network stack or the overlay"
		case depcheck.IsOurs(dep) && dep != depcheck.Module+"/graph":
			return "graph depends on no other podnet package"
		}
		return ""
	}, ".")
}

// TestPure checks the package's own files: no import that does I/O beyond
// the io.Writer it is given, reads clocks, draws random numbers or runs
// commands (Graphviz need not be installed), and no go statement.
func TestPure(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range []string{"os", "net/http", "syscall", "log", "sync", "time", "unsafe", "math/rand", "bufio", "embed", "plugin"} {
				if path == bad || strings.HasPrefix(path, bad+"/") {
					t.Errorf("%s imports %s: graph must stay pure (no I/O but the writer, no clocks, randomness or commands)", name, path)
				}
			}
		}
		full, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(full, func(n ast.Node) bool {
			if g, ok := n.(*ast.GoStmt); ok {
				t.Errorf("%v: a go statement: graph starts no goroutine", fset.Position(g.Pos()))
			}
			return true
		})
	}
}
