package kubesource_test

import (
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps the Kubernetes source free of network stacks, as cluster/ is.
func TestImports(t *testing.T) {
	forbidden := []string{"gvisor.dev/", "golang.zx2c4.com/wireguard", "github.com/vishvananda/", "github.com/podnet/podnet/agent"}
	depcheck.Forbid(t, func(dep string) string {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				return "the source hands objects over; it knows no network stack or agent"
			}
		}
		return ""
	}, ".")
}
