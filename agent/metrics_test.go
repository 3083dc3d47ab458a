package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/agent/agenttest"
	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/internal/leakcheck"
	"github.com/podnet/podnet/stack/stacktest"
)

// wantFamilies is every metric family an agent exports, with its type and its exact label names:
// renaming a metric or a label fails TestMetrics until this table, agent.MetricFamilies (which the
// Grafana dashboard and the README are checked against) and the README change with it.
var wantFamilies = map[string]struct {
	typ    string
	labels []string
}{
	"podnet_stack_frames_total":                 {"counter", []string{"node", "path"}},
	"podnet_stack_fast_path_bytes_total":        {"counter", []string{"node"}},
	"podnet_stack_overlay_packets_total":        {"counter", []string{"direction", "node"}},
	"podnet_stack_overlay_bytes_total":          {"counter", []string{"direction", "node"}},
	"podnet_stack_dropped_frames_total":         {"counter", []string{"node", "reason"}},
	"podnet_stack_refused_total":                {"counter", []string{"node"}},
	"podnet_stack_limit_drops_total":            {"counter", []string{"node"}},
	"podnet_egress_flows_total":                 {"counter", []string{"node", "protocol"}},
	"podnet_egress_flows":                       {"gauge", []string{"node", "protocol"}},
	"podnet_egress_dial_errors_total":           {"counter", []string{"node"}},
	"podnet_overlay_packets_total":              {"counter", []string{"direction", "node"}},
	"podnet_overlay_bytes_total":                {"counter", []string{"direction", "node"}},
	"podnet_overlay_dropped_packets_total":      {"counter", []string{"node", "reason"}},
	"podnet_overlay_window_waits_total":         {"counter", []string{"direction", "node"}},
	"podnet_overlay_datagrams_total":            {"counter", []string{"direction", "node"}},
	"podnet_overlay_datagram_bytes_total":       {"counter", []string{"direction", "node"}},
	"podnet_overlay_send_errors_total":          {"counter", []string{"node"}},
	"podnet_overlay_rejected_handshakes_total":  {"counter", []string{"node"}},
	"podnet_overlay_handshakes_total":           {"counter", []string{"node", "role"}},
	"podnet_overlay_peers":                      {"gauge", []string{"node"}},
	"podnet_overlay_peer_handshake_age_seconds": {"gauge", []string{"node", "peer"}},
	"podnet_services":                           {"gauge", []string{"node"}},
	"podnet_service_flows_total":                {"counter", []string{"node", "result"}},
	"podnet_service_flows_remapped_total":       {"counter", []string{"node"}},
	"podnet_service_packets_total":              {"counter", []string{"node"}},
	"podnet_service_conntrack_entries":          {"gauge", []string{"node"}},
	"podnet_service_conntrack_removed_total":    {"counter", []string{"node", "reason"}},
	"podnet_service_sync_seconds":               {"histogram", []string{"node"}},
	"podnet_policy_denied_total":                {"counter", []string{"node", "policy"}},
	"podnet_policy_verdicts_total":              {"counter", []string{"node", "policy", "verdict"}},
	"podnet_flows_total":                        {"counter", []string{"node", "verdict"}},
	"podnet_policy_compile_seconds":             {"histogram", []string{"node"}},
	"podnet_dns_queries_total":                  {"counter", []string{"kind", "node"}},
	"podnet_dns_responses_total":                {"counter", []string{"node", "rcode"}},
	"podnet_dns_upstream_errors_total":          {"counter", []string{"node"}},
	"podnet_ingress_requests_total":             {"counter", []string{"backend", "node", "status"}},
	"podnet_ingress_errors_total":               {"counter", []string{"node", "reason"}},
	"podnet_ingress_retries_total":              {"counter", []string{"node"}},
	"podnet_ingress_connections":                {"gauge", []string{"node"}},
	"podnet_ingress_connections_total":          {"counter", []string{"node", "result"}},
	"podnet_pods":                               {"gauge", []string{"node"}},
	"podnet_pod_network_setup_seconds":          {"summary", []string{"node"}},
	"podnet_pod_network_teardown_seconds":       {"summary", []string{"node"}},
}

// TestMetricFamiliesList keeps agent.MetricFamilies equal to wantFamilies.
func TestMetricFamiliesList(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range agent.MetricFamilies() {
		if seen[f.Name] {
			t.Errorf("MetricFamilies lists %s twice", f.Name)
		}
		seen[f.Name] = true
		want, ok := wantFamilies[f.Name]
		if !ok {
			t.Errorf("MetricFamilies lists %s, which the agent does not export", f.Name)
			continue
		}
		labels := slices.Sorted(slices.Values(f.Labels))
		if f.Type != want.typ || !slices.Equal(labels, want.labels) || f.Labels[0] != "node" {
			t.Errorf("MetricFamilies: %s is a %s with labels %v, want a %s with %v, node first", f.Name, f.Type, f.Labels, want.typ, want.labels)
		}
	}
	for name := range wantFamilies {
		if !seen[name] {
			t.Errorf("MetricFamilies does not list %s", name)
		}
	}
}

// TestMetrics runs two agents on one registry (as the lab does) with an in-process pod on each,
// and makes each kind of traffic that a family waits for: a connection across the overlay (a
// WireGuard handshake), a DNS query, an Ingress request that no rule matches and a connection that
// NetworkPolicy denies. Then every family the registry holds must be in wantFamilies with exactly
// its labels and type, every one of wantFamilies must be there, and both nodes must have their
// own samples. No privileges needed.
func TestMetrics(t *testing.T) {
	leakcheck.AtCleanup(t, leakcheck.Options{Match: []string{"podnet/podnet/agent.", "podnet/podnet/stack.", "podnet/podnet/overlay.", "podnet/podnet/clusterdns.", "podnet/podnet/ingress."}})
	reg := prometheus.NewRegistry()
	src := &agenttest.Source{}
	newNode := func(name, addr, cidr string, ingressPort uint16) *agent.Agent {
		t.Helper()
		opts := agenttest.Options(src, addr, t.TempDir())
		opts.NodeName, opts.PodCIDR, opts.Registerer = name, netip.MustParsePrefix(cidr), reg
		opts.IngressHTTPPort = ingressPort
		a, err := agent.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		a.Start()
		return a
	}
	ingressPort := freePort(t, "127.77.1.1")
	a := newNode("node-a", "127.77.1.1", "10.244.0.0/24", ingressPort)
	b := newNode("node-b", "127.77.1.2", "10.244.1.0/24", 0)

	clientIP, serverIP := netip.MustParseAddr("10.244.0.10"), netip.MustParseAddr("10.244.1.10")
	client, server := podOn(t, a, clientIP), podOn(t, b, serverIP)
	node := func(name, cidr string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: src.Annotations(name)}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
	}
	pod := func(name, nodeName string, ip netip.Addr) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{NodeName: nodeName},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}}},
		}
	}
	state := agenttest.State{
		Nodes:      []*corev1.Node{node("node-a", "10.244.0.0/24"), node("node-b", "10.244.1.0/24")},
		Namespaces: []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "default", Labels: map[string]string{"kubernetes.io/metadata.name": "default"}}}},
		Pods:       []*corev1.Pod{pod("client", "node-a", clientIP), pod("server", "node-b", serverIP)},
	}
	src.Set(state)

	// Across the overlay: node-a and node-b shake hands.
	ln, err := server.Greet(80, []byte("hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	waitUntil(t, "a connection from node-a's pod to node-b's", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := client.DialTCP(ctx, netip.AddrPortFrom(serverIP, 80))
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		return err == nil && string(got) == "hello\n"
	})

	// A DNS query for a name the cluster does not have.
	if rcode := queryDNS(t, client, "nothing.default.svc.cluster.local."); rcode != dns.RcodeNameError {
		t.Errorf("DNS answer %s, want NXDOMAIN", dns.RcodeToString[rcode])
	}

	// An Ingress request that no rule matches.
	res, err := http.Get(fmt.Sprintf("http://127.77.1.1:%d/", ingressPort))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("Ingress answered %s, want 404", res.Status)
	}

	// A connection that node-b's policy denies.
	state.NetworkPolicies = []*networkingv1.NetworkPolicy{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "deny-server"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}}
	src.Set(state)
	waitUntil(t, "node-b to deny the connection", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if c, err := client.DialTCP(ctx, netip.AddrPortFrom(serverIP, 80)); err == nil {
			c.Close()
			return false
		}
		return hasSample(t, reg, "podnet_policy_denied_total", "node-b")
	})
	waitUntil(t, "both nodes to report their handshake", func() bool {
		return hasSample(t, reg, "podnet_overlay_peer_handshake_age_seconds", "node-a") &&
			hasSample(t, reg, "podnet_overlay_peer_handshake_age_seconds", "node-b")
	})

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		name := mf.GetName()
		got[name] = true
		want, ok := wantFamilies[name]
		if !ok {
			t.Errorf("the agent exports %s, which wantFamilies lacks", name)
			continue
		}
		if typ := strings.ToLower(mf.GetType().String()); typ != want.typ {
			t.Errorf("%s is a %s, want a %s", name, typ, want.typ)
		}
		nodes := map[string]bool{}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName())
				if lp.GetName() == "node" {
					nodes[lp.GetValue()] = true
				}
			}
			slices.Sort(labels)
			if !slices.Equal(labels, want.labels) {
				t.Errorf("%s has a sample with labels %v, want %v", name, labels, want.labels)
			}
		}
		// Traffic made these on one node only.
		switch name {
		case "podnet_policy_denied_total", "podnet_policy_verdicts_total", "podnet_dns_responses_total", "podnet_ingress_requests_total",
			"podnet_ingress_errors_total", "podnet_ingress_retries_total", "podnet_ingress_connections", "podnet_ingress_connections_total":
			continue
		}
		if !nodes["node-a"] || !nodes["node-b"] {
			t.Errorf("%s: samples of nodes %v, want node-a and node-b", name, nodes)
		}
	}
	for name := range wantFamilies {
		if !got[name] {
			t.Errorf("the agents export no %s", name)
		}
	}

	// A few values that say the samples are the right ones.
	for _, tc := range []struct {
		family string
		labels map[string]string
		check  func(float64) bool
		want   string
	}{
		{"podnet_overlay_peers", map[string]string{"node": "node-a"}, func(v float64) bool { return v == 1 }, "1"},
		{"podnet_overlay_peer_handshake_age_seconds", map[string]string{"node": "node-a", "peer": "node-b"}, func(v float64) bool { return v >= 0 && v < 60 }, "under a minute"},
		{"podnet_overlay_peer_handshake_age_seconds", map[string]string{"node": "node-b", "peer": "node-a"}, func(v float64) bool { return v >= 0 && v < 60 }, "under a minute"},
		{"podnet_overlay_handshakes_total", map[string]string{"node": "node-a", "role": "initiator"}, func(v float64) bool { return v >= 1 }, "at least 1"},
		{"podnet_overlay_handshakes_total", map[string]string{"node": "node-b", "role": "responder"}, func(v float64) bool { return v >= 1 }, "at least 1"},
		{"podnet_stack_overlay_packets_total", map[string]string{"node": "node-a", "direction": "tx"}, func(v float64) bool { return v > 0 }, "more than 0"},
		{"podnet_dns_responses_total", map[string]string{"node": "node-a", "rcode": "NXDOMAIN"}, func(v float64) bool { return v == 1 }, "1"},
		{"podnet_ingress_requests_total", map[string]string{"node": "node-a", "backend": "none", "status": "4xx"}, func(v float64) bool { return v == 1 }, "1"},
		{"podnet_policy_denied_total", map[string]string{"node": "node-b", "policy": "default/deny-server"}, func(v float64) bool { return v >= 1 }, "at least 1"},
		{"podnet_policy_verdicts_total", map[string]string{"node": "node-b", "policy": "default/deny-server", "verdict": "denied"}, func(v float64) bool { return v >= 1 }, "at least 1"},
		{"podnet_flows_total", map[string]string{"node": "node-a", "verdict": "forwarded"}, func(v float64) bool { return v >= 1 }, "at least 1"},
		{"podnet_flows_total", map[string]string{"node": "node-b", "verdict": "denied"}, func(v float64) bool { return v >= 1 }, "at least 1"},
		{"podnet_pods", map[string]string{"node": "node-a"}, func(v float64) bool { return v == 0 }, "0 (the test's pods were not attached with Attach)"},
	} {
		v, ok := sampleValue(mfs, tc.family, tc.labels)
		if !ok {
			t.Errorf("no %s%v", tc.family, tc.labels)
		} else if !tc.check(v) {
			t.Errorf("%s%v = %v, want %s", tc.family, tc.labels, v, tc.want)
		}
	}
}

// freePort returns a TCP port free on addr just now.
func freePort(t *testing.T, addr string) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// podOn attaches an in-process pod with address ip to a's data path, as a pod's TAP would be.
func podOn(t *testing.T, a *agent.Agent, ip netip.Addr) *stacktest.Pod {
	t.Helper()
	p, err := stacktest.NewPod(stacktest.PodOptions{IP: ip, Gateway: a.Gateway(), MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Stack().AttachPod(ip, p.Port()); err != nil {
		p.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Stack().DetachPod(ip)
		p.Close()
	})
	return p
}

// queryDNS asks the cluster DNS (10.96.0.10) for name's A record from p, and returns the RCODE.
func queryDNS(t *testing.T, p *stacktest.Pod, name string) int {
	t.Helper()
	c, err := p.DialUDP(netip.MustParseAddrPort("10.96.0.10:53"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := new(dns.Msg).SetQuestion(name, dns.TypeA)
	msg, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for range 5 {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var r dns.Msg
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		return r.Rcode
	}
	t.Fatalf("no DNS answer for %s", name)
	return 0
}

// hasSample reports whether reg holds a sample of family for node.
func hasSample(t *testing.T, reg *prometheus.Registry, family, node string) bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	_, ok := sampleValue(mfs, family, map[string]string{"node": node})
	return ok
}

// sampleValue returns the value of the first counter or gauge sample of family whose labels
// include labels.
func sampleValue(mfs []*dto.MetricFamily, family string, labels map[string]string) (float64, bool) {
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue samples
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestPodMetrics: Attach and Detach are timed (podnet_pod_network_setup_seconds and
// podnet_pod_network_teardown_seconds) and podnet_pods follows them.
func TestPodMetrics(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: making a network namespace needs root here (the end-to-end suite attaches pods rootless)")
	}
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		t.Skipf("skipped: a pod interface needs /dev/net/tun: %v", err)
	} else {
		f.Close()
	}
	reg := prometheus.NewRegistry()
	opts := agenttest.Options(&agenttest.Source{}, "127.77.1.5", t.TempDir())
	opts.Registerer = reg
	a, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	a.Start()
	ctx := context.Background()
	count := func(family string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == family {
				m := mf.GetMetric()[0]
				if s := m.GetSummary(); s != nil {
					return float64(s.GetSampleCount())
				}
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s", family)
		return 0
	}
	if _, err := a.Attach(ctx, attach.Request{ID: "pod-1", Namespace: "default", Name: "pod-1", NetNS: newSandbox(t).Path()}); err != nil {
		t.Fatal(err)
	}
	if setups, teardowns, pods := count("podnet_pod_network_setup_seconds"), count("podnet_pod_network_teardown_seconds"), count("podnet_pods"); setups != 1 || teardowns != 0 || pods != 1 {
		t.Errorf("after Attach: %v setups, %v teardowns, %v pods; want 1, 0, 1", setups, teardowns, pods)
	}
	if err := a.Detach(ctx, "pod-1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Detach(ctx, "pod-1"); err != nil { // nothing to detach: not timed
		t.Fatal(err)
	}
	if setups, teardowns, pods := count("podnet_pod_network_setup_seconds"), count("podnet_pod_network_teardown_seconds"), count("podnet_pods"); setups != 1 || teardowns != 1 || pods != 0 {
		t.Errorf("after Detach: %v setups, %v teardowns, %v pods; want 1, 1, 0", setups, teardowns, pods)
	}
}
