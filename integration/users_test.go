package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOtherUsersAreRefused runs as root with PODNET_TEST_USER naming an unprivileged user: that
// user starts a rootless lab, root starts a lab of the same name at the same time, and root —
// whom file permissions would let through — is refused on the user's sockets.
func TestOtherUsersAreRefused(t *testing.T) {
	requireLab(t)
	name := os.Getenv("PODNET_TEST_USER")
	if os.Geteuid() != 0 || name == "" {
		t.Skip("skipped: needs root and PODNET_TEST_USER=<an unprivileged user> (make test sets both)")
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("skipped: user %q does not exist: %v", name, err)
	}
	// The user needs to read the binary: copy it somewhere world-readable.
	dir, err := os.MkdirTemp("", "podnet-users-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "podnet")
	if out, err := exec.Command("cp", podnetBin, bin).CombinedOutput(); err != nil {
		t.Fatalf("copy binary: %v %s", err, out)
	}
	os.Chmod(bin, 0o755)
	labName := fmt.Sprintf("same%d", os.Getpid()%10000)
	asUser := func(args ...string) (string, error) {
		cmd := exec.Command("runuser", append([]string{"-u", name, "--", bin, "--name", labName}, args...)...)
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	manifest := filepath.Join(dir, "lab.yaml")
	os.WriteFile(manifest, []byte(sameNodeLab), 0o644)
	if out, err := asUser("lab", "up", "-f", manifest, "--timeout", "60s"); err != nil {
		t.Fatalf("rootless lab up as %s: %v\n%s", name, err, out)
	}
	defer func() {
		if out, err := asUser("lab", "down"); err != nil {
			t.Errorf("lab down as %s: %v\n%s", name, err, out)
		}
	}()
	// Root runs a lab of the same name at the same time.
	l := &labRun{t: t, name: labName}
	if _, err := l.podnet("lab", "up", "-f", manifest, "--timeout", "60s"); err != nil {
		t.Fatalf("root lab of the same name: %v", err)
	}
	defer l.podnet("lab", "down")
	if out, err := asUser("lab", "status"); err != nil || !strings.Contains(out, "rootless") {
		t.Errorf("the user's lab status: %v\n%s", err, out)
	}
	if out := l.must(t, "lab", "status"); !strings.Contains(out, "Mode:     root\n") {
		t.Errorf("root's lab status:\n%s", out)
	}

	userDir := filepath.Join(os.TempDir(), "podnet-"+u.Uid, labName)
	for _, sock := range []string{"lab.sock", "exec.sock"} {
		path := filepath.Join(userDir, sock)
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("the user's %s: %v", sock, err)
		}
		client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", path)
			},
		}}
		resp, err := client.Get("http://lab/v1/status")
		if err == nil {
			resp.Body.Close()
			t.Errorf("root was answered on the user's %s (status %s); want the connection refused", sock, resp.Status)
		}
	}
}
