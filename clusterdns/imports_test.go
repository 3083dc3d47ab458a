package clusterdns_test

import (
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps the DNS server pure Go: it is handed plain structs and
// DNS messages, so it must not know Kubernetes' types nor a network
// stack's, nor depend on the rest of podnet.
func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		switch {
		case depcheck.IsKubernetes(dep):
			return "clusterdns is given plain structs; the node agent converts Kubernetes objects"
		case strings.HasPrefix(dep, "gvisor.dev/"):
			return "clusterdns must not know the network stack; the data path hands it DNS messages"
		case depcheck.IsOurs(dep) && !strings.HasPrefix(dep, depcheck.Module+"/clusterdns"):
			return "clusterdns depends on no other podnet package"
		}
		return ""
	}, ".", "./clusterdnstest")
}
