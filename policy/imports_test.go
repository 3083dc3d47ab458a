package policy_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps the policy compiler pure: it knows Kubernetes' API
// types (they are its input) but no network stack and no other podnet
// package.
func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		switch {
		case strings.HasPrefix(dep, "gvisor.dev/"):
			return "policy must not know the network stack; the data path calls it"
		case strings.HasPrefix(dep, "golang.zx2c4.com/"):
			return "policy must not know the overlay"
		case depcheck.IsOurs(dep) && dep != depcheck.Module+"/policy":
			return "policy depends on no other podnet package"
		}
		return ""
	}, ".")
}

// TestNoIO checks what the package itself imports (Kubernetes' packages
// import os and net/http, which policy never calls): nothing that does I/O,
// reads clocks, draws random numbers or synchronizes goroutines.
func TestNoIO(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: runs go list")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("skipped: the go command is not on PATH: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-f", `{{join .Imports " "}}`, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, imp := range strings.Fields(string(out)) {
		if imp == "net/netip" {
			continue
		}
		for _, bad := range []string{"os", "net", "io", "syscall", "log", "sync", "time", "unsafe", "runtime", "path", "crypto", "math/rand", "bufio", "embed", "plugin"} {
			if imp == bad || strings.HasPrefix(imp, bad+"/") {
				t.Errorf("policy imports %s: it must stay pure (no I/O, clocks, randomness, goroutines)", imp)
			}
		}
	}
}

// TestNoGoroutines checks that no file of the package starts a goroutine.
func TestNoGoroutines(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if g, ok := n.(*ast.GoStmt); ok {
				t.Errorf("%v: a go statement: policy starts no goroutine", fset.Position(g.Pos()))
			}
			return true
		})
	}
}
