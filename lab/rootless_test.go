package lab

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestUserNamespaceErrorNamesTheSetting(t *testing.T) {
	cause := errors.New("fork/exec /proc/self/exe: operation not permitted")
	for _, tc := range []struct {
		name     string
		settings map[string]string
		want     []string
	}{
		{"debian sysctl", map[string]string{"/proc/sys/kernel/unprivileged_userns_clone": "0", "/proc/sys/user/max_user_namespaces": "100"},
			[]string{"kernel.unprivileged_userns_clone is 0", "sysctl -w kernel.unprivileged_userns_clone=1"}},
		{"no namespaces allowed", map[string]string{"/proc/sys/user/max_user_namespaces": "0"},
			[]string{"user.max_user_namespaces is 0", "sysctl -w user.max_user_namespaces="}},
		{"apparmor", map[string]string{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1", "/proc/sys/user/max_user_namespaces": "100"},
			[]string{"AppArmor", "kernel.apparmor_restrict_unprivileged_userns=0"}},
		{"unknown", map[string]string{"/proc/sys/user/max_user_namespaces": "100"},
			[]string{"making one failed", "operation not permitted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := userNamespaceError(cause, func(p string) string { return tc.settings[p] })
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "rootless lab needs unprivileged user namespaces") {
				t.Errorf("error %q does not say what needs them", err)
			}
		})
	}
}

func TestUpLeavesNothingWhenPreflightFails(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	name := "preflight-" + strconv.Itoa(os.Getpid())
	_, err := Up(UpOptions{Name: name, Manifests: []Manifest{{Source: "x", Data: Example}},
		preflight: func() error { return errors.New("user namespaces are off") }})
	if err == nil || !strings.Contains(err.Error(), "user namespaces are off") {
		t.Fatalf("Up: %v", err)
	}
	if _, err := os.Stat(StateDir(name)); !os.IsNotExist(err) {
		t.Errorf("Up left its state directory %s behind (stat: %v)", StateDir(name), err)
	}
}

func TestRootlessFollowsUIDMap(t *testing.T) {
	// The test process is either an ordinary user or real root (identity map): both answers are
	// checked against what the kernel says.
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		t.Skip("skipped: no /proc/self/uid_map")
	}
	identity := strings.Join(strings.Fields(string(b)), " ") == "0 0 4294967295"
	want := os.Geteuid() != 0 || !identity
	if Rootless() != want {
		t.Errorf("Rootless() = %v, want %v (euid %d, uid_map %q)", Rootless(), want, os.Geteuid(), b)
	}
}
