package cluster

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoNetworkStackImports keeps cluster/ free of network stacks: the object
// model must build and test without gVisor, wireguard-go or netlink.
func TestNoNetworkStackImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH: cannot list dependencies")
	}
	out, err := exec.Command(goTool, "list", "-deps", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./...: %v\n%s", err, out)
	}
	forbidden := []string{"gvisor.dev/", "golang.zx2c4.com/wireguard", "github.com/vishvananda/", "github.com/miekg/dns"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("cluster/... depends on %s", dep)
			}
		}
	}
}
