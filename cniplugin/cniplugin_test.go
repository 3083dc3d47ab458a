package cniplugin_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/agent/agenttest"
	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/attach/attachtest"
	"github.com/podnet/podnet/cniplugin"
	"github.com/podnet/podnet/podlink"
	"github.com/podnet/podnet/sandbox"
)

// The test binary is the plugin when it runs with CNI_COMMAND set, as containerd runs plugins:
// the tests execute it with the CNI environment and the configuration on stdin.
func TestMain(m *testing.M) {
	if os.Getenv("CNI_COMMAND") != "" {
		os.Exit(cniplugin.Main())
	}
	os.Exit(m.Run())
}

// node is a fake agent behind a unix socket, and the plugin's configuration for it.
type node struct {
	t        *testing.T
	fake     *attachtest.Fake // the agent, unless agent is set
	agent    attach.Attacher
	socket   string
	stateDir string
	srv      *http.Server
	done     chan struct{}
	netns    string // a network namespace for ADD and CHECK
	override bool   // CNI_NETNS_OVERRIDE: netns is not a real namespace (no privileges to make one)
}

func newNode(t *testing.T) *node {
	fake := &attachtest.Fake{}
	n := newNodeWith(t, fake)
	n.fake = fake
	return n
}

// newNodeWith serves the agent a.
func newNodeWith(t *testing.T, a attach.Attacher) *node {
	dir := t.TempDir()
	n := &node{t: t, agent: a, socket: filepath.Join(dir, "cni.sock"), stateDir: filepath.Join(dir, "state")}
	if os.Geteuid() == 0 {
		sb, err := sandbox.New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Close() })
		n.netns = fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), sb.NetNS())
	} else {
		// skel refuses the plugin's own namespace; without privileges to make another, tell it
		// (the fake agent does not look at the namespace).
		n.netns, n.override = "/proc/self/ns/net", true
	}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *node) start() {
	ln, err := net.Listen("unix", n.socket)
	if err != nil {
		n.t.Fatal(err)
	}
	n.srv = &http.Server{Handler: attach.Handler(n.agent)}
	n.done = make(chan struct{})
	go func() {
		defer close(n.done)
		n.srv.Serve(ln)
	}()
}

func (n *node) stop() {
	if n.srv != nil {
		n.srv.Close()
		<-n.done
		n.srv = nil
		os.Remove(n.socket)
	}
}

func (n *node) conf(extra string) string {
	return fmt.Sprintf(`{"cniVersion":"1.1.0","name":"podnet","type":"podnet-cni","socket":%q,"stateDir":%q%s}`, n.socket, n.stateDir, extra)
}

// result of one plugin run.
type result struct {
	code   int // exit status
	stdout string
	errc   int // the error JSON's code, 0 without one
}

// run executes the plugin as containerd does: verb, container ID, the environment and stdin.
func (n *node) run(verb, id, stdin string, env ...string) result {
	n.t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append([]string{
		"CNI_COMMAND=" + verb,
		"CNI_CONTAINERID=" + id,
		"CNI_NETNS=" + n.netns,
		"CNI_IFNAME=eth0",
		"CNI_PATH=/opt/cni/bin",
		"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=" + id,
	}, env...)
	if n.override {
		cmd.Env = append(cmd.Env, "CNI_NETNS_OVERRIDE=1")
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String()}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		r.code = exit.ExitCode()
	} else if err != nil {
		n.t.Fatal(err)
	}
	if r.code != 0 {
		var e struct{ Code int }
		if json.Unmarshal([]byte(r.stdout), &e) != nil {
			n.t.Errorf("%s exited %d without the spec's error JSON: %q (stderr %q)", verb, r.code, r.stdout, errOut.String())
		}
		r.errc = e.Code
	}
	return r
}

func TestVersion(t *testing.T) {
	n := newNode(t)
	r := n.run("VERSION", "", `{"cniVersion":"1.1.0"}`)
	var v struct {
		CNIVersion        string
		SupportedVersions []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 {
		t.Fatalf("VERSION: exit %d, %q: %v", r.code, r.stdout, err)
	}
	if !slices.Contains(v.SupportedVersions, "1.1.0") || !slices.Contains(v.SupportedVersions, "0.4.0") {
		t.Errorf("supported versions %v, want 1.1.0 and 0.4.0 among them", v.SupportedVersions)
	}
}

// TestAddCheckDel is a pod's life: ADD prints the 1.1 result, a second ADD the same, CHECK passes
// while attached and fails after, DEL is idempotent.
func TestAddCheckDel(t *testing.T) {
	n := newNode(t)
	conf := n.conf("")
	r := n.run("ADD", "c1", conf)
	if r.code != 0 {
		t.Fatalf("ADD: exit %d: %s", r.code, r.stdout)
	}
	var res struct {
		CNIVersion string
		Interfaces []struct {
			Name, Mac, Sandbox string
			Mtu                int
		}
		IPs []struct {
			Interface *int
			Address   string
			Gateway   string
		}
		Routes []struct{ Dst, GW string }
		DNS    struct{ Nameservers, Search, Options []string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.CNIVersion != "1.1.0" || len(res.Interfaces) != 1 || res.Interfaces[0].Name != "eth0" || res.Interfaces[0].Sandbox != n.netns ||
		len(res.IPs) != 1 || res.IPs[0].Address != "10.244.0.2/32" || res.IPs[0].Gateway != "10.244.0.1" || res.IPs[0].Interface == nil ||
		len(res.Routes) != 1 || res.Routes[0].Dst != "0.0.0.0/0" || res.Routes[0].GW != "10.244.0.1" ||
		!slices.Equal(res.DNS.Nameservers, []string{"10.96.0.10"}) || res.DNS.Search[0] != "web.svc.cluster.local" {
		t.Errorf("ADD result:\n%s", r.stdout)
	}
	if again := n.run("ADD", "c1", conf); again.code != 0 || again.stdout != r.stdout {
		t.Errorf("second ADD: exit %d\n%s\nwant the same result", again.code, again.stdout)
	}
	if got := n.run("CHECK", "c1", conf); got.code != 0 {
		t.Errorf("CHECK: exit %d: %s", got.code, got.stdout)
	}
	for range 2 {
		if got := n.run("DEL", "c1", conf); got.code != 0 {
			t.Errorf("DEL: exit %d: %s", got.code, got.stdout)
		}
	}
	if got := n.fake.Attached(); len(got) != 0 {
		t.Errorf("after DEL: %v attached", got)
	}
	if got := n.run("CHECK", "c1", conf); got.code == 0 || !strings.Contains(got.stdout, "not attached") {
		t.Errorf("CHECK after DEL: exit %d: %s; want the agent's reason", got.code, got.stdout)
	}
	// An older configuration version gets the result in its own format.
	old := strings.Replace(conf, `"1.1.0"`, `"0.4.0"`, 1)
	if r := n.run("ADD", "c2", old); r.code != 0 || !strings.Contains(r.stdout, `"cniVersion": "0.4.0"`) {
		t.Errorf("ADD with cniVersion 0.4.0: exit %d\n%s", r.code, r.stdout)
	}
}

// TestStatus: STATUS exits 50 with code 50 while the agent is not ready or not there.
func TestStatus(t *testing.T) {
	n := newNode(t)
	conf := n.conf("")
	if r := n.run("STATUS", "", conf); r.code != 0 {
		t.Errorf("STATUS of a ready agent: exit %d: %s", r.code, r.stdout)
	}
	n.fake.SetReady(errors.New("caches not synced"))
	if r := n.run("STATUS", "", conf); r.code != 50 || r.errc != 50 || !strings.Contains(r.stdout, "caches not synced") {
		t.Errorf("STATUS of an agent not ready: exit %d, code %d: %s", r.code, r.errc, r.stdout)
	}
	n.stop()
	if r := n.run("STATUS", "", conf); r.code != 50 || r.errc != 50 {
		t.Errorf("STATUS without an agent: exit %d, code %d: %s", r.code, r.errc, r.stdout)
	}
	if r := n.run("ADD", "c1", conf); r.errc != 11 {
		t.Errorf("ADD without an agent: exit %d, code %d, want 11 (try again later): %s", r.code, r.errc, r.stdout)
	}
}

// TestDelWithAgentDown: a DEL while the agent is down succeeds and is queued; once the agent is
// back the next call finishes it, and nothing stays attached.
func TestDelWithAgentDown(t *testing.T) {
	n := newNode(t)
	conf := n.conf("")
	for _, id := range []string{"c1", "c2"} {
		if r := n.run("ADD", id, conf); r.code != 0 {
			t.Fatalf("ADD %s: %s", id, r.stdout)
		}
	}
	n.stop()
	if r := n.run("DEL", "c1", conf); r.code != 0 {
		t.Fatalf("DEL with the agent down: exit %d: %s", r.code, r.stdout)
	}
	if q, _ := cniplugin.QueuedDels(n.stateDir); !slices.Equal(q, []string{"c1"}) {
		t.Errorf("queued DELs %v, want c1", q)
	}
	// An ADD of c1 while its DEL waits would be undone by it: try again later.
	if r := n.run("ADD", "c1", conf); r.errc != 11 || !strings.Contains(r.stdout, "a DEL of this container waits") {
		t.Errorf("ADD of a container whose DEL is queued: exit %d, code %d: %s; want code 11", r.code, r.errc, r.stdout)
	}
	n.start() // the agent is back, still holding c1 and c2 (an agent that kept its state)
	if r := n.run("STATUS", "", conf); r.code != 0 {
		t.Fatalf("STATUS: %s", r.stdout)
	}
	if q, _ := cniplugin.QueuedDels(n.stateDir); len(q) != 0 {
		t.Errorf("queued DELs %v after the agent came back", q)
	}
	if got := n.fake.Attached(); !slices.Equal(got, []string{"c2"}) {
		t.Errorf("attached %v, want c2 only", got)
	}
}

// TestGC: GC keeps what is in cni.dev/valid-attachments and releases the rest.
func TestGC(t *testing.T) {
	n := newNode(t)
	conf := n.conf("")
	for _, id := range []string{"c1", "c2", "c3"} {
		n.run("ADD", id, conf)
	}
	gc := n.conf(`,"cni.dev/valid-attachments":[{"containerID":"c2","ifname":"eth0"}]`)
	if r := n.run("GC", "", gc); r.code != 0 {
		t.Fatalf("GC: exit %d: %s", r.code, r.stdout)
	}
	if got := n.fake.Attached(); !slices.Equal(got, []string{"c2"}) {
		t.Errorf("after GC: %v attached, want c2", got)
	}
}

// TestBadInput: each bad invocation gets the spec's error code and changes nothing.
func TestBadInput(t *testing.T) {
	n := newNode(t)
	good := n.conf("")
	for _, tc := range []struct {
		name, verb, conf string
		env              []string
		code             int
	}{
		{"malformed configuration", "ADD", `{"cniVersion":"1.1.0",`, nil, 6},                   // ErrDecodingFailure
		{"unknown version", "ADD", strings.Replace(good, `"1.1.0"`, `"9.9.9"`, 1), nil, 1},     // ErrIncompatibleCNIVersion
		{"no CNI_NETNS", "ADD", good, []string{"CNI_NETNS="}, 4},                               // ErrInvalidEnvironmentVariables
		{"no CNI_CONTAINERID", "DEL", good, []string{"CNI_CONTAINERID="}, 4},                   //
		{"bad container ID", "ADD", good, []string{"CNI_CONTAINERID=../x"}, 4},                 // skel's check of the ID
		{"bad timeout", "ADD", n.conf(`,"timeout":"soon"`), nil, 7},                            // ErrInvalidNetworkConfig
		{"CHECK under 0.3.1", "CHECK", strings.Replace(good, `"1.1.0"`, `"0.3.1"`, 1), nil, 1}, // CHECK needs 0.4.0
		{"GC under 1.0.0", "GC", strings.Replace(good, `"1.1.0"`, `"1.0.0"`, 1), nil, 1},       // GC needs 1.1.0
		{"bad CNI_ARGS", "ADD", good, []string{"CNI_ARGS=K8S_POD_NAMESPACE"}, 4},               // not KEY=VALUE
		{"hostPort 0", "ADD", n.conf(`,"runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80,"protocol":"tcp"}]}`), nil, 7},
		{"containerPort too big", "ADD", n.conf(`,"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":70000}]}`), nil, 7},
		{"sctp hostPort", "ADD", n.conf(`,"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"sctp"}]}`), nil, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(n.fake.Calls())
			r := n.run(tc.verb, "c1", tc.conf, tc.env...)
			if r.code == 0 || r.errc != tc.code {
				t.Errorf("exit %d, code %d, want code %d: %s", r.code, r.errc, tc.code, r.stdout)
			}
			if calls := n.fake.Calls()[before:]; len(calls) != 0 {
				t.Errorf("the agent was called: %v", calls)
			}
		})
	}
}

// TestRealAgent runs the plugin against a real agent: STATUS 50 until it starts, ADD makes eth0
// in the namespace with the address the result names, DEL takes it away, and CHECK fails once
// the interface was removed by hand.
func TestRealAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: a real attach needs root to make the pod's namespace (the end-to-end suite runs it)")
	}
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		t.Skipf("skipped: a pod interface needs /dev/net/tun: %v", err)
	} else {
		f.Close()
	}
	src := &agenttest.Source{}
	a, err := agent.New(agenttest.Options(src, "127.77.0.5", t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	n := newNodeWith(t, a)
	conf := n.conf("")
	if r := n.run("STATUS", "", conf); r.errc != 50 {
		t.Errorf("STATUS before the agent started: exit %d: %s; want code 50", r.code, r.stdout)
	}
	a.Start()
	t.Cleanup(func() { a.Close() })
	if r := n.run("STATUS", "", conf); r.code != 0 {
		t.Errorf("STATUS: exit %d: %s", r.code, r.stdout)
	}
	r := n.run("ADD", "sandbox-1", conf)
	if r.code != 0 {
		t.Fatalf("ADD: exit %d: %s", r.code, r.stdout)
	}
	ip, err := cniplugin.ResultAddress([]byte(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	if err := podlink.Check(n.netns, podlink.Config{IP: ip}); err != nil {
		t.Errorf("after ADD: %v", err)
	}
	if r := n.run("CHECK", "sandbox-1", conf); r.code != 0 {
		t.Errorf("CHECK: exit %d: %s", r.code, r.stdout)
	}
	// DEL takes the interface away; the namespace can take a pod again.
	if r := n.run("DEL", "sandbox-1", conf); r.code != 0 {
		t.Errorf("DEL: exit %d: %s", r.code, r.stdout)
	}
	if err := podlink.Check(n.netns, podlink.Config{IP: ip}); err == nil {
		t.Error("eth0 is still there after DEL")
	}
	if r := n.run("ADD", "sandbox-2", conf); r.code != 0 {
		t.Fatalf("ADD in the same namespace after DEL: exit %d: %s", r.code, r.stdout)
	}
	// Someone removes eth0 by hand: CHECK says so.
	if out, err := exec.Command("nsenter", "--net="+n.netns, "ip", "link", "del", "eth0").CombinedOutput(); err != nil {
		t.Skipf("skipped the rest: cannot remove eth0 by hand (nsenter, ip): %v %s", err, out)
	}
	if r := n.run("CHECK", "sandbox-2", conf); r.code == 0 || !strings.Contains(r.stdout, "no such interface") {
		t.Errorf("CHECK after eth0 was removed: exit %d: %s", r.code, r.stdout)
	}
	if r := n.run("DEL", "sandbox-2", conf); r.code != 0 {
		t.Errorf("DEL: exit %d: %s", r.code, r.stdout)
	}
}

// TestPortMappings: the portMappings capability reaches the agent with the ADD, in lower case.
func TestPortMappings(t *testing.T) {
	n := newNode(t)
	conf := n.conf(`,"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"TCP"},{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"0.0.0.0"}]}`)
	if r := n.run("ADD", "c1", conf); r.code != 0 {
		t.Fatalf("ADD: exit %d: %s", r.code, r.stdout)
	}
	req, ok := n.fake.Request("c1")
	want := []attach.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "0.0.0.0"}}
	if !ok || !slices.Equal(req.PortMappings, want) {
		t.Errorf("the agent got %+v, want %+v", req.PortMappings, want)
	}
}
