package stack_test

import (
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps the data path free of Kubernetes and of the rest of podnet: stack may depend
// on tap and nothing else of this module.
func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		switch {
		case depcheck.IsKubernetes(dep):
			return "the data path must not know Kubernetes"
		case depcheck.IsOurs(dep) && dep != "github.com/podnet/podnet/tap" && !strings.HasPrefix(dep, "github.com/podnet/podnet/stack"):
			return "stack may use only tap of this module"
		}
		return ""
	}, ".", "./stacktest")
}
