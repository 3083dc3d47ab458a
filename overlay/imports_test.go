package overlay_test

import (
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps the overlay free of Kubernetes and of the rest of podnet.
func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		switch {
		case depcheck.IsKubernetes(dep):
			return "the overlay must not know Kubernetes"
		case depcheck.IsOurs(dep) && !strings.HasPrefix(dep, "github.com/podnet/podnet/overlay"):
			return "overlay may use nothing else of this module"
		}
		return ""
	}, ".", "./overlaytest")
}
