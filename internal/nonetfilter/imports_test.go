package nonetfilter

import (
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestNotInPrograms keeps the test harness out of podnet's programs: the no-netfilter mode is
// something a test puts around them, never something they do to themselves.
func TestNotInPrograms(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		if dep == depcheck.Module+"/internal/nonetfilter" {
			return "the no-netfilter filter is a test harness"
		}
		return ""
	}, "../../cmd/...")
}
