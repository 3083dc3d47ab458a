// Package integration holds podnet's end-to-end tests: real labs of real network namespaces,
// driven with real clients (curl, ping) through the podnet binary. They need root (or, later, a
// user namespace), /dev/net/tun and iproute2; where those are missing they skip and say why.
package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// podnetBin is the podnet binary built by TestMain.
var podnetBin string

func TestMain(m *testing.M) {
	// The test binary doubles as a small UDP client that runs inside pods (see udpClient).
	if addr := os.Getenv("PODNET_TEST_UDP_CLIENT"); addr != "" {
		size, _ := strconv.Atoi(os.Getenv("PODNET_TEST_UDP_SIZE"))
		os.Exit(udpClient(addr, size))
	}
	if addr := os.Getenv("PODNET_TEST_UDP_FLOOD"); addr != "" {
		n, _ := strconv.Atoi(os.Getenv("PODNET_TEST_UDP_COUNT"))
		os.Exit(udpFlood(addr, n))
	}
	if addr := os.Getenv("PODNET_TEST_DNS_GARBAGE"); addr != "" {
		os.Exit(dnsGarbage(addr))
	}
	// ... and as the network-policy prober (see netpolProbe).
	if targets := os.Getenv("PODNET_TEST_PROBE"); targets != "" {
		os.Exit(netpolProbe(targets))
	}
	// PODNET_BIN names a prebuilt binary: the rootless run uses one built by root, since the
	// unprivileged user has no Go toolchain or module cache of its own.
	if podnetBin = os.Getenv("PODNET_BIN"); podnetBin != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "podnet-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	podnetBin = filepath.Join(dir, "podnet")
	for _, c := range []string{"podnet", "podnet-cni"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, c), "../cmd/"+c).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", c, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// udpClient sends a datagram of size bytes (at least "ping") to addr until it is answered, up to
// five times a second apart, and prints the answer.
func udpClient(addr string, size int) int {
	c, err := net.Dial("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	buf := make([]byte, 1500)
	query := []byte("ping")
	if size > len(query) {
		query = append(query, make([]byte, size-len(query))...)
	}
	for try := 0; try < 5; try++ {
		c.Write(query)
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err == nil {
			fmt.Print(string(buf[:n]))
			return 0
		}
	}
	fmt.Fprintln(os.Stderr, "no UDP answer from", addr)
	return 1
}

// udpFlood sends n datagrams to addr, each from a socket of its own, so each is a new flow, as
// fast as it can; it does not wait for answers.
func udpFlood(addr string, n int) int {
	for range n {
		c, err := net.Dial("udp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c.Write([]byte("flood"))
		c.Close()
	}
	return 0
}

// requireLab skips the test where a lab cannot run, naming what is missing.
func requireLab(t *testing.T) {
	t.Helper()
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		t.Skipf("skipped: cannot open /dev/net/tun (%v), so no TAP device can be made", err)
	} else {
		f.Close()
	}
	for _, tool := range []string{"ip", "curl", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s is not installed (apt-get install iproute2 curl iputils-ping)", tool)
		}
	}
	if os.Geteuid() != 0 {
		// A rootless lab needs an unprivileged user namespace.
		cmd := exec.Command("true")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		}
		if err := cmd.Run(); err != nil {
			t.Skipf("skipped: unprivileged user namespaces are not available (%v)", err)
		}
	}
}

// stateBase is where this user's labs keep their state (lab.BaseDir).
func stateBase() string {
	if os.Geteuid() == 0 {
		return "/run/podnet"
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "podnet")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("podnet-%d", os.Geteuid()))
}

// hostSnapshot is what a lab must leave as it found it.
type hostSnapshot struct {
	netns, links, procs string
}

func snapshot(t *testing.T) hostSnapshot {
	t.Helper()
	netns, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	links, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	return hostSnapshot{netns: string(netns), links: linkNames(string(links)), procs: podnetProcs()}
}

func linkNames(out string) string {
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// podnetProcs lists the processes started from the test's podnet binary (daemon, inits, and
// the containers they run, which inherit nothing that names them: so count by executable and by
// the marker in their environment).
func podnetProcs() string {
	var procs []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if bytes.Contains(cmdline, []byte(podnetBin)) || bytes.Contains(env, []byte("POD_NAME=")) {
			procs = append(procs, strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	sort.Strings(procs)
	return strings.Join(procs, "\n")
}

func (s hostSnapshot) check(t *testing.T, after hostSnapshot) {
	t.Helper()
	if s.netns != after.netns {
		t.Errorf("ip netns changed:\nbefore: %q\nafter:  %q", s.netns, after.netns)
	}
	if s.links != after.links {
		t.Errorf("host links changed:\nbefore: %s\nafter:  %s", s.links, after.links)
	}
	if s.procs != after.procs {
		t.Errorf("podnet processes left behind:\nbefore:\n%s\nafter:\n%s", s.procs, after.procs)
	}
}

// labRun is one lab for one test.
type labRun struct {
	t    *testing.T
	name string
}

func (l *labRun) podnet(args ...string) (string, error) {
	cmd := exec.Command(podnetBin, append([]string{"--name", l.name}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("podnet %s: %w\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// must runs podnet and fails t (the calling test or subtest) if it fails.
func (l *labRun) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := l.podnet(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// daemonPID returns the pid of the lab's daemon, from lab status ("State: running (daemon pid N)").
func (l *labRun) daemonPID(t *testing.T) int {
	t.Helper()
	st := l.must(t, "lab", "status")
	for _, line := range strings.Split(st, "\n") {
		if _, after, ok := strings.Cut(line, "daemon pid "); ok {
			if pid, err := strconv.Atoi(strings.TrimRight(after, ")")); err == nil {
				return pid
			}
		}
	}
	t.Fatalf("no daemon pid in lab status:\n%s", st)
	return 0
}

func (l *labRun) pods() map[string]*corev1.Pod {
	l.t.Helper()
	var list struct{ Items []*corev1.Pod }
	if err := json.Unmarshal([]byte(l.must(l.t, "get", "pods", "-A", "-o", "json")), &list); err != nil {
		l.t.Fatalf("decode pods: %v", err)
	}
	m := map[string]*corev1.Pod{}
	for _, p := range list.Items {
		m[p.Name] = p
	}
	return m
}

const sameNodeLab = `
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: itest}
spec:
  clusterCIDR: 10.244.0.0/16
  nodes: [{name: node-a}]
---
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  nodeName: node-a
  containers:
  - name: serve
    command: ["podnet", "serve", "--http", "80", "--udp", "7001"]
    readinessProbe: {tcpSocket: {port: 80}}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-a
  containers:
  - name: client
    command: ["sleep", "infinity"]
---
apiVersion: v1
kind: Pod
metadata: {name: duo}
spec:
  nodeName: node-a
  containers:
  - name: web
    command: ["podnet", "serve", "--http", "8080"]
    readinessProbe: {httpGet: {path: /, port: 8080}}
  - name: sidecar
    command: ["sh", "-c", "echo hello from the sidecar; exec sleep infinity"]
`

// boundedLab is sameNodeLab with a bound of 100 new flows a second a pod, which a test can reach.
var boundedLab = strings.Replace(sameNodeLab, "  nodes: [{name: node-a}]\n", "  maxNewFlowsPerPod: 100\n  nodes: [{name: node-a}]\n", 1)

func startLab(t *testing.T, manifest string) *labRun {
	t.Helper()
	l := &labRun{t: t, name: fmt.Sprintf("it%d", os.Getpid()%100000)}
	file := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := l.podnet("lab", "down"); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	out := l.must(t, "lab", "up", "-f", file, "--timeout", "60s")
	wantMode := "root mode"
	if os.Geteuid() != 0 {
		wantMode = "rootless mode"
	}
	if !strings.Contains(out, wantMode) {
		t.Errorf("lab up does not say %q:\n%s", wantMode, out)
	}
	return l
}

func TestSameNodePods(t *testing.T) {
	requireLab(t)
	before := snapshot(t)
	// A server on the host's loopback, which pods reach at their gateway address.
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	go http.Serve(hostLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host saw %s\n", r.RemoteAddr)
	}))
	hostPort := hostLn.Addr().(*net.TCPAddr).Port

	l := startLab(t, boundedLab)
	pods := l.pods()
	server, client, duo := pods["server"], pods["client"], pods["duo"]
	for _, p := range []*corev1.Pod{server, client, duo} {
		if p == nil || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
			t.Fatalf("pod not running with an IP: %+v", p)
		}
	}
	if server.Status.PodIP == client.Status.PodIP {
		t.Fatalf("two pods share IP %s", server.Status.PodIP)
	}
	wide := l.must(t, "get", "pods", "-o", "wide")
	if !strings.Contains(wide, server.Status.PodIP) || !strings.Contains(wide, "node-a") {
		t.Errorf("get pods -o wide lacks IP or node:\n%s", wide)
	}

	t.Run("curl keeps the client's pod IP", func(t *testing.T) {
		out := l.must(t, "exec", "client", "--", "curl", "-sS", "--max-time", "5", "http://"+server.Status.PodIP+"/clientip")
		if strings.TrimSpace(out) != client.Status.PodIP {
			t.Errorf("/clientip = %q, want the client's pod IP %s", out, client.Status.PodIP)
		}
		out = l.must(t, "exec", "client", "--", "curl", "-sS", "--max-time", "5", "http://"+server.Status.PodIP+"/")
		if strings.TrimSpace(out) != "server" {
			t.Errorf("/ = %q, want the server's pod name", out)
		}
	})
	t.Run("ping", func(t *testing.T) {
		l.must(t, "exec", "client", "--", "ping", "-c", "2", "-W", "2", server.Status.PodIP)
		gw := l.must(t, "exec", "client", "--", "sh", "-c", "ip route show default | awk '{print $3}'")
		l.must(t, "exec", "client", "--", "ping", "-c", "1", "-W", "2", strings.TrimSpace(gw))
	})
	t.Run("UDP round trip", func(t *testing.T) {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		out := l.must(t, "exec", "client", "--", "env", "PODNET_TEST_UDP_CLIENT="+server.Status.PodIP+":7001", self)
		if strings.TrimSpace(out) != "server" {
			t.Errorf("UDP answer %q, want the server's pod name", out)
		}
	})
	t.Run("a pod's flood", func(t *testing.T) {
		if !strings.Contains(boundedLab, "maxNewFlowsPerPod: 100") {
			t.Fatal("boundedLab sets no bound on new flows")
		}
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		udp := func(size int) (string, error) {
			return l.podnet("exec", "client", "--", "env", "PODNET_TEST_UDP_CLIENT="+server.Status.PodIP+":7001",
				fmt.Sprintf("PODNET_TEST_UDP_SIZE=%d", size), self)
		}
		const drops = "podnet_stack_dropped_frames_total"
		// 1,000 new flows from a pod whose bound is 100 a second: most are dropped, and the
		// pod's next flow passes once its reader has caught up.
		before := l.metricWhere(t, drops, `reason="new_flow_limit"`)
		l.must(t, "exec", "client", "--", "env", "PODNET_TEST_UDP_FLOOD="+server.Status.PodIP+":7001", "PODNET_TEST_UDP_COUNT=1000", self)
		if out, err := udp(0); err != nil || strings.TrimSpace(out) != "server" {
			t.Errorf("UDP after the flood: %q, %v; want the server's pod name", out, err)
		}
		if n := l.metricWhere(t, drops, `reason="new_flow_limit"`) - before; n < 500 {
			t.Errorf("%v new flows dropped of 1,000 sent at a bound of 100 a second, want most", n)
		} else {
			t.Logf("%v of 1,000 new flows dropped", n)
		}
		// The pod's kernel cuts a datagram into fragments of 80 bytes toward a route locked at
		// MTU 100: all but the last are tiny, and the datagram never arrives. At 576 they pass.
		route := func(mtu string) {
			l.must(t, "exec", "client", "--", "sh", "-c",
				"ip route replace $(ip route get "+server.Status.PodIP+" | head -1 | sed 's/ uid .*//; s/ src [^ ]*//') mtu lock "+mtu)
		}
		before = l.metricWhere(t, drops, `reason="tiny_fragment"`)
		route("100")
		defer l.podnet("exec", "client", "--", "ip", "route", "del", server.Status.PodIP+"/32")
		if out, err := udp(1000); err == nil {
			t.Errorf("a datagram in 80-byte fragments was answered: %q", out)
		}
		if n := l.metricWhere(t, drops, `reason="tiny_fragment"`) - before; n < 12 {
			t.Errorf("%v tiny fragments dropped, want at least the 12 of one datagram", n)
		} else {
			t.Logf("%v tiny fragments dropped", n)
		}
		route("576")
		if out, err := udp(1000); err != nil || strings.TrimSpace(out) != "server" {
			t.Errorf("a datagram in 552-byte fragments: %q, %v; want the server's pod name", out, err)
		}
	})
	t.Run("localhost between containers", func(t *testing.T) {
		out := l.must(t, "exec", "duo", "-c", "sidecar", "--", "curl", "-sS", "--max-time", "5", "http://127.0.0.1:8080/")
		if strings.TrimSpace(out) != "duo" {
			t.Errorf("localhost:8080 from the sidecar = %q, want duo", out)
		}
		logs := l.must(t, "logs", "duo", "-c", "sidecar")
		if !strings.Contains(logs, "hello from the sidecar") {
			t.Errorf("sidecar logs = %q", logs)
		}
	})
	t.Run("pod reaches the host", func(t *testing.T) {
		gw := strings.TrimSpace(l.must(t, "exec", "client", "--", "sh", "-c", "ip route show default | awk '{print $3}'"))
		out := l.must(t, "exec", "client", "--", "curl", "-sS", "--max-time", "5", fmt.Sprintf("http://%s:%d/", gw, hostPort))
		if !strings.HasPrefix(out, "host saw 127.0.0.1:") {
			t.Errorf("host server answered %q", out)
		}
	})
	t.Run("environment and resolv.conf", func(t *testing.T) {
		out := l.must(t, "exec", "client", "--", "sh", "-c", "echo $POD_NAME $POD_NAMESPACE $POD_IP $NODE_NAME; cat /etc/resolv.conf")
		want := fmt.Sprintf("client default %s node-a", client.Status.PodIP)
		if !strings.HasPrefix(out, want) || !strings.Contains(out, "nameserver 10.96.0.10") ||
			!strings.Contains(out, "search default.svc.cluster.local svc.cluster.local cluster.local") || !strings.Contains(out, "ndots:5") {
			t.Errorf("environment and resolv.conf:\n%s\nwant %q and cluster DNS settings", out, want)
		}
	})
	t.Run("exec exit status", func(t *testing.T) {
		_, err := l.podnet("exec", "client", "--", "sh", "-c", "exit 7")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Errorf("exec of exit 7: %v", err)
		}
	})

	if _, err := l.podnet("lab", "down"); err != nil {
		t.Fatal(err)
	}
	before.check(t, snapshot(t))
}

func TestLabSurvivesSIGKILL(t *testing.T) {
	requireLab(t)
	before := snapshot(t)
	l := startLab(t, sameNodeLab)
	podsBefore := l.pods()
	ipBefore := podsBefore["server"].Status.PodIP

	pid := l.daemonPID(t)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Every container dies with the daemon (parent-death signal on each pod's init).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && podnetProcs() != before.procs {
		time.Sleep(100 * time.Millisecond)
	}
	if got := podnetProcs(); got != before.procs {
		t.Errorf("processes outlived a SIGKILLed daemon:\n%s", got)
	}

	// Without -f, the lab comes back as it was: nothing of the built-in example is laid over it.
	l.must(t, "lab", "up", "--timeout", "60s")
	podsAfter := l.pods()
	if ip := podsAfter["server"].Status.PodIP; ip != ipBefore {
		t.Errorf("server pod IP after restart = %s, want it kept: %s", ip, ipBefore)
	}
	if names, want := sortedKeys(podsAfter), sortedKeys(podsBefore); !slices.Equal(names, want) {
		t.Errorf("pods after the lab resumed = %v, want the same as before: %v", names, want)
	}
	l.must(t, "lab", "down")
	before.check(t, snapshot(t))
	if _, err := os.Stat(filepath.Join(stateBase(), l.name)); !os.IsNotExist(err) {
		t.Errorf("state directory left behind: %v", err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.Sort(keys)
	return keys
}
