package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/controlplane"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// kubeNode is one `podnet node` process of the test.
type kubeNode struct {
	name, addr, socket string
	cmd                *exec.Cmd
	log                string
}

// kubePod is a pod's network namespace, made by the test as containerd makes one, and attached
// with podnet-cni.
type kubePod struct {
	name, netns, id string
	ip              netip.Addr
}

const kubeNodesObjects = `
apiVersion: v1
kind: Node
metadata: {name: node-a}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
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
  containers: [{name: web, image: docker.io/library/web:1, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
`

// TestKubeNodes runs two `podnet node` agents against a real kube-apiserver and
// kube-controller-manager, attaches a pod on each through podnet-cni exactly as containerd
// calls it, and checks pod-to-pod across nodes with the source kept, a ClusterIP Service through
// the controller-manager's EndpointSlice, and the cluster DNS.
func TestKubeNodes(t *testing.T) {
	requireLab(t)
	if os.Geteuid() != 0 {
		t.Skip("skipped: the test makes pod namespaces as containerd does, with ip netns, which needs root (the root run covers it)")
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
	nodes := []*kubeNode{
		{name: "node-a", addr: "127.0.251.1"},
		{name: "node-b", addr: "127.0.251.2"},
	}
	for _, n := range nodes {
		n.socket = filepath.Join(dir, n.name+".sock")
		n.log = filepath.Join(dir, n.name+".log")
		logf, err := os.Create(n.log)
		if err != nil {
			t.Fatal(err)
		}
		n.cmd = exec.Command(podnetBin, "node", "--kubeconfig", kubeconfig, "--node-name", n.name,
			"--node-address", n.addr, "--state-dir", filepath.Join(dir, n.name), "--cni-socket", n.socket,
			"--cluster-dns", "10.96.0.10")
		n.cmd.Stdout, n.cmd.Stderr = logf, logf
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logf.Close()
		t.Cleanup(func() {
			n.cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { n.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				n.cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				b, _ := os.ReadFile(n.log)
				t.Logf("log of podnet node %s:\n%s", n.name, b)
			}
		})
	}
	conf := func(n *kubeNode) string {
		return fmt.Sprintf(`{"cniVersion":"1.1.0","name":"podnet","type":"podnet-cni","socket":%q,"stateDir":%q}`, n.socket, filepath.Join(dir, n.name+"-cni"))
	}
	runCNI := func(n *kubeNode, verb string, p *kubePod) (string, error) {
		cmd := exec.Command(cni)
		cmd.Env = []string{"CNI_COMMAND=" + verb, "CNI_CONTAINERID=" + p.id, "CNI_NETNS=/var/run/netns/" + p.netns,
			"CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(cni), "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + p.name}
		cmd.Stdin = strings.NewReader(conf(n))
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
	for _, n := range nodes {
		node, err := client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
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
		{name: "web", netns: fmt.Sprintf("podnet-kt-b-%d", os.Getpid()), id: "sandbox-web"},
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
	inPod := func(p *kubePod, args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", p.netns}, args...)...)
	}
	server := inPod(pods[1], podnetBin, "serve", "--http", "8080")
	server.Env = append(os.Environ(), "POD_NAME=web")
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	curl := func(url string) (string, error) {
		out, err := inPod(pods[0], "curl", "-sS", "--max-time", "5", url).CombinedOutput()
		return strings.TrimSpace(string(out)), err
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
		svc, err := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
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
		svc, _ := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		out, err := inPod(pods[0], "dig", "+short", "+time=2", "@10.96.0.10", "web.default.svc.cluster.local").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != svc.Spec.ClusterIP {
			t.Errorf("dig web.default.svc.cluster.local: %q (%v), want %s", out, err, svc.Spec.ClusterIP)
		}
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
