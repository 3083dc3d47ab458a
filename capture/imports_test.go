package capture

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/depcheck"
)

// TestImports keeps the package dependency-free: the standard library
// only, no podnet package, no gopacket.
func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		first, _, _ := strings.Cut(dep, "/")
		switch {
		case dep == depcheck.Module+"/capture":
			return ""
		case depcheck.IsOurs(dep):
			return "capture depends on no other podnet package"
		case strings.Contains(first, "."):
			return "capture uses the standard library only"
		}
		return ""
	}, ".")
}

// TestNoIO checks what the package itself imports: the CLI hands it
// readers, writers and packets, so it needs no files, sockets or system
// calls of its own.
func TestNoIO(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: runs go list")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("skipped: the go command is not on PATH: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-f", `{{join .Imports " "}}`, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, imp := range strings.Fields(string(out)) {
		for _, bad := range []string{"os", "net", "syscall", "unsafe", "log", "sync", "runtime"} {
			if imp != "net/netip" && (imp == bad || strings.HasPrefix(imp, bad+"/")) {
				t.Errorf("capture imports %s: it must do no I/O of its own and keep no shared state", imp)
			}
		}
	}
}
