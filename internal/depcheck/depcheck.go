// Package depcheck enforces the dependency direction of DESIGN.md in tests: a package's test
// states what the package must never depend on (stack and overlay know nothing of Kubernetes,
// cluster nothing of network stacks), and depcheck fails it when `go list -deps` says otherwise.
package depcheck

import (
	"os/exec"
	"strings"
	"testing"
)

// Forbid fails t for every dependency of pkgs (package patterns relative to the test's
// directory, as go list takes them) for which rule returns a reason; "" allows it. It skips
// under -short and where the go command is missing.
func Forbid(t testing.TB, rule func(dep string) string, pkgs ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short: runs go list")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("skipped: the go command is not on PATH, so dependencies cannot be listed: %v", err)
	}
	for _, pkg := range pkgs {
		out, err := exec.Command(gobin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if why := rule(dep); why != "" {
				t.Errorf("%s depends on %s: %s", pkg, dep, why)
			}
		}
	}
}

// IsKubernetes reports whether dep is a Kubernetes module's package.
func IsKubernetes(dep string) bool {
	return strings.HasPrefix(dep, "k8s.io/") || strings.HasPrefix(dep, "sigs.k8s.io/")
}

// Module is this module's path.
const Module = "github.com/podnet/podnet"

// IsOurs reports whether dep is a package of this module.
func IsOurs(dep string) bool { return dep == Module || strings.HasPrefix(dep, Module+"/") }
