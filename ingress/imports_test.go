package ingress_test

import (
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps the controller at the edge of the design: it may know
// Kubernetes' API types, but not the network stack (the Dialer hides it),
// not the API client, and no other podnet package.
func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		switch {
		case strings.HasPrefix(dep, "gvisor.dev/"), strings.HasPrefix(dep, "golang.zx2c4.com/"):
			return "ingress must not know the data path; the node agent gives it a Dialer"
		case strings.HasPrefix(dep, "k8s.io/client-go"):
			return "ingress is given objects; the agent watches the API"
		case depcheck.IsOurs(dep) && !strings.HasPrefix(dep, depcheck.Module+"/ingress"):
			return "ingress depends on no other podnet package"
		}
		return ""
	}, ".", "./ingresstest")
}
