package podruntime_test

import (
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps the runtime on its side of the attach protocol: it never reaches into the
// agent or the data path, so a pod of the lab takes the same path as one of containerd's.
func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		switch dep {
		case depcheck.Module + "/agent", depcheck.Module + "/stack", depcheck.Module + "/podlink", depcheck.Module + "/tap":
			return "the pod runtime reaches the network through attach.Attacher only"
		}
		return ""
	}, ".")
}
