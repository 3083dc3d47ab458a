package cluster

import (
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestNoNetworkStackImports keeps cluster/ free of network stacks: the object model must build
// and test without gVisor, wireguard-go or netlink.
func TestNoNetworkStackImports(t *testing.T) {
	forbidden := []string{"gvisor.dev/", "golang.zx2c4.com/wireguard", "github.com/vishvananda/", "github.com/miekg/dns"}
	depcheck.Forbid(t, func(dep string) string {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				return "the object model must not depend on a network stack"
			}
		}
		return ""
	}, "./...")
}
