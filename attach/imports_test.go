package attach_test

import (
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps the protocol free of what it connects: no agent, no network stack, no
// Kubernetes client.
func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		if (depcheck.IsOurs(dep) && dep != depcheck.Module+"/attach" && dep != depcheck.Module+"/attach/attachtest") || depcheck.IsKubernetes(dep) {
			return "the attach protocol stands alone"
		}
		return ""
	}, ".", "./attachtest")
}
