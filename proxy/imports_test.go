package proxy_test

import (
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps the Service table pure Go: it is handed plain structs, so
// it must not know Kubernetes' types nor a network stack's, nor depend on
// the rest of podnet.
func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		switch {
		case depcheck.IsKubernetes(dep):
			return "proxy is given plain structs; the node agent converts Kubernetes objects"
		case strings.HasPrefix(dep, "gvisor.dev/"):
			return "proxy must not know the network stack; the data path calls it"
		case depcheck.IsOurs(dep) && !strings.HasPrefix(dep, depcheck.Module+"/proxy"):
			return "proxy depends on no other podnet package"
		}
		return ""
	}, ".", "./proxytest")
}
