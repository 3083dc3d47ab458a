package agent

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/podnet/podnet/stack"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func flowTestObjects() ([]*corev1.Pod, []*corev1.Service, *policyFilter) {
	pod := func(ns, name, ip string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Status:     corev1.PodStatus{PodIP: ip, Phase: corev1.PodRunning},
		}
	}
	pods := []*corev1.Pod{
		pod("default", "client", "10.244.0.2", map[string]string{"app": "client"}),
		pod("shop", "web", "10.244.1.2", map[string]string{"app": "web"}),
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "done"}, Status: corev1.PodStatus{PodIP: "10.244.0.9", Phase: corev1.PodSucceeded}},
	}
	svcs := []*corev1.Service{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.96.0.5"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80}, {Port: 8443},
		}},
	}}
	nss := []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "default", Labels: map[string]string{"kubernetes.io/metadata.name": "default"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop"}}},
	}
	// web admits only pods labelled role=friend: the client is not one.
	pol := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "friends-only"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "friend"}},
			}}}},
		},
	}
	t, _ := CompilePolicy([]*networkingv1.NetworkPolicy{pol}, nss, pods)
	return pods, svcs, &policyFilter{t: t, a: &Agent{}}
}

// TestFlowLogNames: the flow log names pods and Services, gives the policies that decided, keeps
// the latest FlowLogSize flows, hands new ones to followers and counts verdicts per policy.
func TestFlowLogNames(t *testing.T) {
	pods, svcs, pf := flowTestObjects()
	l := &flowLog{node: "node-a"}
	l.setNames(pods, svcs, netip.Addr{})
	client := netip.MustParseAddrPort("10.244.0.2:40000")
	web := netip.MustParseAddrPort("10.244.1.2:8080")
	f := l.follow(4)
	defer f.Stop()

	// A Service flow, judged at the backend's node and denied by its policy.
	allowed, decider := pf.Allow(6, client, web, false)
	if allowed {
		t.Fatal("the test's policy allowed the client")
	}
	ev := &stack.FlowEvent{Time: time.Now(), Point: stack.FlowFromPod, Proto: 6, Src: client, Dst: web,
		Service: netip.MustParseAddrPort("10.96.0.5:80"), Verdict: stack.FlowDenied, Filter: pf,
		IngressJudged: true, IngressDecider: decider}
	l.observe(ev)
	// A flow to an outside address from a pod the log does not know, and one to an unnamed
	// Service port.
	l.observe(&stack.FlowEvent{Time: time.Now(), Point: stack.FlowFromOverlay, Proto: 17,
		Src: netip.MustParseAddrPort("10.244.0.9:5353"), Dst: netip.MustParseAddrPort("192.0.2.1:53")})
	l.observe(&stack.FlowEvent{Time: time.Now(), Point: stack.FlowFromNode, Proto: 6, Src: client, Dst: web,
		Service: netip.MustParseAddrPort("10.96.0.5:8443"), Verdict: stack.FlowNoEndpoint})

	recs := l.records()
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	want := []FlowRecord{{
		Node: "node-a", Direction: FlowEgress, Protocol: "TCP", Source: "default/client", SourceIP: "10.244.0.2", SourcePort: 40000,
		Dest: "shop/web", DestIP: "10.244.1.2", Port: 8080, Service: "shop/web:http", ServiceIP: "10.96.0.5:80",
		Verdict: "denied", Allowed: false, Policies: []string{"shop/friends-only"}, DeniedBy: "Ingress",
	}, {
		Node: "node-a", Direction: FlowIngress, Protocol: "UDP", Source: "10.244.0.9", SourceIP: "10.244.0.9", SourcePort: 5353,
		Dest: "192.0.2.1", DestIP: "192.0.2.1", Port: 53, Verdict: "forwarded", Allowed: true,
	}, {
		Node: "node-a", Direction: FlowFromNode, Protocol: "TCP", Source: "default/client", SourceIP: "10.244.0.2", SourcePort: 40000,
		Dest: "shop/web", DestIP: "10.244.1.2", Port: 8080, Service: "shop/web:8443", ServiceIP: "10.96.0.5:8443",
		Verdict: "no-endpoint", Allowed: true,
	}}
	for i := range want {
		got := recs[i]
		got.Time = time.Time{}
		if !flowRecordsEqual(got, want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
	for i := range 3 {
		select {
		case r := <-f.C():
			if r.Verdict != recs[i].Verdict {
				t.Errorf("follower's flow %d: %s, want %s", i, r.Verdict, recs[i].Verdict)
			}
		default:
			t.Fatalf("the follower got %d flows, want 3", i)
		}
	}
	if got := l.verdictsByPolicy(); len(got) != 1 || got[[2]string{"shop/friends-only", "denied"}] != 1 {
		t.Errorf("verdicts by policy %v", got)
	}
	if got := l.flowsByVerdict(); got["denied"] != 1 || got["forwarded"] != 1 || got["no-endpoint"] != 1 || got["dropped"] != 0 {
		t.Errorf("flows by verdict %v", got)
	}

	// A follower that does not read loses flows, counted; the ring keeps the latest.
	for range FlowLogSize + 10 {
		l.observe(&stack.FlowEvent{Time: time.Now(), Proto: 6, Src: client, Dst: web})
	}
	if f.Lost() == 0 {
		t.Error("a follower that did not read lost nothing")
	}
	if n := len(l.records()); n != FlowLogSize {
		t.Errorf("%d records kept, want %d", n, FlowLogSize)
	}
	f.Stop()
	l.observe(&stack.FlowEvent{Time: time.Now(), Proto: 6, Src: client, Dst: web}) // no follower: nothing blocks
}

func flowRecordsEqual(a, b FlowRecord) bool {
	return slices.Equal(a.Policies, b.Policies) && fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}

// TestFlowLogNamesFollowChanges: a new pod or Service is named once the log is told.
func TestFlowLogNamesFollowChanges(t *testing.T) {
	pods, svcs, _ := flowTestObjects()
	l := &flowLog{node: "n"}
	l.setNames(pods[:1], nil, netip.MustParseAddr("10.244.0.254"))
	ev := &stack.FlowEvent{Proto: 6, Src: netip.MustParseAddrPort("10.244.0.2:1"), Dst: netip.MustParseAddrPort("10.244.1.2:80")}
	if r := l.record(ev); r.Dest != "10.244.1.2" {
		t.Errorf("unknown pod named %q", r.Dest)
	}
	probe := &stack.FlowEvent{Proto: 6, Src: netip.MustParseAddrPort("10.244.0.254:1"), Dst: netip.MustParseAddrPort("10.244.0.2:80")}
	if r := l.record(probe); r.Source != "host:n" {
		t.Errorf("the node's own interface named %q, want host:n", r.Source)
	}
	l.setNames(pods, svcs, netip.Addr{})
	if r := l.record(ev); r.Dest != "shop/web" || r.Source != "default/client" {
		t.Errorf("after the change: %s → %s", r.Source, r.Dest)
	}
}

// BenchmarkFlowLogObserve is the agent's cost of one new flow: naming it, keeping it in the ring
// and counting it (no follower).
func BenchmarkFlowLogObserve(b *testing.B) {
	pods, svcs, pf := flowTestObjects()
	l := &flowLog{node: "node-a"}
	l.setNames(pods, svcs, netip.Addr{})
	client := netip.MustParseAddrPort("10.244.0.2:40000")
	web := netip.MustParseAddrPort("10.244.1.2:8080")
	_, decider := pf.Allow(6, client, web, false)
	ev := &stack.FlowEvent{Time: time.Now(), Point: stack.FlowFromPod, Proto: 6, Src: client, Dst: web,
		Service: netip.MustParseAddrPort("10.96.0.5:80"), Verdict: stack.FlowDenied, Filter: pf,
		IngressJudged: true, IngressDecider: decider}
	b.ReportAllocs()
	for b.Loop() {
		l.observe(ev)
	}
}
