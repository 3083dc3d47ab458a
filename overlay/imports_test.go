package overlay_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the overlay free of Kubernetes and of the rest of podnet.
func TestImports(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: runs go list")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("skipping: go command not found: %v", err)
	}
	for _, pkg := range []string{".", "./overlaytest"} {
		out, err := exec.Command(gobin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			switch {
			case strings.HasPrefix(dep, "k8s.io/"), strings.HasPrefix(dep, "sigs.k8s.io/"):
				t.Errorf("%s depends on %s: the overlay must not know Kubernetes", pkg, dep)
			case strings.HasPrefix(dep, "github.com/podnet/podnet/") && !strings.HasPrefix(dep, "github.com/podnet/podnet/overlay"):
				t.Errorf("%s depends on %s: overlay may use nothing else of this module", pkg, dep)
			}
		}
	}
}
