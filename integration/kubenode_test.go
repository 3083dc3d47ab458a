package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/controlplane"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/realtime"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// kubeNode is one node of the test: a network namespace of its own (its "host"), with an
// underlay address on a veth to the other node, running `podnet node`.
type kubeNode struct {
	name, netns, socket string
	addr                netip.Addr // the underlay address
	cmd                 *exec.Cmd
	log                 string
	rtPriority          int // --realtime-priority, if not 0
}

// kubePod is a pod's network namespace, made by the test as containerd makes one, and attached
// with podnet-cni.
type kubePod struct {
	name, netns, id string
	ip              netip.Addr
	portMappings    string // the runtimeConfig.portMappings JSON, if any
}

const kubeNodesObjects = `
apiVersion: v1
kind: Node
metadata: {name: node-a}
status: {addresses: [{type: InternalIP, address: 192.168.251.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
status: {addresses: [{type: InternalIP, address: 192.168.251.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  nodeName: node-a
  containers: [{name: c, image: docker.io/library/toolbox:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node-b
  containers: [{name: web, image: docker.io/library/web:1, ports: [{name: http, containerPort: 8080, hostPort: 8081}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}, {name: bulk, port: 9000, targetPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 8088, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: podnet
  rules: [{host: web.example, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]
`

// TestKubeNodes runs two `podnet node` agents against a real kube-apiserver and
// kube-controller-manager, each in a network namespace of its own as a node's host, attaches a
// pod on each through podnet-cni exactly as containerd calls it, and checks: pod-to-pod across
// nodes with the source kept; a ClusterIP and a NodePort through the controller-manager's
// EndpointSlice; the cluster DNS; the `kubernetes` Service, whose endpoint is no pod; the nodes
// reaching pods and ClusterIPs through podnet0; a hostPort; a NetworkPolicy; a pod kept from the
// node's loopback; LoadBalancer and Ingress status written by the Lease holder, and their ports;
// CHECK and DEL; podnet0 gone when the agent stops, and the Lease passed on.
func TestKubeNodes(t *testing.T) {
	requireLab(t)
	if os.Geteuid() != 0 {
		// Rootless Kubernetes (usernetes, rootlesskit) runs the kubelet, containerd and the
		// network plugin as root of a user namespace with a network namespace of its own: so
		// does this run, control plane and all.
		runInUserNS(t)
		return
	}
	cp, client := startControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	manifest := filepath.Join(dir, "objects.yaml")
	os.WriteFile(manifest, []byte(kubeNodesObjects), 0o644)
	if _, err := cp.Kubectl(ctx, "apply", "-f", manifest); err != nil {
		t.Fatal(err)
	}
	// The agents run as deploy/podnet.yaml's ServiceAccount, with its ClusterRole and nothing more.
	applyDeployRBAC(t, ctx, cp, dir)
	kubeconfig := serviceAccountKubeconfig(t, ctx, cp, dir, "podnet-system", "podnet")
	cni := filepath.Join(filepath.Dir(podnetBin), "podnet-cni")
	apiPort := cp.Server[strings.LastIndex(cp.Server, ":")+1:]
	nodes := []*kubeNode{
		{name: "node-a", addr: netip.MustParseAddr("192.168.251.1"), netns: fmt.Sprintf("podnet-kn-a-%d", os.Getpid())},
		{name: "node-b", addr: netip.MustParseAddr("192.168.251.2"), netns: fmt.Sprintf("podnet-kn-b-%d", os.Getpid())},
	}
	makeNodeHosts(t, nodes)
	// The API server listens on the test's loopback; each node reaches it at its own
	// 127.0.0.1 and, for node-a, at its underlay address too (the `kubernetes` Service's endpoint).
	for _, n := range nodes {
		forwardInto(t, n.netns, "0.0.0.0:"+apiPort, "127.0.0.1:"+apiPort)
	}
	// node-a's agent runs under SCHED_RR, where this test may use it.
	rtErr := realtime.Check(1)
	if rtErr == nil {
		nodes[0].rtPriority = 1
	}
	for _, n := range nodes {
		n.socket = filepath.Join(dir, n.name+".sock")
		n.log = filepath.Join(dir, n.name+".log")
		startKubeNode(t, n, kubeconfig, dir)
	}
	conf := func(n *kubeNode, p *kubePod) string {
		extra := ""
		if p.portMappings != "" {
			extra = `,"runtimeConfig":{"portMappings":` + p.portMappings + `}`
		}
		return fmt.Sprintf(`{"cniVersion":"1.1.0","name":"podnet","type":"podnet-cni","socket":%q,"stateDir":%q%s}`, n.socket, filepath.Join(dir, n.name+"-cni"), extra)
	}
	runCNI := func(n *kubeNode, verb string, p *kubePod) (string, error) {
		cmd := exec.Command(cni)
		cmd.Env = []string{"CNI_COMMAND=" + verb, "CNI_CONTAINERID=" + p.id, "CNI_NETNS=/var/run/netns/" + p.netns,
			"CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(cni), "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + p.name}
		cmd.Stdin = strings.NewReader(conf(n, p))
		out, err := cmd.Output()
		return string(out), err
	}
	// Both agents come up: STATUS answers once the informers synced and the Node has its CIDR.
	for _, n := range nodes {
		waitFor(t, "podnet node "+n.name+" ready (CNI STATUS)", func() bool {
			_, err := runCNI(n, "STATUS", &kubePod{})
			return err == nil
		})
	}
	t.Run("--realtime-priority puts every thread of the agent under SCHED_RR", func(t *testing.T) {
		if rtErr != nil {
			t.Skipf("skipped: this process may not use SCHED_RR: %v", rtErr)
		}
		// ip netns exec runs podnet in its own place.
		if notRR := threadsNotRR(nodes[0].cmd.Process.Pid); len(notRR) > 0 {
			t.Errorf("node-a's agent: threads not under SCHED_RR at priority 1: %v", notRR)
		}
		if p, _, err := realtime.Policy(nodes[1].cmd.Process.Pid); err != nil || p != unix.SCHED_NORMAL {
			t.Errorf("node-b's agent, without the flag: policy %d (%v); want SCHED_OTHER", p, err)
		}
	})
	podCIDRs := map[string]netip.Prefix{}
	for _, n := range nodes {
		node, err := client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		podCIDRs[n.name] = netip.MustParsePrefix(node.Spec.PodCIDR)
		if node.Annotations["podnet.dev/wireguard-public-key"] == "" {
			t.Errorf("Node %s has no WireGuard key annotation", n.name)
		}
		cond := false
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionFalse {
				cond = true
			}
		}
		if !cond {
			t.Errorf("Node %s: NetworkUnavailable is not False: %+v", n.name, node.Status.Conditions)
		}
	}

	pods := []*kubePod{
		{name: "client", netns: fmt.Sprintf("podnet-kt-a-%d", os.Getpid()), id: "sandbox-client"},
		{name: "web", netns: fmt.Sprintf("podnet-kt-b-%d", os.Getpid()), id: "sandbox-web",
			portMappings: `[{"hostPort":8081,"containerPort":8080,"protocol":"tcp"}]`},
	}
	for i, p := range pods {
		if out, err := exec.Command("ip", "netns", "add", p.netns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", p.netns).Run() })
		out, err := runCNI(nodes[i], "ADD", p)
		if err != nil {
			t.Fatalf("podnet-cni ADD %s: %v\n%s", p.name, err, out)
		}
		var res struct{ IPs []struct{ Address string } }
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 {
			t.Fatalf("ADD result %s: %v", out, err)
		}
		prefix, err := netip.ParsePrefix(res.IPs[0].Address)
		if err != nil {
			t.Fatal(err)
		}
		p.ip = prefix.Addr()
		t.Cleanup(func() { runCNI(nodes[i], "DEL", p) })
		reportRunning(t, ctx, client, p)
	}
	inNS := func(ns string, args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	}
	server := inNS(pods[1].netns, podnetBin, "serve", "--http", "8080")
	server.Env = append(os.Environ(), "POD_NAME=web")
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	curlIn := func(ns string, url string, extra ...string) (string, error) {
		args := append([]string{"curl", "-sS", "--max-time", "5"}, extra...)
		out, err := inNS(ns, append(args, url)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	curl := func(url string) (string, error) { return curlIn(pods[0].netns, url) }
	// podnet0 holds the last address of its node's pod range.
	nodeLink := func(n *kubeNode) netip.Addr {
		p := podCIDRs[n.name]
		a := p.Addr()
		for range 1<<(32-p.Bits()) - 2 {
			a = a.Next()
		}
		return a
	}
	svc, err := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("pod to pod across nodes keeps the source", func(t *testing.T) {
		var out string
		waitFor(t, "the web pod's server", func() bool {
			var err error
			out, err = curl(fmt.Sprintf("http://%s:8080/clientip", pods[1].ip))
			return err == nil
		})
		if out != pods[0].ip.String() {
			t.Errorf("the server saw %q, want the client's pod IP %v", out, pods[0].ip)
		}
	})
	t.Run("ClusterIP through the controller-manager's EndpointSlice", func(t *testing.T) {
		var out string
		waitFor(t, "the Service to answer", func() bool {
			out, err = curl("http://" + svc.Spec.ClusterIP + "/")
			return err == nil && out == "web"
		})
	})
	t.Run("cluster DNS", func(t *testing.T) {
		if _, err := exec.LookPath("dig"); err != nil {
			t.Skip("skipped: dig is not installed (apt-get install dnsutils)")
		}
		out, err := inNS(pods[0].netns, "dig", "+short", "+time=2", "@10.96.0.10", "web.default.svc.cluster.local").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != svc.Spec.ClusterIP {
			t.Errorf("dig web.default.svc.cluster.local: %q (%v), want %s", out, err, svc.Spec.ClusterIP)
		}
	})
	t.Run("the nodes reach pods and ClusterIPs through podnet0", func(t *testing.T) {
		for _, n := range nodes {
			out, err := curlIn(n.netns, fmt.Sprintf("http://%s:8080/clientip", pods[1].ip))
			if err != nil || out != nodeLink(n).String() {
				t.Errorf("%s to the web pod: %q (%v), want the server to see podnet0's address %v", n.name, out, err, nodeLink(n))
			}
			if out, err := curlIn(n.netns, "http://"+svc.Spec.ClusterIP+"/"); err != nil || out != "web" {
				t.Errorf("%s to the ClusterIP: %q (%v)", n.name, out, err)
			}
		}
	})
	t.Run("NodePort on both nodes", func(t *testing.T) {
		for _, n := range nodes {
			if out, err := curlIn(nodes[0].netns, fmt.Sprintf("http://%s:30080/", n.addr)); err != nil || out != "web" {
				t.Errorf("NodePort on %s: %q (%v)", n.name, out, err)
			}
		}
	})
	t.Run("hostPort keeps the client's address", func(t *testing.T) {
		out, err := curlIn(nodes[0].netns, fmt.Sprintf("http://%s:8081/clientip", nodes[1].addr))
		if err != nil || out != nodes[0].addr.String() {
			t.Errorf("hostPort 8081 on node-b: %q (%v), want the server to see node-a's address %v", out, err, nodes[0].addr)
		}
	})
	t.Run("the kubernetes Service reaches the API server from pods and nodes", func(t *testing.T) {
		kube, err := client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The test's API server advertises no address of the nodes' network: its endpoint is
		// given by hand, as node-a's underlay address, where the test forwards to it.
		slice := fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes-test
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: podnet-test}
addressType: IPv4
endpoints: [{addresses: [%s], conditions: {ready: true}}]
ports: [{name: https, port: %s, protocol: TCP}]
`, nodes[0].addr, apiPort)
		path := filepath.Join(dir, "kubernetes-slice.yaml")
		os.WriteFile(path, []byte(slice), 0o644)
		if _, err := cp.Kubectl(ctx, "apply", "-f", path); err != nil {
			t.Fatal(err)
		}
		url := "https://" + kube.Spec.ClusterIP + "/version"
		for _, ns := range []string{pods[0].netns, pods[1].netns, nodes[1].netns} {
			var out string
			waitFor(t, "the kubernetes Service from "+ns, func() bool {
				out, err = curlIn(ns, url, "-k")
				return err == nil && strings.Contains(out, `"gitVersion"`)
			})
		}
	})
	t.Run("a pod cannot reach its node's loopback", func(t *testing.T) {
		// node-a's 127.0.0.1 has the API server (forwarded); its gateway must not lead there.
		gw := podCIDRs["node-a"].Addr().Next()
		if out, err := curlIn(pods[0].netns, fmt.Sprintf("https://%s:%s/version", gw, apiPort), "-k", "--max-time", "2"); err == nil {
			t.Errorf("a pod reached node-a's loopback at its gateway: %s", out)
		}
	})
	t.Run("NetworkPolicy", func(t *testing.T) {
		deny := filepath.Join(dir, "deny.yaml")
		os.WriteFile(deny, []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-deny}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
`), 0o644)
		if _, err := cp.Kubectl(ctx, "apply", "-f", deny); err != nil {
			t.Fatal(err)
		}
		webURL := fmt.Sprintf("http://%s:8080/", pods[1].ip)
		waitFor(t, "the policy to deny the client", func() bool {
			_, err := curlIn(pods[0].netns, webURL, "--max-time", "1")
			return err != nil
		})
		// The node's own traffic to its pods (the kubelet's probes) stays allowed.
		if out, err := curlIn(nodes[1].netns, webURL); err != nil || out != "web" {
			t.Errorf("node-b to its own pod under a deny-all policy: %q (%v)", out, err)
		}
		if _, err := cp.Kubectl(ctx, "delete", "-f", deny); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the client allowed again", func() bool {
			out, err := curlIn(pods[0].netns, webURL, "--max-time", "1")
			return err == nil && out == "web"
		})
	})
	t.Run("LoadBalancer and Ingress status from the Lease holder, and their ports", func(t *testing.T) {
		want := nodes[0].addr.String() + "," + nodes[1].addr.String()
		waitFor(t, "the LoadBalancer Service's status", func() bool {
			lb, err := client.CoreV1().Services("default").Get(ctx, "web-lb", metav1.GetOptions{})
			var ips []string
			for _, in := range lb.Status.LoadBalancer.Ingress {
				ips = append(ips, in.IP)
			}
			return err == nil && strings.Join(ips, ",") == want
		})
		waitFor(t, "the Ingress's status", func() bool {
			ing, err := client.NetworkingV1().Ingresses("default").Get(ctx, "web", metav1.GetOptions{})
			var ips []string
			for _, in := range ing.Status.LoadBalancer.Ingress {
				ips = append(ips, in.IP)
			}
			return err == nil && strings.Join(ips, ",") == want
		})
		lease, err := client.CoordinationV1().Leases("podnet-system").Get(ctx, "podnet-status", metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil || (*lease.Spec.HolderIdentity != "node-a" && *lease.Spec.HolderIdentity != "node-b") {
			t.Errorf("Lease podnet-system/podnet-status: %+v (%v), want a node holding it", lease, err)
		}
		for _, n := range nodes {
			if out, err := curlIn(nodes[0].netns, fmt.Sprintf("http://%s:8088/", n.addr)); err != nil || out != "web" {
				t.Errorf("LoadBalancer port on %s: %q (%v)", n.name, out, err)
			}
			if out, err := curlIn(nodes[0].netns, fmt.Sprintf("http://%s/", n.addr), "-H", "Host: web.example"); err != nil || out != "web" {
				t.Errorf("Ingress on %s: %q (%v)", n.name, out, err)
			}
		}
	})
	top := t // the restarted agent lives as long as the test, not the subtest
	t.Run("an agent killed (SIGKILL) and started again: transfers continue", func(t *testing.T) {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ name, addr string }{
			{"pod to pod across nodes", pods[1].ip.String()},
			{"through a ClusterIP", svc.Spec.ClusterIP},
		} {
			sink := inNS(pods[1].netns, "env", "PODNET_TEST_SINK=9000", self)
			var sinkOut, sinkErr strings.Builder
			sink.Stdout, sink.Stderr = &sinkOut, &sinkErr
			if err := sink.Start(); err != nil {
				t.Fatal(err)
			}
			src := inNS(pods[0].netns, "env", "PODNET_TEST_SOURCE="+c.addr+":9000", "PODNET_TEST_BYTES=209715200", "PODNET_TEST_PAUSE_MS=10", self)
			var srcOut strings.Builder
			src.Stdout, src.Stderr = &srcOut, &srcOut
			if err := src.Start(); err != nil {
				sink.Process.Kill()
				sink.Wait()
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			// The client's node: it holds the flow's Service translation.
			n := nodes[0]
			n.cmd.Process.Kill()
			n.cmd.Wait()
			start := time.Now()
			startKubeNode(top, n, kubeconfig, dir)
			waitFor(t, "the restarted podnet node ready (CNI STATUS)", func() bool {
				_, err := runCNI(n, "STATUS", &kubePod{})
				return err == nil
			})
			t.Logf("%s: the new agent answered STATUS %v after the kill", c.name, time.Since(start).Round(time.Millisecond))
			srcErr, sinkErrW := src.Wait(), sink.Wait()
			if srcErr != nil || sinkErrW != nil || srcOut.String() != sinkOut.String() || !strings.HasPrefix(sinkOut.String(), "209715200 ") {
				t.Fatalf("%s: source %v %q; sink %v %q %s", c.name, srcErr, srcOut.String(), sinkErrW, sinkOut.String(), sinkErr.String())
			}
			stall := "?"
			for _, l := range strings.Split(sinkErr.String(), "\n") {
				if v, ok := strings.CutPrefix(l, "longest stall "); ok {
					stall = v
				}
			}
			t.Logf("%s: 200 MB with the same SHA-256 across the kill; the receiver's longest wait for data %s", c.name, stall)
		}
		// The new agent took the client pod back: CHECK passes on it.
		if out, err := runCNI(nodes[0], "CHECK", pods[0]); err != nil {
			t.Errorf("CHECK of a pod attached before the kill: %v %s", err, out)
		}
	})
	t.Run("a node fails, is deleted, and comes back", func(t *testing.T) {
		nb := nodes[1]
		// exitCode is curl's exit status: 7 is "could not connect" (refused), 28 a timeout.
		exitCode := func(err error) int {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode()
			}
			return 0
		}
		// node-b dies: its agent and its pod's server are killed.
		nb.cmd.Process.Kill()
		nb.cmd.Wait()
		server.Process.Kill()
		server.Wait()
		// Kubernetes marks the pod not ready (the node lifecycle controller does, once the node
		// misses its lease): the EndpointSlice has no ready endpoint, and node-a refuses new
		// connections to the ClusterIP at once rather than sending them to a dead node.
		setReady(t, ctx, client, pods[1].name, false)
		waitFor(t, "the ClusterIP to refuse new connections", func() bool {
			_, err := curl("http://" + svc.Spec.ClusterIP + "/")
			return exitCode(err) == 7
		})
		// Nothing else on node-a stalls: its pods still get DNS answers.
		if _, err := exec.LookPath("dig"); err == nil {
			if out, err := inNS(pods[0].netns, "dig", "+short", "+time=2", "@10.96.0.10", "web.default.svc.cluster.local").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != svc.Spec.ClusterIP {
				t.Errorf("DNS on node-a while node-b is down: %q (%v)", out, err)
			}
		}
		// The Node is deleted: node-a drops its WireGuard peer and its routes, so traffic to
		// node-b's pod range is refused at once instead of going into the overlay.
		if err := client.CoreV1().Nodes().Delete(ctx, nb.name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "node-a to drop node-b's peer (a connection to its pod refused)", func() bool {
			_, err := curl(fmt.Sprintf("http://%s:8080/", pods[1].ip))
			return exitCode(err) == 7
		})
		// node-b comes back: its Node registers again, its agent starts with its old directories,
		// and its pod's sandbox is made again; node-a is not restarted.
		if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: nb.name},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nb.addr.String()}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		startKubeNode(top, nb, kubeconfig, dir)
		waitFor(t, "node-b's agent back (CNI STATUS)", func() bool {
			_, err := runCNI(nb, "STATUS", &kubePod{})
			return err == nil
		})
		again := &kubePod{name: "web", netns: fmt.Sprintf("podnet-kt-b2-%d", os.Getpid()), id: "sandbox-web-2"}
		if out, err := exec.Command("ip", "netns", "add", again.netns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
		top.Cleanup(func() { runCNI(nb, "DEL", again); exec.Command("ip", "netns", "del", again.netns).Run() })
		out, err := runCNI(nb, "ADD", again)
		if err != nil {
			t.Fatalf("podnet-cni ADD on the node that came back: %v\n%s", err, out)
		}
		var res struct{ IPs []struct{ Address string } }
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 {
			t.Fatalf("ADD result %s: %v", out, err)
		}
		again.ip = netip.MustParsePrefix(res.IPs[0].Address).Addr()
		srv := inNS(again.netns, podnetBin, "serve", "--http", "8080")
		srv.Env = append(os.Environ(), "POD_NAME=web")
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		top.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
		reportRunning(t, ctx, client, again)
		waitFor(t, "pod to pod from node-a to the pod on node-b, which came back", func() bool {
			out, err := curl(fmt.Sprintf("http://%s:8080/clientip", again.ip))
			return err == nil && out == pods[0].ip.String()
		})
		waitFor(t, "the ClusterIP to answer again", func() bool {
			out, err := curl("http://" + svc.Spec.ClusterIP + "/")
			return err == nil && out == "web"
		})
	})
	t.Run("CHECK and DEL", func(t *testing.T) {
		if out, err := runCNI(nodes[0], "CHECK", pods[0]); err != nil {
			t.Errorf("CHECK: %v %s", err, out)
		}
		if out, err := runCNI(nodes[0], "DEL", pods[0]); err != nil {
			t.Errorf("DEL: %v %s", err, out)
		}
		if out, err := runCNI(nodes[0], "CHECK", pods[0]); err == nil {
			t.Errorf("CHECK after DEL passed: %s", out)
		}
	})
	t.Run("podnet0 goes with the agent", func(t *testing.T) {
		n := nodes[0]
		if out, err := inNS(n.netns, "ip", "-o", "addr", "show", "dev", "podnet0").CombinedOutput(); err != nil || !strings.Contains(string(out), nodeLink(n).String()+"/32") {
			t.Fatalf("podnet0 on %s: %s (%v)", n.name, out, err)
		}
		stopKubeNode(t, n)
		if out, err := inNS(n.netns, "ip", "link", "show", "dev", "podnet0").CombinedOutput(); err == nil {
			t.Errorf("podnet0 is still on %s after its agent stopped: %s", n.name, out)
		}
		// node-a gave the Lease up as it stopped: node-b holds it now.
		waitFor(t, "node-b to hold the Lease", func() bool {
			lease, err := client.CoordinationV1().Leases("podnet-system").Get(ctx, "podnet-status", metav1.GetOptions{})
			return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity == "node-b"
		})
	})
}

// runInUserNS runs the test again as root of a new user namespace, with network and mount
// namespaces of its own (a tmpfs on /run for ip netns), as an unprivileged user runs rootless
// Kubernetes, and fails with it.
func runInUserNS(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("skipped: rootless, and unshare (util-linux) is not installed to make a user namespace")
	}
	if out, err := exec.Command("unshare", "--user", "--map-root-user", "true").CombinedOutput(); err != nil {
		t.Skipf("skipped: rootless, and this host gives no user namespaces: %v %s", err, out)
	}
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--net", "--mount", "--",
		"sh", "-c", `mount -t tmpfs tmpfs /run && mkdir /run/netns && ip link set lo up && exec "$@"`,
		"sh", os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "PODNET_BIN="+podnetBin)
	out, err := cmd.CombinedOutput()
	t.Logf("as root of a user namespace:\n%s", out)
	switch {
	case err != nil:
		t.Fatalf("the run in a user namespace failed: %v", err)
	case !strings.Contains(string(out), "--- PASS: "+t.Name()):
		t.Skip("skipped in the user namespace too (see above)")
	}
}

// makeNodeHosts makes each node's network namespace with lo up and an underlay: a veth pair
// between the two nodes, ul0 on each with the node's address in 192.168.251.0/24. Everything is
// removed when the test ends.
func makeNodeHosts(t *testing.T, nodes []*kubeNode) {
	t.Helper()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	for _, n := range nodes {
		run("netns", "add", n.netns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n.netns).Run() })
		run("-n", n.netns, "link", "set", "lo", "up")
	}
	run("link", "add", "ul0", "netns", nodes[0].netns, "type", "veth", "peer", "name", "ul0", "netns", nodes[1].netns)
	for _, n := range nodes {
		run("-n", n.netns, "addr", "add", n.addr.String()+"/24", "dev", "ul0")
		run("-n", n.netns, "link", "set", "ul0", "up")
	}
}

// forwardInto listens on listen inside the network namespace ns (by its ip-netns name) and
// forwards every connection to target in the test's own namespace, until the test ends.
func forwardInto(t *testing.T, ns, listen, target string) {
	t.Helper()
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ln net.Listener
	if err := netns.Do(int(f.Fd()), func() (err error) {
		ln, err = net.Listen("tcp4", listen)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", listen, ns, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				b, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, b)
			})
		}
	})
}

// startKubeNode starts `podnet node` for n in its network namespace.
func startKubeNode(t *testing.T, n *kubeNode, kubeconfig, dir string) {
	t.Helper()
	logf, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command("ip", "netns", "exec", n.netns, podnetBin, "node", "--kubeconfig", kubeconfig, "--node-name", n.name,
		"--state-dir", filepath.Join(dir, n.name), "--run-dir", filepath.Join(dir, n.name+"-run"), "--cni-socket", n.socket, "--cluster-dns", "10.96.0.10",
		"--realtime-priority", strconv.Itoa(n.rtPriority))
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	t.Cleanup(func() {
		stopKubeNode(t, n)
		if t.Failed() {
			b, _ := os.ReadFile(n.log)
			t.Logf("log of podnet node %s:\n%s", n.name, b)
		}
	})
}

// stopKubeNode stops n's agent with SIGINT (SIGKILL after 10 s); a second call does nothing.
func stopKubeNode(t *testing.T, n *kubeNode) {
	if n.cmd == nil || n.cmd.ProcessState != nil {
		return
	}
	n.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		n.cmd.Process.Kill()
		<-done
	}
}

// setReady sets the pod's Ready condition, as its kubelet (or the node lifecycle controller, for
// a node that died) would.
func setReady(t *testing.T, ctx context.Context, client kubernetes.Interface, name string, ready bool) {
	t.Helper()
	obj, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	obj.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// reportRunning reports the pod Running and Ready with its address, as its kubelet would.
func reportRunning(t *testing.T, ctx context.Context, client kubernetes.Interface, p *kubePod) {
	t.Helper()
	obj, err := client.CoreV1().Pods("default").Get(ctx, p.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	obj.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: p.ip.String(), PodIPs: []corev1.PodIP{{IP: p.ip.String()}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
	}
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// applyDeployRBAC applies the Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding of
// deploy/podnet.yaml (not its DaemonSet: these clusters have no kubelets to run it).
func applyDeployRBAC(t *testing.T, ctx context.Context, cp *controlplane.ControlPlane, dir string) {
	t.Helper()
	b, err := os.ReadFile("../deploy/podnet.yaml")
	if os.IsNotExist(err) {
		b, err = os.ReadFile(filepath.Join(os.Getenv("PODNET_REPO"), "deploy/podnet.yaml"))
	}
	if err != nil {
		t.Fatalf("deploy/podnet.yaml (run from the checkout's integration directory, or set PODNET_REPO): %v", err)
	}
	var docs []string
	for _, doc := range strings.Split(string(b), "\n---\n") {
		for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} {
			if strings.Contains(doc, "\nkind: "+kind+"\n") || strings.HasPrefix(doc, "kind: "+kind+"\n") {
				docs = append(docs, doc)
			}
		}
	}
	if len(docs) != 4 {
		t.Fatalf("found %d of the 4 RBAC documents in deploy/podnet.yaml", len(docs))
	}
	path := filepath.Join(dir, "rbac.yaml")
	os.WriteFile(path, []byte(strings.Join(docs, "\n---\n")), 0o644)
	if _, err := cp.Kubectl(ctx, "apply", "-f", path); err != nil {
		t.Fatal(err)
	}
}

// serviceAccountKubeconfig writes a kubeconfig with a token of the ServiceAccount ns/name.
func serviceAccountKubeconfig(t *testing.T, ctx context.Context, cp *controlplane.ControlPlane, dir, ns, name string) string {
	t.Helper()
	token, err := cp.Kubectl(ctx, "create", "token", name, "-n", ns, "--duration", "1h")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, cp.Server, strings.TrimSpace(token))
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestKubeNodeMissingPermissions: an agent whose ServiceAccount lacks permissions stops at once
// and names every one it lacks.
func TestKubeNodeMissingPermissions(t *testing.T) {
	cp, _ := startControlPlane(t)
	ctx := context.Background()
	dir := t.TempDir()
	limited := filepath.Join(dir, "limited.yaml")
	os.WriteFile(limited, []byte(`apiVersion: v1
kind: ServiceAccount
metadata: {name: limited, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: limited}
rules:
- apiGroups: [""]
  resources: [nodes, namespaces, pods, services]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: limited}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: limited}
subjects: [{kind: ServiceAccount, name: limited, namespace: default}]
`), 0o644)
	if _, err := cp.Kubectl(ctx, "apply", "-f", limited); err != nil {
		t.Fatal(err)
	}
	kubeconfig := serviceAccountKubeconfig(t, ctx, cp, dir, "default", "limited")
	cmd := exec.Command(podnetBin, "node", "--kubeconfig", kubeconfig, "--node-name", "node-a",
		"--node-address", "127.0.251.3", "--state-dir", filepath.Join(dir, "state"), "--cni-socket", filepath.Join(dir, "cni.sock"))
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("podnet node without its permissions did not stop:\n%s", out)
	}
	if err == nil {
		t.Fatalf("podnet node without its permissions succeeded:\n%s", out)
	}
	for _, want := range []string{"watch secrets", "list endpointslices.discovery.k8s.io", "patch nodes/status", "deploy/podnet.yaml"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error does not name %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "list pods") {
		t.Errorf("the error names a permission the agent has:\n%s", out)
	}
}
