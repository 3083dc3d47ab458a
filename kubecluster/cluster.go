package kubecluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podnet/podnet/internal/realtime"
)

// Addresses of a cluster's underlay, inside its own namespaces.
const (
	bridgeAddr  = "10.250.0.1" // the bridge, in the cluster's own namespace
	underlayLen = 24
	apiPort     = 6443
)

// Options configures Up.
type Options struct {
	// Name names the cluster (and its namespaces). Default "podnet".
	Name string
	// Nodes is the number of nodes. Default 2.
	Nodes int
	// KubeBin holds the Kubernetes components (make kube-bin's bin/kube). Required.
	KubeBin string
	// Podnet is the podnet binary that goes into the podnet image; podnet-cni must be beside it.
	// Empty means the running executable.
	Podnet string
	// Manifest is deploy/podnet.yaml. Required.
	Manifest []byte
	// Root is where clusters keep their state. Empty means DefaultRoot.
	Root string
	// Log receives progress. Nil means discard.
	Log *slog.Logger
	// CNI is the cluster's network: "podnet" (the default), or "bridge", the reference CNI
	// plugins (bridge and host-local, make kube-bin's cni-plugins) on each node with no Service
	// proxy and no route between nodes: a baseline for benchmarks of pods on one node.
	CNI string
}

// DefaultRoot is where clusters keep their state by default.
const DefaultRoot = "/var/lib/podnet-cluster"

// State is what a cluster made, as recorded in its state directory: everything Down removes.
type State struct {
	Name string `json:"name"`
	// Dir is the state directory.
	Dir string `json:"dir"`
	// NetNS is the cluster's own network namespace (ip netns name).
	NetNS string `json:"netns"`
	// APIPort is where the forwarder listens on the host's 127.0.0.1.
	APIPort int    `json:"apiPort"`
	Token   string `json:"token"`
	Nodes   []Node `json:"nodes"`
	// Processes are the long-running processes started, in order.
	Processes []Process `json:"processes"`
	// MountPoints are directories made on the host to mount over, removed at Down when empty.
	MountPoints []string `json:"mountPoints,omitempty"`
	// Cgroups are the cgroup directories made, removed at Down.
	Cgroups []string `json:"cgroups,omitempty"`
}

// Node is one node of a cluster.
type Node struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// NetNS is the node's network namespace (ip netns name), MountNS the file its mount
	// namespace is bound to.
	NetNS   string `json:"netns"`
	MountNS string `json:"mountns"`
	// CgroupRoot is the kubelet's cgroupRoot.
	CgroupRoot string `json:"cgroupRoot"`
}

// Process is one process a cluster started.
type Process struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// Start is the process's start time (/proc/PID/stat field 22), so that a PID reused by
	// another process is never signalled.
	Start uint64 `json:"start"`
}

func (st *State) path() string { return filepath.Join(st.Dir, "state.json") }

// The control plane runs in the first node's network namespace, as on a kubeadm control-plane
// node that is also a worker: the API server reaches pods (its proxy, webhooks) through that
// node's podnet0, as a real control-plane node running podnet does.
func (st *State) controlNetNS() string { return st.Nodes[0].NetNS }
func (st *State) controlAddr() string  { return st.Nodes[0].Address }

func (st *State) save() error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := st.path() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, st.path())
}

// Load reads the state of the cluster name under root.
func Load(root, name string) (*State, error) {
	if root == "" {
		root = DefaultRoot
	}
	b, err := os.ReadFile(filepath.Join(root, name, "state.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no cluster %q (no %s)", name, filepath.Join(root, name, "state.json"))
		}
		return nil, err
	}
	st := &State{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("cluster %s: state: %w", name, err)
	}
	return st, nil
}

// Kubeconfig is the path of the cluster's admin kubeconfig for the host (through the forwarder).
func (st *State) Kubeconfig() string { return filepath.Join(st.Dir, "kubeconfig") }

// internalKubeconfig is the admin kubeconfig for the cluster's own namespaces.
func (st *State) internalKubeconfig() string { return filepath.Join(st.Dir, "kubeconfig.internal") }

func (st *State) logPath(name string) string { return filepath.Join(st.Dir, "logs", name+".log") }

// up is the run of Up.
type up struct {
	opts Options
	st   *State
	log  *slog.Logger
}

// Up brings a cluster up and returns its state once every node is Ready. On error it leaves what
// it made recorded in the state, for Down.
func Up(ctx context.Context, o Options) (*State, error) {
	if o.Name == "" {
		o.Name = "podnet"
	}
	if o.Nodes == 0 {
		o.Nodes = 2
	}
	if o.Root == "" {
		o.Root = DefaultRoot
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	switch o.CNI {
	case "":
		o.CNI = "podnet"
	case "podnet", "bridge":
	default:
		return nil, fmt.Errorf("cluster %s: --cni %q: want podnet or bridge", o.Name, o.CNI)
	}
	if err := checkName(o.Name); err != nil {
		return nil, err
	}
	if o.Nodes < 1 || o.Nodes > 200 {
		return nil, fmt.Errorf("cluster %s: --nodes %d: want 1 to 200", o.Name, o.Nodes)
	}
	if err := preflight(o); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", o.Name, err)
	}
	dir := filepath.Join(o.Root, o.Name)
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err == nil {
		return nil, fmt.Errorf("cluster %s exists (%s): run `podnet cluster down --name %s` first", o.Name, dir, o.Name)
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	u := &up{opts: o, log: o.Log, st: &State{Name: o.Name, Dir: dir, NetNS: "podnet-" + o.Name}}
	for i := 1; i <= o.Nodes; i++ {
		name := fmt.Sprintf("node-%d", i)
		u.st.Nodes = append(u.st.Nodes, Node{
			Name:       name,
			Address:    fmt.Sprintf("10.250.0.%d", 10+i),
			NetNS:      fmt.Sprintf("podnet-%s-%s", o.Name, name),
			MountNS:    filepath.Join(dir, "mnt", name),
			CgroupRoot: fmt.Sprintf("/podnet-%s-%s", o.Name, name),
		})
	}
	if err := u.st.save(); err != nil {
		return nil, err
	}
	for _, step := range []struct {
		what string
		do   func(context.Context) error
	}{
		{"network namespaces", u.network},
		{"node mount namespaces", u.mounts},
		{"cgroups", u.cgroups},
		{"control plane", u.controlPlane},
		{"images", u.images},
		{"nodes", u.nodes},
		{o.CNI, u.installNetwork},
		{"nodes Ready", u.waitReady},
	} {
		start := time.Now()
		u.log.Info(step.what)
		err := step.do(ctx)
		if serr := u.st.save(); err == nil {
			err = serr
		}
		if err != nil {
			return u.st, fmt.Errorf("cluster %s: %s: %w", o.Name, step.what, err)
		}
		u.log.Info(step.what+" done", "took", time.Since(start).Round(time.Millisecond))
	}
	return u.st, nil
}

func checkName(name string) error {
	if len(name) > 20 || name == "" {
		return fmt.Errorf("cluster name %q: want 1 to 20 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("cluster name %q: want lower-case letters, digits and '-'", name)
		}
	}
	return nil
}

// preflight checks what Up needs and names all that is missing.
func preflight(o Options) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (kubelet and containerd run as root; a rootless cluster is not supported yet)")
	}
	for _, t := range []string{"ip", "nsenter", "unshare", "mount", "umount", "runc"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t+" (apt-get install iproute2 util-linux mount runc)")
		}
	}
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl",
		"containerd", "containerd-shim-runc-v2", "ctr", "cni/loopback"} {
		if _, err := os.Stat(filepath.Join(o.KubeBin, c)); err != nil {
			missing = append(missing, filepath.Join(o.KubeBin, c)+" (make kube-bin)")
		}
	}
	if len(o.Manifest) == 0 {
		missing = append(missing, "deploy/podnet.yaml")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s", strings.Join(missing, "; "))
	}
	return nil
}

// run runs a command and returns its error with its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// network makes the cluster's namespace with its bridge, and each node's with its veth.
func (u *up) network(context.Context) error {
	ns := u.st.NetNS
	if err := run("ip", "netns", "add", ns); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", "br0", "type", "bridge"},
		{"-n", ns, "addr", "add", fmt.Sprintf("%s/%d", bridgeAddr, underlayLen), "dev", "br0"},
		{"-n", ns, "link", "set", "br0", "up"},
	}
	for i, n := range u.st.Nodes {
		if err := run("ip", "netns", "add", n.NetNS); err != nil {
			return err
		}
		peer := fmt.Sprintf("v%d", i+1)
		steps = append(steps,
			[]string{"link", "add", "eth0", "netns", n.NetNS, "type", "veth", "peer", "name", peer, "netns", ns},
			[]string{"-n", ns, "link", "set", peer, "master", "br0", "up"},
			[]string{"-n", n.NetNS, "link", "set", "lo", "up"},
			[]string{"-n", n.NetNS, "addr", "add", fmt.Sprintf("%s/%d", n.Address, underlayLen), "dev", "eth0"},
			[]string{"-n", n.NetNS, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			return err
		}
	}
	return nil
}

// nodeDirs are the host paths each node has its own of, and the directory under the node's
// state that stands for each.
var nodeDirs = []struct{ host, own string }{
	{"/etc/cni/net.d", "etc-cni-net.d"},
	{"/opt/cni/bin", "opt-cni-bin"},
	{"/var/lib/kubelet", "var-lib-kubelet"},
	{"/var/lib/containerd", "var-lib-containerd"},
	{"/run/containerd", "run-containerd"},
	{"/var/lib/podnet", "var-lib-podnet"},
	{"/run/podnet", "run-podnet"},
	{"/run/netns", "run-netns"},
	{"/var/log/pods", "var-log-pods"},
	{"/var/log/containers", "var-log-containers"},
}

func (st *State) nodeDir(n Node, own string) string {
	return filepath.Join(st.Dir, "nodes", n.Name, own)
}

// mounts makes each node's mount namespace, bound to a file under the state directory (whose
// directory is a private mount, as unshare needs), with the node's own directories mounted over
// the host's.
func (u *up) mounts(context.Context) error {
	mnt := filepath.Join(u.st.Dir, "mnt")
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return err
	}
	if err := run("mount", "--bind", mnt, mnt); err != nil {
		return err
	}
	if err := run("mount", "--make-private", mnt); err != nil {
		return err
	}
	for _, d := range nodeDirs {
		if err := u.mkdirHost(d.host); err != nil {
			return err
		}
	}
	for _, n := range u.st.Nodes {
		if err := os.WriteFile(n.MountNS, nil, 0o600); err != nil {
			return err
		}
		var script []string
		for _, d := range nodeDirs {
			own := u.st.nodeDir(n, d.own)
			if err := os.MkdirAll(own, 0o755); err != nil {
				return err
			}
			script = append(script, fmt.Sprintf("mount --bind %q %q", own, d.host))
		}
		// Slave propagation: the host's later mounts (cgroups, /proc) still reach the node; the
		// node's (the kubelet's volumes, containerd's rootfs and pod namespaces) stay in it. Then
		// every mount is made shared within the node too, as on a machine whose init shares /:
		// the agent's container sees the pod namespaces containerd mounts later (its
		// /var/run/netns is mounted with HostToContainer propagation).
		script = append(script, "mount --make-rshared /")
		if err := run("unshare", "--mount="+n.MountNS, "--propagation", "slave", "--", "sh", "-ec", strings.Join(script, "\n")); err != nil {
			return err
		}
	}
	return nil
}

// mkdirHost makes a host directory (and its missing parents) to mount over, recording what it
// made.
func (u *up) mkdirHost(p string) error {
	var made []string
	for d := p; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		made = append(made, d)
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	u.st.MountPoints = append(u.st.MountPoints, made...)
	return nil
}

// cgroups makes each node's cgroupRoot in every cgroup v1 hierarchy (the kubelet wants it in
// all, name=systemd included), with the cpuset's CPUs and memory nodes copied from the root.
func (u *up) cgroups(context.Context) error {
	hier, err := filepath.Glob("/sys/fs/cgroup/*")
	if err != nil {
		return err
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return errors.New("this host runs cgroup v2 only: podnet cluster supports cgroup v1 hosts so far")
	}
	rt := map[string][]string{} // the node cgroups in the hierarchy with real-time budgets
	for _, n := range u.st.Nodes {
		for _, h := range hier {
			if fi, err := os.Stat(h); err != nil || !fi.IsDir() || strings.HasSuffix(h, "/unified") {
				continue
			}
			d := h + n.CgroupRoot
			if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			u.st.Cgroups = append(u.st.Cgroups, d)
			if _, err := os.Stat(filepath.Join(h, "cpu.rt_runtime_us")); err == nil {
				rt[h] = append(rt[h], d)
			}
			if filepath.Base(h) == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					b, err := os.ReadFile(filepath.Join(h, f))
					if err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
						return err
					}
				}
			}
		}
	}
	// Each node gets an equal part of the host's real-time budget, as a machine of its own has
	// its root cgroup's (CONFIG_RT_GROUP_SCHED): without one, no process of the node could run
	// under SCHED_RR, and `podnet node --realtime-priority` has one to pass down to its pod. Not
	// needed for anything else, so a host with none left only gets a warning.
	seen := map[string]bool{}
	for h, dirs := range rt {
		real, err := filepath.EvalSymlinks(h)
		if err != nil || seen[real] {
			continue // cpu and cpu,cpuacct: the same hierarchy
		}
		seen[real] = true
		budgets, err := realtime.Divide(h, dirs)
		if err != nil {
			u.log.Warn("the nodes get no real-time budget of their own: an agent under --realtime-priority may be refused one", "err", err)
			continue
		}
		for _, b := range budgets {
			u.log.Info("real-time budget", "cgroup", b.Dir, "runtime", b.Runtime, "period", b.Period)
		}
	}
	return nil
}

// start starts a long-running process detached (its own session), with its output in its log,
// in the network namespace netns and mount namespace mountns where given, and records it.
func (u *up) start(name, netns, mountns, bin string, args ...string) error {
	logf, err := os.OpenFile(u.st.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := nsCommand(netns, mountns, bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	u.st.Processes = append(u.st.Processes, Process{Name: name, PID: cmd.Process.Pid, Start: startTime(cmd.Process.Pid)})
	go cmd.Wait() // reaped while Up runs; afterwards init reaps it
	return u.st.save()
}

// nsCommand is bin run in the given namespaces (empty: the caller's) through nsenter, which
// opens the namespace files before entering any.
func nsCommand(netns, mountns, bin string, args ...string) *exec.Cmd {
	var pre []string
	if netns != "" {
		pre = append(pre, "--net=/run/netns/"+netns)
	}
	if mountns != "" {
		pre = append(pre, "--mount="+mountns)
	}
	if len(pre) == 0 {
		return exec.Command(bin, args...)
	}
	return exec.Command("nsenter", append(append(pre, "--", bin), args...)...)
}

// startTime is field 22 of /proc/PID/stat; 0 if the process is gone.
func startTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// alive reports whether p still runs (and is not a zombie).
func (p Process) alive() bool {
	if p.PID <= 0 || startTime(p.PID) != p.Start {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	s := string(b)
	return !strings.HasPrefix(s[strings.LastIndexByte(s, ')')+2:], "Z")
}

func (u *up) bin(name string) string { return filepath.Join(u.opts.KubeBin, name) }

// kubectl runs kubectl in the cluster's namespace with the internal kubeconfig.
func (u *up) kubectl(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := nsCommand(u.st.controlNetNS(), "", u.bin("kubectl"), append([]string{"--kubeconfig", u.st.internalKubeconfig()}, args...)...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// waitFor polls cond every 300 ms until it is true or the timeout ends.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %v: %w", what, timeout, err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// freePort returns a TCP port free on the host's 127.0.0.1 now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// nodeAddrs are the nodes' underlay addresses.
func (st *State) nodeAddrs() []netip.Addr {
	var out []netip.Addr
	for _, n := range st.Nodes {
		out = append(out, netip.MustParseAddr(n.Address))
	}
	return out
}
