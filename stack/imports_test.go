package stack_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the data path free of Kubernetes and of the rest of
// podnet: stack may depend on tap and nothing else of this module.
func TestImports(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: runs go list")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("skipping: go command not found: %v", err)
	}
	for _, pkg := range []string{".", "./stacktest"} {
		out, err := exec.Command(gobin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			switch {
			case strings.HasPrefix(dep, "k8s.io/"), strings.HasPrefix(dep, "sigs.k8s.io/"):
				t.Errorf("%s depends on %s: the data path must not know Kubernetes", pkg, dep)
			case strings.HasPrefix(dep, "github.com/podnet/podnet/") &&
				dep != "github.com/podnet/podnet/tap" && !strings.HasPrefix(dep, "github.com/podnet/podnet/stack"):
				t.Errorf("%s depends on %s: stack may use only tap of this module", pkg, dep)
			}
		}
	}
}
