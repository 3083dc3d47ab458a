package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// TestNetworkPolicy runs the model of the upstream network-policy e2e tests
// (test/e2e/network/netpol): namespaces x, y and z, pods a, b and c in each, every pod serving
// TCP and UDP on ports 80 and 81, spread over two nodes. For each case it deletes every policy,
// applies the case's policies, waits for them to take effect (the issue allows a second), probes
// every (from, to) pair on both ports and protocols from inside the pods, and compares the whole
// observed truth table with the one an evaluator written from the API reference expects.
// Statefulness is in the tables: under "default deny ingress in x" the pods of x still reach
// the others, so the replies enter x; under "default deny egress in x" the others still reach
// x, so the replies leave it (for TCP and UDP alike).
//
// Besides the 81 pod pairs, every case probes a ClusterIP Service in front of x/a (column svc-a,
// Service ports 80 and 8081 to the pod's 80 and 81): policy sees the backend pod after
// translation, so that column must equal the x/a column, with one difference: a pod probing
// its own IP talks over its own loopback and never reaches the node agent, so self pairs are
// always allowed (the kernel delivers them); x/a reaching itself through the Service does
// reach the agent, and is allowed as well (see hairpinAllowed).
func TestNetworkPolicy(t *testing.T) {
	requireLab(t)
	if _, err := exec.LookPath("getent"); err != nil {
		t.Skip("skipped: getent is not installed (it comes with libc-bin)")
	}
	before := snapshot(t)
	start := time.Now()
	l := startLab(t, netpolLab())
	np := newNetpolModel(t, l)
	t.Logf("lab up with %d pods in %v", len(np.pods), time.Since(start).Round(time.Millisecond))

	for _, tc := range netpolCases() {
		ok := t.Run(tc.name, func(t *testing.T) {
			caseStart := time.Now()
			pols := np.setPolicies(t, tc.policies(np))
			np.checkTable(t, pols)
			if tc.check != nil {
				tc.check(t, np)
			}
			np.checkReady(t)
			t.Logf("%d policies, %v", len(pols), time.Since(caseStart).Round(time.Millisecond))
		})
		if !ok && np.broken {
			break // the lab itself is gone; every further case would fail the same way
		}
	}
	np.setPolicies(t, "")
	t.Logf("all cases in %v", time.Since(start).Round(time.Millisecond))

	l.must(t, "lab", "down")
	before.check(t, snapshot(t))
}

// The model: namespaces, pods, nodes, ports.
var (
	npNamespaces = []string{"x", "y", "z"}
	npPodNames   = []string{"a", "b", "c"}
	npPorts      = []int{80, 81}
	npProtos     = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP}
)

// npNode places a pod: a on node-a, b on node-b, c alternating (x/c node-a, y/c node-b,
// z/c node-a), so every namespace spans both nodes and every pair of namespaces has same-node
// and cross-node pairs.
func npNode(ns, pod string) string {
	switch {
	case pod == "a":
		return "node-a"
	case pod == "b":
		return "node-b"
	case ns == "y":
		return "node-b"
	}
	return "node-a"
}

// svcPort is the Service port of svc-a that leads to pod port p.
func svcPort(p int) int {
	if p == 80 {
		return 80
	}
	return 8081
}

// netpolLab is the lab file: two nodes, the namespaces (label ns=NAME; some cases select them
// by kubernetes.io/metadata.name instead, which the API server sets on every namespace and
// this file does not), the nine pods and svc-a in front of x/a. Every name is quoted: "y"
// unquoted is YAML 1.1's true.
func netpolLab() string {
	var b strings.Builder
	b.WriteString(`apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: netpol}
spec:
  nodes: [{name: node-a}, {name: node-b}]
`)
	for _, ns := range npNamespaces {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %q, labels: {ns: %q}}\n", ns, ns)
	}
	for _, ns := range npNamespaces {
		for _, pod := range npPodNames {
			fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata: {name: %q, namespace: %q, labels: {pod: %q}}
spec:
  nodeName: %s
  containers:
  - name: serve
    command: ["podnet", "serve", "--tcp", "80,81", "--udp", "80,81"]
    ports:
    - {name: serve-80-tcp, containerPort: 80, protocol: TCP}
    - {name: serve-81-tcp, containerPort: 81, protocol: TCP}
    - {name: serve-80-udp, containerPort: 80, protocol: UDP}
    - {name: serve-81-udp, containerPort: 81, protocol: UDP}
    readinessProbe: {tcpSocket: {port: serve-80-tcp}, periodSeconds: 1, failureThreshold: 2}
`, pod, ns, pod, npNode(ns, pod))
		}
	}
	b.WriteString(`---
apiVersion: v1
kind: Service
metadata: {name: svc-a, namespace: "x"}
spec:
  selector: {pod: "a"}
  ports:
  - {name: tcp-80, port: 80, targetPort: serve-80-tcp}
  - {name: udp-80, port: 80, targetPort: serve-80-udp, protocol: UDP}
  - {name: tcp-81, port: 8081, targetPort: serve-81-tcp}
  - {name: udp-81, port: 8081, targetPort: serve-81-udp, protocol: UDP}
`)
	return b.String()
}

// npPod is one pod of the model.
type npPod struct {
	ns, name, ip, node string
	labels             map[string]string
}

func (p *npPod) String() string { return p.ns + "/" + p.name }

// netpolModel is the running lab and what the test knows of it.
type netpolModel struct {
	l      *labRun
	pods   []*npPod // x/a, x/b, ..., z/c
	vip    string   // svc-a's ClusterIP
	self   string   // the test binary, run inside pods as the prober
	dir    string   // for the policy files
	round  int      // probe rounds so far (each gets UDP source ports of its own)
	broken bool     // the lab stopped answering
}

// svcCol is the column index of svc-a, after the nine pods.
const svcCol = 9

func newNetpolModel(t *testing.T, l *labRun) *netpolModel {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	np := &netpolModel{l: l, self: self, dir: t.TempDir()}
	var list struct{ Items []*corev1.Pod }
	if err := json.Unmarshal([]byte(l.must(t, "get", "pods", "-A", "-o", "json")), &list); err != nil {
		t.Fatalf("decode pods: %v", err)
	}
	byName := map[string]*corev1.Pod{}
	for _, p := range list.Items {
		byName[p.Namespace+"/"+p.Name] = p
	}
	for _, ns := range npNamespaces {
		for _, name := range npPodNames {
			p := byName[ns+"/"+name]
			if p == nil || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
				t.Fatalf("pod %s/%s is not running with an IP: %+v", ns, name, p)
			}
			if p.Spec.NodeName != npNode(ns, name) {
				t.Fatalf("pod %s/%s is on %s, want %s", ns, name, p.Spec.NodeName, npNode(ns, name))
			}
			np.pods = append(np.pods, &npPod{ns: ns, name: name, ip: p.Status.PodIP, node: p.Spec.NodeName, labels: p.Labels})
		}
	}
	var svc corev1.Service
	if err := json.Unmarshal([]byte(l.must(t, "get", "svc", "svc-a", "-n", "x", "-o", "json")), &svc); err != nil {
		t.Fatalf("decode svc-a: %v", err)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == "None" {
		t.Fatalf("svc-a has no ClusterIP: %+v", svc.Spec)
	}
	np.vip = svc.Spec.ClusterIP
	return np
}

// pod returns the pod named "ns/name".
func (np *netpolModel) pod(s string) *npPod {
	for _, p := range np.pods {
		if p.String() == s {
			return p
		}
	}
	panic("no pod " + s)
}

// nsLabels are a namespace's labels as the API server keeps them.
func nsLabels(ns string) labels.Set {
	return labels.Set{"ns": ns, "kubernetes.io/metadata.name": ns}
}

// npContainerPorts are the named ports every pod declares.
var npContainerPorts = map[string]struct {
	port  int
	proto corev1.Protocol
}{
	"serve-80-tcp": {80, corev1.ProtocolTCP},
	"serve-81-tcp": {81, corev1.ProtocolTCP},
	"serve-80-udp": {80, corev1.ProtocolUDP},
	"serve-81-udp": {81, corev1.ProtocolUDP},
}

// setPolicies deletes every NetworkPolicy of the lab, applies manifest (if not empty) and waits
// for it to take effect. It returns the policies of manifest, decoded for the evaluator.
func (np *netpolModel) setPolicies(t *testing.T, manifest string) []*networkingv1.NetworkPolicy {
	t.Helper()
	var list struct{ Items []*networkingv1.NetworkPolicy }
	if err := json.Unmarshal([]byte(np.l.must(t, "get", "netpol", "-A", "-o", "json")), &list); err != nil {
		t.Fatalf("decode networkpolicies: %v", err)
	}
	byNS := map[string][]string{}
	for _, p := range list.Items {
		byNS[p.Namespace] = append(byNS[p.Namespace], p.Name)
	}
	for ns, names := range byNS {
		np.l.must(t, append([]string{"delete", "netpol", "-n", ns}, names...)...)
	}
	if manifest == "" {
		return nil
	}
	pols := decodePolicies(t, manifest)
	file := filepath.Join(np.dir, "policies.yaml")
	if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	np.l.must(t, "apply", "-f", file)
	// The issue: a change applies to new connections within one second.
	time.Sleep(1500 * time.Millisecond)
	return pols
}

// decodePolicies decodes the NetworkPolicies of a multi-document manifest on its own (not with
// podnet's decoder), for the evaluator.
func decodePolicies(t *testing.T, manifest string) []*networkingv1.NetworkPolicy {
	t.Helper()
	var pols []*networkingv1.NetworkPolicy
	for _, doc := range strings.Split(manifest, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		p := new(networkingv1.NetworkPolicy)
		if err := yaml.UnmarshalStrict([]byte(doc), p); err != nil {
			t.Fatalf("test bug: decode policy: %v\n%s", err, doc)
		}
		if p.Kind != "NetworkPolicy" || p.Namespace == "" {
			t.Fatalf("test bug: not a namespaced NetworkPolicy:\n%s", doc)
		}
		pols = append(pols, p)
	}
	return pols
}

// The evaluator: the API semantics, written directly from the networking/v1 reference.

// policyTypes returns which directions p isolates, after the API server's defaulting: without
// policyTypes, Ingress always, and Egress when the policy has egress rules.
func policyTypes(p *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(p.Spec.PolicyTypes) == 0 {
		return true, len(p.Spec.Egress) > 0
	}
	for _, pt := range p.Spec.PolicyTypes {
		switch pt {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

func selectorMatches(t *testing.T, sel *metav1.LabelSelector, set labels.Set) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("test bug: selector %v: %v", sel, err)
	}
	return s.Matches(set)
}

// peerMatches says whether peer of policy p matches pod other (the source of an ingress rule,
// the destination of an egress rule). ipBlock matches pod IPs.
func peerMatches(t *testing.T, p *networkingv1.NetworkPolicy, peer networkingv1.NetworkPolicyPeer, other *npPod) bool {
	if b := peer.IPBlock; b != nil {
		ip := netip.MustParseAddr(other.ip)
		if !netip.MustParsePrefix(b.CIDR).Contains(ip) {
			return false
		}
		for _, e := range b.Except {
			if netip.MustParsePrefix(e).Contains(ip) {
				return false
			}
		}
		return true
	}
	if peer.NamespaceSelector == nil {
		if other.ns != p.Namespace {
			return false
		}
	} else if !selectorMatches(t, peer.NamespaceSelector, nsLabels(other.ns)) {
		return false
	}
	return peer.PodSelector == nil || selectorMatches(t, peer.PodSelector, other.labels)
}

// portMatches says whether a rule's ports admit port/proto on the destination pod. Named ports
// are resolved on the destination pod, with the protocol of the policy port.
func portMatches(ports []networkingv1.NetworkPolicyPort, port int, proto corev1.Protocol) bool {
	if len(ports) == 0 {
		return true
	}
	for _, pp := range ports {
		want := corev1.ProtocolTCP
		if pp.Protocol != nil {
			want = *pp.Protocol
		}
		if want != proto {
			continue
		}
		switch {
		case pp.Port == nil:
			return true
		case pp.Port.Type == intstr.String:
			if cp, ok := npContainerPorts[pp.Port.StrVal]; ok && cp.port == port && cp.proto == proto {
				return true
			}
		default:
			end := pp.Port.IntVal
			if pp.EndPort != nil {
				end = *pp.EndPort
			}
			if int32(port) >= pp.Port.IntVal && int32(port) <= end {
				return true
			}
		}
	}
	return false
}

// allows says whether the policies let from reach to on port/proto: egress at the source
// allows it and ingress at the destination allows it. A pod not selected by any policy of a
// direction is not isolated in that direction.
func allows(t *testing.T, pols []*networkingv1.NetworkPolicy, from, to *npPod, port int, proto corev1.Protocol) bool {
	return directionAllows(t, pols, from, to, port, proto, false) && directionAllows(t, pols, from, to, port, proto, true)
}

func directionAllows(t *testing.T, pols []*networkingv1.NetworkPolicy, from, to *npPod, port int, proto corev1.Protocol, ingress bool) bool {
	subject, peer := from, to
	if ingress {
		subject, peer = to, from
	}
	isolated := false
	for _, p := range pols {
		in, eg := policyTypes(p)
		if p.Namespace != subject.ns || !selectorMatches(t, &p.Spec.PodSelector, subject.labels) || (ingress && !in) || (!ingress && !eg) {
			continue
		}
		isolated = true
		if ingress {
			for _, r := range p.Spec.Ingress {
				if portMatches(r.Ports, port, proto) && anyPeer(t, p, r.From, peer) {
					return true
				}
			}
		} else {
			for _, r := range p.Spec.Egress {
				if portMatches(r.Ports, port, proto) && anyPeer(t, p, r.To, peer) {
					return true
				}
			}
		}
	}
	return !isolated
}

// anyPeer: an empty list of peers matches everyone.
func anyPeer(t *testing.T, p *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer, other *npPod) bool {
	if len(peers) == 0 {
		return true
	}
	for _, peer := range peers {
		if peerMatches(t, p, peer, other) {
			return true
		}
	}
	return false
}

// The truth table.

// npCell is one probe: from pod index, to column (pod index or svcCol), pod port, protocol.
type npCell struct {
	from, to, port int
	proto          corev1.Protocol
}

// hairpinAllowed: x/a reaching itself through svc-a leaves the pod and crosses the agent, which
// sees a flow from x/a to x/a, and a pod's traffic to itself is always allowed ("a pod cannot
// block access to itself"; policy/doc.go). kube-proxy masquerades hairpin traffic to the node's
// address, which policy allows too, so this is what a cluster shows.
const hairpinAllowed = true

// expected computes the whole table for pols.
func (np *netpolModel) expected(t *testing.T, pols []*networkingv1.NetworkPolicy) map[npCell]bool {
	want := map[npCell]bool{}
	a := np.pod("x/a")
	for i, from := range np.pods {
		for j := 0; j <= svcCol; j++ {
			for _, port := range npPorts {
				for _, proto := range npProtos {
					c := npCell{i, j, port, proto}
					switch {
					case j == i:
						want[c] = true // over the pod's own loopback: the agent never sees it
					case j == svcCol && from == a && hairpinAllowed:
						want[c] = true
					case j == svcCol:
						want[c] = allows(t, pols, from, a, port, proto)
					default:
						want[c] = allows(t, pols, from, np.pods[j], port, proto)
					}
				}
			}
		}
	}
	return want
}

// target is the address a cell probes.
func (np *netpolModel) target(c npCell) string {
	if c.to == svcCol {
		return fmt.Sprintf("%s:%d/%s", np.vip, svcPort(c.port), c.proto)
	}
	return fmt.Sprintf("%s:%d/%s", np.pods[c.to].ip, c.port, c.proto)
}

// observe probes every cell, the nine sources at once, each probing its 40 targets at once. It
// returns which cells answered, and why the others failed.
func (np *netpolModel) observe(t *testing.T) (map[npCell]bool, map[npCell]string) {
	t.Helper()
	np.round++
	// Each round's UDP probes use source ports of their own, so no probe can be taken for a
	// datagram of a flow that an earlier policy allowed (connection tracking keeps UDP flows).
	base := 20000 + (np.round%200)*64
	got, why := map[npCell]bool{}, map[npCell]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(np.pods))
	for i, from := range np.pods {
		wg.Go(func() {
			var cells []npCell
			var targets []string
			for j := 0; j <= svcCol; j++ {
				for _, port := range npPorts {
					for _, proto := range npProtos {
						c := npCell{i, j, port, proto}
						cells = append(cells, c)
						targets = append(targets, np.target(c))
					}
				}
			}
			out, err := np.l.podnet("exec", "-n", from.ns, from.name, "--", "env",
				"PODNET_TEST_PROBE="+strings.Join(targets, ","), "PODNET_TEST_PROBE_PORT="+strconv.Itoa(base), np.self)
			if err != nil {
				errs[i] = fmt.Errorf("prober in %s: %w", from, err)
				return
			}
			res, err := parseProbes(out)
			if err != nil {
				errs[i] = fmt.Errorf("prober in %s: %w\n%s", from, err, out)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for k, c := range cells {
				r, ok := res[targets[k]]
				if !ok {
					errs[i] = fmt.Errorf("prober in %s did not report %s:\n%s", from, targets[k], out)
					return
				}
				got[c], why[c] = r.ok, r.reason
				if want := np.answerer(c); r.ok && r.answer != want {
					errs[i] = fmt.Errorf("%s -> %s was answered by %q, want %q", from, targets[k], r.answer, want)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		if _, lerr := np.l.podnet("lab", "status"); lerr != nil {
			np.broken = true
		}
		t.Fatal(err)
	}
	return got, why
}

// answerer is the pod name that answers a cell's probe.
func (np *netpolModel) answerer(c npCell) string {
	if c.to == svcCol {
		return "a"
	}
	return np.pods[c.to].name
}

// checkTable probes the whole table and compares it with the expected one. A mismatch is probed
// once more (as the upstream tests retry) before it fails; the first one is logged either way.
func (np *netpolModel) checkTable(t *testing.T, pols []*networkingv1.NetworkPolicy) {
	t.Helper()
	want := np.expected(t, pols)
	got, why := np.observe(t)
	if np.mismatches(want, got) > 0 {
		t.Logf("first probe round differs from the expected table; probing again:\n%s", np.render(want, got))
		time.Sleep(time.Second)
		got, why = np.observe(t)
		if n := np.mismatches(want, got); n > 0 {
			t.Errorf("%d of %d probes differ from the expected table (rows from, columns to; \".\" allowed, \"X\" denied; "+
				"a cell marked \"!\" is what was observed where the opposite was expected):\n%s", n, len(want), np.render(want, got))
		}
	}
	// A denied connection is dropped, as with the CNIs users know, so the client times out.
	var refused []string
	for c, reason := range why {
		if c.proto == corev1.ProtocolTCP && !want[c] && !got[c] && !strings.Contains(reason, "timeout") {
			refused = append(refused, fmt.Sprintf("%s -> %s: %s", np.pods[c.from], np.target(c), reason))
		}
	}
	if len(refused) > 0 {
		sort.Strings(refused)
		t.Errorf("%d denied TCP connections failed otherwise than by a timeout (a denied SYN must be dropped):\n%s",
			len(refused), strings.Join(refused, "\n"))
	}
}

func (np *netpolModel) mismatches(want, got map[npCell]bool) int {
	n := 0
	for c, w := range want {
		if got[c] != w {
			n++
		}
	}
	return n
}

// render prints the observed table in the upstream style, one block per port and protocol,
// marking the wrong cells.
func (np *netpolModel) render(want, got map[npCell]bool) string {
	var b strings.Builder
	for _, proto := range npProtos {
		for _, port := range npPorts {
			wrong := 0
			var rows strings.Builder
			fmt.Fprintf(&rows, "%-6s", "")
			for _, p := range np.pods {
				fmt.Fprintf(&rows, "%-6s", p)
			}
			fmt.Fprintf(&rows, "svc-a:%d\n", svcPort(port))
			for i, from := range np.pods {
				fmt.Fprintf(&rows, "%-6s", from)
				for j := 0; j <= svcCol; j++ {
					c := npCell{i, j, port, proto}
					cell := "X"
					if got[c] {
						cell = "."
					}
					if got[c] != want[c] {
						cell += "!"
						wrong++
					}
					fmt.Fprintf(&rows, "%-6s", cell)
				}
				rows.WriteString("\n")
			}
			fmt.Fprintf(&b, "%s/%d: %d wrong\n%s\n", proto, port, wrong, rows.String())
		}
	}
	return b.String()
}

// checkReady: kubelet-style probes come from the node, and policy never stops them (the
// Kubernetes documentation: traffic from a pod's node is always allowed).
func (np *netpolModel) checkReady(t *testing.T) {
	t.Helper()
	var list struct{ Items []*corev1.Pod }
	if err := json.Unmarshal([]byte(np.l.must(t, "get", "pods", "-A", "-o", "json")), &list); err != nil {
		t.Fatalf("decode pods: %v", err)
	}
	for _, p := range list.Items {
		ready := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			t.Errorf("pod %s/%s is not ready: its readiness probe from the node must pass whatever the policies", p.Namespace, p.Name)
		}
	}
}

// getent resolves name in pod (ns/name) with getent hosts, giving up after wait, and returns
// the first address.
func (np *netpolModel) getent(t *testing.T, pod, name string, wait time.Duration) (string, error) {
	t.Helper()
	p := np.pod(pod)
	out, err := np.l.podnet("exec", "-n", p.ns, p.name, "--", "timeout", strconv.Itoa(int(wait.Seconds())), "getent", "hosts", name)
	if err != nil {
		return "", err
	}
	if f := strings.Fields(out); len(f) > 0 {
		return f[0], nil
	}
	return "", fmt.Errorf("getent hosts %s: no answer", name)
}

// The cases.

type netpolCase struct {
	name     string
	policies func(np *netpolModel) string // the manifest; "" for none
	check    func(t *testing.T, np *netpolModel)
}

func static(s string) func(*netpolModel) string { return func(*netpolModel) string { return s } }

func netpolCases() []netpolCase {
	return []netpolCase{
		{name: "allow all (no policy)", policies: static("")},
		// Also the stateful check at the client: pods of x still reach everyone, and the replies
		// come back into x although nothing may enter x.
		{name: "default deny ingress in x", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: "x"}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`)},
		// Also the stateful check at the server: everyone still reaches x, and the replies leave
		// x although nothing may leave it.
		{name: "default deny egress in x", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-egress, namespace: "x"}
spec:
  podSelector: {}
  policyTypes: [Egress]
`), check: func(t *testing.T, np *netpolModel) {
			// The cluster DNS is a destination like any other: without a rule for port 53 the
			// pod cannot resolve names (the classic default-deny-egress surprise).
			if addr, err := np.getent(t, "x/a", "svc-a.x.svc.cluster.local", 2*time.Second); err == nil {
				t.Errorf("with every egress of x denied, x/a still resolved svc-a.x.svc.cluster.local to %s", addr)
			}
		}},
		{name: "default deny all in x", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-all, namespace: "x"}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
`)},
		{name: "allow ingress from the same namespace", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-same-namespace, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {}}]
`)},
		{name: "allow ingress from namespace y (automatic namespace label)", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-y, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}}]
`)},
		{name: "allow ingress from pod b in namespace y (namespaceSelector and podSelector in one peer)", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-y-b, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: "y"}}
      podSelector: {matchLabels: {pod: "b"}}
`)},
		{name: "allow ingress from pods b anywhere or namespace y (two peers)", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-b-or-y, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  ingress:
  - from:
    - namespaceSelector: {}
      podSelector: {matchLabels: {pod: "b"}}
    - namespaceSelector: {matchLabels: {ns: "y"}}
`)},
		{name: "allow ingress to x/a on port 81 only", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-81, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  ingress:
  - ports: [{port: 81}]
`)},
		{name: "named ports", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-named, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - ports:
    - {port: serve-81-tcp}
    - {port: serve-80-udp, protocol: UDP}
    - {port: serve-80-tcp, protocol: UDP}
`)},
		{name: "endPort 80-81", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-80-81, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 80, endPort: 81, protocol: TCP}]
`)},
		{name: "endPort 81-81", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-81-81, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 81, endPort: 81, protocol: TCP}, {port: 81, endPort: 81, protocol: UDP}]
`)},
		{name: "UDP only", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-udp, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - ports: [{protocol: UDP}]
`)},
		{name: "ipBlock: the pod CIDR except y/b", policies: func(np *netpolModel) string {
			return fmt.Sprintf(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-cidr-except, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 10.244.0.0/16, except: [%s/32]}}]
`, np.pod("y/b").ip)
		}},
		{name: "ipBlock: egress to each pod of y by /32", policies: func(np *netpolModel) string {
			var blocks []string
			for _, name := range npPodNames {
				blocks = append(blocks, fmt.Sprintf("{ipBlock: {cidr: %s/32}}", np.pod("y/"+name).ip))
			}
			return fmt.Sprintf(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-to-y-ips, namespace: "x"}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [%s]
`, strings.Join(blocks, ", "))
		}},
		{name: "egress deny with DNS allowed", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-dns-only, namespace: "x"}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
`), check: func(t *testing.T, np *netpolModel) {
			for _, pod := range []string{"x/a", "x/b"} {
				addr, err := np.getent(t, pod, "svc-a.x.svc.cluster.local", 5*time.Second)
				if err != nil || addr != np.vip {
					t.Errorf("with egress to port 53 allowed, getent hosts svc-a.x.svc.cluster.local in %s = %q, %v; want %s", pod, addr, err, np.vip)
				}
			}
		}},
		{name: "egress to namespace y only", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-to-y, namespace: "x"}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}}]
`)},
		{name: "egress on port 80 and named port serve-81-udp", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-ports, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: "b"}}
  policyTypes: [Egress]
  egress:
  - ports: [{port: 80}, {port: serve-81-udp, protocol: UDP}]
`)},
		{name: "egress from x only to z, ingress to z only from x/a", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-to-z, namespace: "x"}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {ns: "z"}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ingress-from-x-a, namespace: "z"}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "x"}}, podSelector: {matchLabels: {pod: "a"}}}]
`)},
		{name: "policies add up: two policies on x/a, one port each", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-80-tcp, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  ingress:
  - ports: [{port: 80, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-81-udp, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  ingress:
  - ports: [{port: 81, protocol: UDP}]
`)},
		// Without policyTypes, a policy with only egress rules isolates ingress as well.
		{name: "egress rules without policyTypes isolate ingress too", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-anywhere, namespace: "x"}
spec:
  podSelector: {}
  egress:
  - to: [{namespaceSelector: {}}]
`)},
		{name: "policyTypes Egress only: no ingress isolation", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-to-z-only, namespace: "x"}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {ns: "z"}}}]
`)},
		{name: "deny all then allow all (union)", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-all, namespace: "x"}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: "x"}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{}]
  egress: [{}]
`)},
		{name: "a policy in y does not affect x", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: y-same-namespace, namespace: "y"}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {}}]
  egress:
  - to: [{podSelector: {}}]
`)},
		{name: "matchExpressions In, NotIn, Exists", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: expressions, namespace: "x"}
spec:
  podSelector:
    matchExpressions: [{key: pod, operator: In, values: ["a", "b"]}]
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions: [{key: ns, operator: NotIn, values: ["z"]}]
      podSelector:
        matchExpressions: [{key: pod, operator: NotIn, values: ["c"]}, {key: pod, operator: Exists}]
`)},
		// Service traffic: the rules see the backend x/a after translation, so svc-a is
		// denied from y and allowed from x (and z); the svc-a column says so for every case.
		{name: "ingress to x/a denied from y, through its Service", policies: static(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-not-from-y, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions: [{key: ns, operator: NotIn, values: ["y"]}]
`)},
	}
}

// The prober: the test binary run inside a pod (see TestMain).

// probeResult is one line of the prober's output.
type probeResult struct {
	ok     bool
	answer string // the answer of a probe that got one
	reason string // why a probe failed
}

func parseProbes(out string) (map[string]probeResult, error) {
	res := map[string]probeResult{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || (f[1] != "ok" && f[1] != "fail") {
			return nil, fmt.Errorf("bad prober line %q", sc.Text())
		}
		r := probeResult{ok: f[1] == "ok"}
		if r.ok && len(f) > 2 {
			r.answer = f[2]
		} else if !r.ok {
			r.reason = strings.Join(f[2:], " ")
		}
		res[f[0]] = r
	}
	return res, nil
}

// Probe timing: a denied flow is dropped, not refused, so a probe fails by timing out.
const (
	probeTCPTimeout = 1500 * time.Millisecond // connect and read the answer
	probeUDPTries   = 3
	probeUDPWait    = 500 * time.Millisecond // per try
)

// netpolProbe probes every target of list ("ip:port/proto,...") at once and prints one line
// per target: "TARGET ok ANSWER" or "TARGET fail REASON". UDP target number i is sent from
// source port $PODNET_TEST_PROBE_PORT + i (when set), so each round of probes makes new flows.
func netpolProbe(list string) int {
	base, _ := strconv.Atoi(os.Getenv("PODNET_TEST_PROBE_PORT"))
	targets := strings.Split(list, ",")
	results := make([]string, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Go(func() {
			port := 0
			if base > 0 {
				port = base + i
			}
			answer, err := probeOne(tg, port)
			if err != nil {
				results[i] = "fail " + strings.ReplaceAll(err.Error(), "\n", " ")
			} else {
				results[i] = "ok " + answer
			}
		})
	}
	wg.Wait()
	for i, tg := range targets {
		fmt.Printf("%s %s\n", tg, results[i])
	}
	return 0
}

// probeOne probes "ip:port/proto" and returns the answer (the server's pod name).
func probeOne(target string, srcPort int) (string, error) {
	addr, proto, ok := strings.Cut(target, "/")
	if !ok {
		return "", fmt.Errorf("bad target %q", target)
	}
	switch proto {
	case "TCP":
		c, err := net.DialTimeout("tcp", addr, probeTCPTimeout)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(probeTCPTimeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("read: %w", err)
		}
		return strings.TrimSpace(line), nil
	case "UDP":
		raddr, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return "", err
		}
		c, err := net.DialUDP("udp", &net.UDPAddr{Port: srcPort}, raddr)
		if err != nil && srcPort != 0 {
			c, err = net.DialUDP("udp", nil, raddr) // the port is taken: any port will do
		}
		if err != nil {
			return "", err
		}
		defer c.Close()
		buf := make([]byte, 1500)
		var lastErr error
		for range probeUDPTries {
			until := time.Now().Add(probeUDPWait)
			c.Write([]byte("probe\n"))
			c.SetReadDeadline(until)
			n, err := c.Read(buf)
			if err == nil && n > 0 {
				return strings.TrimSpace(string(buf[:n])), nil
			}
			lastErr = err
			time.Sleep(time.Until(until)) // an ICMP error ends Read early: keep to the pace
		}
		return "", fmt.Errorf("no answer in %d tries: %v", probeUDPTries, lastErr)
	}
	return "", fmt.Errorf("bad protocol in %q", target)
}
