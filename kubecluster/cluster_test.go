package kubecluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"podnet", true}, {"dev-2", true}, {"", false}, {"Dev", false}, {"a_b", false}, {"a/b", false},
		{strings.Repeat("x", 21), false},
	} {
		if err := checkName(tc.name); (err == nil) != tc.ok {
			t.Errorf("checkName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestUpRefusesBadInput: bad options are refused before anything is made, naming the option.
func TestUpRefusesBadInput(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Name: "Bad Name", Root: root}, "cluster name"},
		{Options{Name: "a", Nodes: 500, Root: root}, "--nodes 500"},
		{Options{Name: "a", CNI: "flannel", Root: root}, `--cni "flannel"`},
	} {
		_, err := Up(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Up(%+v) = %v, want an error naming %q", tc.o, err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("Up made %v under the root for bad options", entries)
	}
}

// TestStateRoundTrip: the state Down works from is saved and read back whole.
func TestStateRoundTrip(t *testing.T) {
	root := t.TempDir()
	st := &State{Name: "c", Dir: filepath.Join(root, "c"), NetNS: "podnet-c", APIPort: 1234,
		Nodes:     []Node{{Name: "node-1", Address: "10.250.0.11", NetNS: "podnet-c-node-1", MountNS: "/x", CgroupRoot: "/podnet-c-node-1"}},
		Processes: []Process{{Name: "etcd", PID: 1, Start: 2}}, MountPoints: []string{"/etc/cni"}}
	os.MkdirAll(st.Dir, 0o755)
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	got, err := Load(root, "c")
	if err != nil {
		t.Fatal(err)
	}
	if got.Nodes[0] != st.Nodes[0] || got.Processes[0] != st.Processes[0] || got.APIPort != 1234 || got.MountPoints[0] != "/etc/cni" {
		t.Errorf("loaded %+v, want %+v", got, st)
	}
	if _, err := Load(root, "missing"); err == nil || !strings.Contains(err.Error(), `no cluster "missing"`) {
		t.Errorf("Load of a missing cluster: %v", err)
	}
}

// TestProcessAlive: a recorded process is alive only with its own start time, so a PID that
// another process took is never signalled.
func TestProcessAlive(t *testing.T) {
	self := Process{PID: os.Getpid(), Start: startTime(os.Getpid())}
	if !self.alive() {
		t.Error("this process is not alive")
	}
	reused := self
	reused.Start++
	if reused.alive() {
		t.Error("a process with another start time counts as the recorded one")
	}
	if (Process{PID: 0}).alive() {
		t.Error("PID 0 is alive")
	}
}

// TestConfigs: the node configurations carry what this kind of host needs.
func TestConfigs(t *testing.T) {
	k := kubeletConfig(Node{Name: "node-1", Address: "10.250.0.11", CgroupRoot: "/podnet-c-node-1"})
	for _, want := range []string{"failCgroupV1: false", "cgroupDriver: cgroupfs", "failSwapOn: false", "cgroupRoot: /podnet-c-node-1",
		"clusterDNS: [10.96.0.10]", "makeIPTablesUtilChains: false", "address: 10.250.0.11", `nodefs.available: "1%"`} {
		if !strings.Contains(k, want) {
			t.Errorf("kubelet configuration lacks %q:\n%s", want, k)
		}
	}
	c := containerdConfig("/usr/sbin/runc")
	for _, want := range []string{"restrict_oom_score_adj = true", `sandbox = "` + PauseImage + `"`, "disable = true", `BinaryName = "/usr/sbin/runc"`} {
		if !strings.Contains(c, want) {
			t.Errorf("containerd configuration lacks %q:\n%s", want, c)
		}
	}
}

// TestToolbox: the toolbox has dash as sh, OpenBSD's nc, curl and dig with their libraries, and
// busybox's other applets as links.
func TestToolbox(t *testing.T) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/curl", "/usr/bin/dig", "/usr/bin/getent", "/usr/bin/nc.openbsd", "/usr/bin/dash"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("skipped: %s is not installed (apt-get install busybox-static curl dnsutils netcat-openbsd dash)", p)
		}
	}
	img, err := Toolbox()
	if err != nil {
		t.Fatal(err)
	}
	if img.Files["/bin/sh"] == "" || !strings.Contains(img.Files["/bin/sh"], "dash") {
		t.Errorf("/bin/sh is %q, want dash", img.Files["/bin/sh"])
	}
	if !strings.Contains(img.Files["/usr/bin/nc"], "nc.openbsd") {
		t.Errorf("/usr/bin/nc is %q, want OpenBSD's", img.Files["/usr/bin/nc"])
	}
	if _, ok := img.Symlinks["/bin/sh"]; ok {
		t.Error("/bin/sh is busybox's too")
	}
	if img.Symlinks["/bin/wget"] != "busybox" || img.Symlinks["/bin/nslookup"] != "busybox" {
		t.Errorf("busybox applets missing: wget %q nslookup %q", img.Symlinks["/bin/wget"], img.Symlinks["/bin/nslookup"])
	}
	libc := false
	for p := range img.Files {
		libc = libc || strings.Contains(p, "libc.so")
	}
	if !libc {
		t.Error("no libc in the toolbox for curl, dig and dash")
	}
}
