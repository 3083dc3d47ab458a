package agent_test

import (
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps the agent the node's network only: it attaches pods that a runtime made, and
// never runs containers itself (the sandbox's processes are the lab runtime's).
func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		switch dep {
		case depcheck.Module + "/sandbox", depcheck.Module + "/lab", depcheck.Module + "/lab/podruntime":
			return "the agent is the node's network; running pods is a runtime's job"
		}
		return ""
	}, ".")
}
