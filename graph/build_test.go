package graph

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// edgeKey is an edge as the tests compare it: "from -> to".
func edgeKeys(g *Graph, k EdgeKind) []string {
	var out []string
	for _, e := range g.EdgesOf(k) {
		out = append(out, e.From+" -> "+e.To)
	}
	return out
}

func findEdge(t *testing.T, g *Graph, k EdgeKind, from, to string) Edge {
	t.Helper()
	for _, e := range g.EdgesOf(k) {
		if e.From == from && e.To == to {
			return e
		}
	}
	t.Fatalf("no %s edge %s -> %s; have %q", k, from, to, edgeKeys(g, k))
	return Edge{}
}

func findAddress(g *Graph, id string) *Address {
	for i := range g.Addresses {
		if g.Addresses[i].ID == id {
			return &g.Addresses[i]
		}
	}
	return nil
}

func TestBuildNodesAndPods(t *testing.T) {
	l := newLab()
	l.pods = append(l.pods, pod("default", "stray", "node-x", "10.244.9.3", "app", "stray"))
	g := l.build()

	var got []string
	for _, n := range g.Nodes {
		var pods []string
		for _, p := range n.Pods {
			pods = append(pods, p.Namespace+"/"+p.Name+"@"+p.IP)
			if p.Node != n.Name {
				t.Errorf("pod %s in box of %s says node %s", p.ID, n.Name, p.Node)
			}
		}
		got = append(got, fmt.Sprintf("%s cidr=%q unlisted=%v pods=%v", n.Name, n.PodCIDR, n.Unlisted, pods))
	}
	want := []string{
		`node-a cidr="10.244.0.0/24" unlisted=false pods=[default/client@10.244.0.6 default/web-1@10.244.0.5 kube-system/coredns-1@10.244.0.2]`,
		`node-b cidr="10.244.1.0/24" unlisted=false pods=[default/web-2@10.244.1.5 prod/db@10.244.1.9]`,
		`node-x cidr="" unlisted=true pods=[default/stray@10.244.9.3]`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("nodes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, gone := range []string{"default/job-done", "default/job-failed", "default/pending"} {
		ns, name, _ := strings.Cut(gone, "/")
		if g.Pod(PodID(ns, name)) != nil {
			t.Errorf("pod %s is drawn; terminal and unscheduled pods must be left out", gone)
		}
	}
}

func TestBuildServices(t *testing.T) {
	g := newLab().build()
	var got []string
	for _, s := range g.Services {
		got = append(got, fmt.Sprintf("%s %s %s %v selector=%v", s.ID, s.Type, s.ClusterIP, s.Ports, s.HasSelector))
	}
	want := []string{
		"svc:default/docs ExternalName docs.example.com [] selector=false",
		"svc:default/manual ClusterIP 10.96.0.99 [9000/TCP] selector=false",
		"svc:default/web NodePort 10.96.0.80 [80:30080/TCP] selector=true",
		"svc:kube-system/kube-dns ClusterIP 10.96.0.10 [53/UDP 53/TCP] selector=true",
	}
	if !slices.Equal(got, want) {
		t.Errorf("services:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBuildSelectsEdges(t *testing.T) {
	tests := []struct {
		name     string
		services []*corev1.Service
		want     []string
	}{{
		name:     "selector matches pods of its namespace only",
		services: []*corev1.Service{service("default", "web", "10.96.0.80", map[string]string{"app": "web"}, tcp(80))},
		want:     []string{"svc:default/web -> pod:default/web-1", "svc:default/web -> pod:default/web-2"},
	}, {
		name:     "selector with two labels",
		services: []*corev1.Service{service("default", "web1", "10.96.0.81", map[string]string{"app": "web", "zone": "a"}, tcp(80))},
		want:     []string{"svc:default/web1 -> pod:default/web-1"},
	}, {
		name:     "no selector: manual endpoints",
		services: []*corev1.Service{service("default", "manual", "10.96.0.99", nil, tcp(80))},
	}, {
		name: "ExternalName ignores a selector",
		services: []*corev1.Service{func() *corev1.Service {
			s := service("default", "ext", "", map[string]string{"app": "web"})
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "example.com"
			return s
		}()},
	}, {
		name:     "kube-system is not special",
		services: []*corev1.Service{service("kube-system", "kube-dns", "10.96.0.10", map[string]string{"k8s-app": "kube-dns"})},
		want:     []string{"svc:kube-system/kube-dns -> pod:kube-system/coredns-1"},
	}}
	pods := []*corev1.Pod{
		pod("default", "web-1", "node-a", "10.244.0.5", "app", "web", "zone", "a"),
		pod("default", "web-2", "node-b", "10.244.1.5", "app", "web", "zone", "b"),
		pod("other", "web-3", "node-b", "10.244.1.6", "app", "web"),
		pod("kube-system", "coredns-1", "node-a", "10.244.0.2", "k8s-app", "kube-dns"),
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := Build(nil, pods, tt.services, nil, nil)
			if got := edgeKeys(g, EdgeSelects); !slices.Equal(got, tt.want) {
				t.Errorf("selects edges = %q, want %q", got, tt.want)
			}
			for _, e := range g.EdgesOf(EdgeSelects) {
				if e.Color != ColorSelects || e.Label != "selects" || e.Dashed {
					t.Errorf("selects edge %s -> %s: color %s label %q dashed %v", e.From, e.To, e.Color, e.Label, e.Dashed)
				}
			}
		})
	}
}

func TestBuildPolicyEdges(t *testing.T) {
	pods := []*corev1.Pod{
		pod("default", "web-1", "node-a", "10.244.0.5", "app", "web"),
		pod("default", "web-2", "node-b", "10.244.1.5", "app", "web"),
		pod("default", "client", "node-a", "10.244.0.6", "app", "client"),
		pod("prod", "db", "node-b", "10.244.1.9", "app", "db"),
		pod("prod", "client", "node-b", "10.244.1.7", "app", "client"),
		pod("monitoring", "prom", "node-a", "10.244.0.8", "app", "prom"),
	}
	from := func(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyIngressRule {
		return networkingv1.NetworkPolicyIngressRule{From: peers}
	}
	type want struct {
		edge     string // "from -> to"
		label    string
		policies []string
	}
	tests := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		want     []want
		marked   map[string][]string // pod ID → its policies
		address  map[string]string   // address ID → label
		notes    int
	}{{
		name: "podSelector peer in the policy's namespace",
		policies: []*networkingv1.NetworkPolicy{ingressPolicy("default", "web", matchLabels("app", "web"),
			networkingv1.NetworkPolicyIngressRule{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: matchLabels("app", "client")}},
				Ports: []networkingv1.NetworkPolicyPort{tcpPort(80), tcpPort(443)},
			})},
		want: []want{
			{"pod:default/client -> pod:default/web-1", "allowed by web (443/TCP, 80/TCP)", []string{"default/web"}},
			{"pod:default/client -> pod:default/web-2", "allowed by web (443/TCP, 80/TCP)", []string{"default/web"}},
		},
		marked: map[string][]string{"pod:default/web-1": {"default/web"}, "pod:default/web-2": {"default/web"}, "pod:default/client": nil},
	}, {
		name: "namespaceSelector by kubernetes.io/metadata.name",
		policies: []*networkingv1.NetworkPolicy{ingressPolicy("prod", "db", matchLabels("app", "db"),
			from(networkingv1.NetworkPolicyPeer{NamespaceSelector: matchLabels("kubernetes.io/metadata.name", "default")}))},
		want: []want{
			{"pod:default/client -> pod:prod/db", "allowed by db", []string{"prod/db"}},
			{"pod:default/web-1 -> pod:prod/db", "allowed by db", []string{"prod/db"}},
			{"pod:default/web-2 -> pod:prod/db", "allowed by db", []string{"prod/db"}},
		},
	}, {
		name: "namespaceSelector and podSelector together",
		policies: []*networkingv1.NetworkPolicy{ingressPolicy("prod", "db", matchLabels("app", "db"),
			from(networkingv1.NetworkPolicyPeer{
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{"default", "prod"},
				}}},
				PodSelector: matchLabels("app", "client"),
			}))},
		want: []want{
			{"pod:default/client -> pod:prod/db", "allowed by db", []string{"prod/db"}},
			{"pod:prod/client -> pod:prod/db", "allowed by db", []string{"prod/db"}},
		},
	}, {
		name: "namespaceSelector on another label matches nothing without Namespace objects",
		policies: []*networkingv1.NetworkPolicy{ingressPolicy("prod", "db", matchLabels("app", "db"),
			from(networkingv1.NetworkPolicyPeer{NamespaceSelector: matchLabels("team", "web")}))},
		marked: map[string][]string{"pod:prod/db": {"prod/db"}},
	}, {
		name: "ipBlock peer becomes an address with its CIDR",
		policies: []*networkingv1.NetworkPolicy{ingressPolicy("prod", "db", matchLabels("app", "db"),
			from(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}))},
		want: []want{
			{"cidr:10.0.0.0/8 except 10.1.0.0/16 -> pod:prod/db", "allowed by db", []string{"prod/db"}},
		},
		address: map[string]string{"cidr:10.0.0.0/8 except 10.1.0.0/16": "ipBlock 10.0.0.0/8\nexcept 10.1.0.0/16"},
	}, {
		name: "rule without peers allows any address",
		policies: []*networkingv1.NetworkPolicy{ingressPolicy("monitoring", "open", matchLabels("app", "prom"),
			networkingv1.NetworkPolicyIngressRule{})},
		want:    []want{{"any:any -> pod:monitoring/prom", "allowed by open", []string{"monitoring/open"}}},
		address: map[string]string{"any:any": "any address"},
	}, {
		name: "duplicate edges of two policies collapse into one",
		policies: []*networkingv1.NetworkPolicy{
			ingressPolicy("prod", "b", matchLabels("app", "db"), from(networkingv1.NetworkPolicyPeer{PodSelector: matchLabels("app", "client")})),
			ingressPolicy("prod", "a", matchLabels("app", "db"),
				networkingv1.NetworkPolicyIngressRule{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: matchLabels("app", "client")}},
					Ports: []networkingv1.NetworkPolicyPort{tcpPort(5432)},
				},
				from(networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: "app", Operator: metav1.LabelSelectorOpExists,
				}}}})),
		},
		want: []want{
			// A rule of b allows every port, so the edge names none.
			{"pod:prod/client -> pod:prod/db", "allowed by a, b", []string{"prod/a", "prod/b"}},
		},
		marked: map[string][]string{"pod:prod/db": {"prod/a", "prod/b"}},
	}, {
		name: "egress-only policy marks pods but draws no edges",
		policies: []*networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "egress"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: *matchLabels("app", "web"),
				Ingress:     []networkingv1.NetworkPolicyIngressRule{from(networkingv1.NetworkPolicyPeer{PodSelector: matchLabels("app", "client")})},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			},
		}},
		marked: map[string][]string{"pod:default/web-1": {"default/egress"}},
	}, {
		name: "default deny marks every pod of its namespace",
		policies: []*networkingv1.NetworkPolicy{
			ingressPolicy("default", "deny-all", &metav1.LabelSelector{}),
		},
		marked: map[string][]string{"pod:default/web-1": {"default/deny-all"}, "pod:default/client": {"default/deny-all"}, "pod:prod/db": nil},
	}, {
		name: "many peers become one group",
		policies: []*networkingv1.NetworkPolicy{ingressPolicy("prod", "db", matchLabels("app", "db"),
			from(networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}}))},
		want:    []want{{"group:all pods in all namespaces -> pod:prod/db", "allowed by db", []string{"prod/db"}}},
		address: map[string]string{"group:all pods in all namespaces": "all pods in all namespaces\n(6 pods)"},
	}, {
		name: "malformed selector is a note",
		policies: []*networkingv1.NetworkPolicy{ingressPolicy("prod", "db", matchLabels("app", "db"),
			from(networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "app", Operator: "Sometimes",
			}}}}))},
		notes: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := Build(nil, pods, nil, tt.policies, nil)
			var got []string
			for _, e := range g.EdgesOf(EdgePolicy) {
				got = append(got, e.From+" -> "+e.To)
			}
			var wantKeys []string
			for _, w := range tt.want {
				wantKeys = append(wantKeys, w.edge)
			}
			if !slices.Equal(got, wantKeys) {
				t.Fatalf("policy edges = %q, want %q", got, wantKeys)
			}
			for i, e := range g.EdgesOf(EdgePolicy) {
				w := tt.want[i]
				if e.Label != w.label || !slices.Equal(e.Policies, w.policies) {
					t.Errorf("edge %s: label %q policies %q, want %q %q", w.edge, e.Label, e.Policies, w.label, w.policies)
				}
				if e.Color != ColorAllowed || !e.Dashed {
					t.Errorf("edge %s: color %s dashed %v, want green dashed", w.edge, e.Color, e.Dashed)
				}
			}
			for id, want := range tt.marked {
				p := g.Pod(id)
				if p == nil {
					t.Fatalf("pod %s not drawn", id)
				}
				if !slices.Equal(p.Policies, want) {
					t.Errorf("pod %s policies = %q, want %q", id, p.Policies, want)
				}
			}
			for id, label := range tt.address {
				a := findAddress(g, id)
				if a == nil {
					t.Fatalf("no address %s; have %+v", id, g.Addresses)
				}
				if a.Label != label {
					t.Errorf("address %s label %q, want %q", id, a.Label, label)
				}
			}
			if len(g.Notes) != tt.notes {
				t.Errorf("notes = %q, want %d", g.Notes, tt.notes)
			}
		})
	}
}

func TestBuildPolicyGroupOfSelectedPods(t *testing.T) {
	var pods []*corev1.Pod
	for i := range 6 {
		pods = append(pods, pod("shop", fmt.Sprintf("p-%d", i), "node-a", fmt.Sprintf("10.244.0.%d", 10+i), "app", "shop"))
	}
	pol := ingressPolicy("shop", "same-namespace", &metav1.LabelSelector{},
		networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}})
	g := Build(nil, pods, nil, []*networkingv1.NetworkPolicy{pol}, nil)
	// Peers and selected pods are the same six pods: one group, one loop.
	if got := edgeKeys(g, EdgePolicy); !slices.Equal(got, []string{"group:pods selected by shop/same-namespace -> group:pods selected by shop/same-namespace"}) {
		t.Fatalf("policy edges = %q", got)
	}
	a := findAddress(g, "group:pods selected by shop/same-namespace")
	if a == nil || a.Kind != AddressPodGroup || len(a.Pods) != 6 {
		t.Fatalf("group = %+v", a)
	}
	for _, p := range g.Nodes[0].Pods {
		if !slices.Equal(p.Policies, []string{"shop/same-namespace"}) {
			t.Errorf("pod %s policies %q", p.ID, p.Policies)
		}
	}
}

func TestBuildFlows(t *testing.T) {
	g := newLab().build()
	tests := []struct {
		from, to string
		port     uint16
		allowed  bool
		color    string
		count    int
		label    string
	}{
		{"pod:default/client", "pod:default/web-1", 80, true, ColorAllowed, 2, "80/TCP via default/web ×2"},
		{"pod:default/client", "pod:default/web-2", 80, true, ColorAllowed, 1, "80/TCP via default/web"},
		{"pod:default/client", "pod:prod/db", 5432, false, ColorDenied, 2, "5432/TCP ×2\ndenied by prod/db-from-default-web, prod/deny-all"},
		// The destination is given as the pod's IP.
		{"pod:default/web-2", "pod:prod/db", 5432, true, ColorAllowed, 1, "5432/TCP"},
		{"ip:198.51.100.7", "pod:default/web-1", 80, false, ColorDenied, 1, "80/TCP\ndenied by default/web-from-client"},
		{"pod:default/web-1", "pod:kube-system/coredns-1", 53, true, ColorAllowed, 1, "53/UDP via kube-system/kube-dns"},
		// The protocol is upper-cased.
		{"pod:default/web-1", "ip:9.9.9.9", 443, true, ColorAllowed, 1, "443/TCP"},
		// A node's address.
		{"ip:172.18.0.3", "pod:default/client", 8080, true, ColorAllowed, 1, "8080/TCP"},
	}
	flows := g.EdgesOf(EdgeFlow)
	if len(flows) != len(tests) {
		t.Errorf("%d flow edges, want %d: %q", len(flows), len(tests), edgeKeys(g, EdgeFlow))
	}
	for _, tt := range tests {
		e := findEdge(t, g, EdgeFlow, tt.from, tt.to)
		if e.Port != tt.port || e.Allowed != tt.allowed || e.Color != tt.color || e.Count != tt.count || e.Label != tt.label || e.Dashed {
			t.Errorf("flow %s -> %s = port %d allowed %v color %s count %d label %q dashed %v; want %d %v %s %d %q",
				tt.from, tt.to, e.Port, e.Allowed, e.Color, e.Count, e.Label, e.Dashed, tt.port, tt.allowed, tt.color, tt.count, tt.label)
		}
	}
	if a := findAddress(g, "ip:172.18.0.3"); a == nil || a.Kind != AddressNode || a.Label != "172.18.0.3\nnode node-b" {
		t.Errorf("node address = %+v", a)
	}
	if a := findAddress(g, "ip:9.9.9.9"); a == nil || a.Kind != AddressOutside {
		t.Errorf("outside address = %+v", a)
	}
}

func TestBuildFlowEdgeCases(t *testing.T) {
	l := newLab()
	l.flows = []Flow{
		// Same pair, both verdicts: two edges.
		{Source: "default/client", Dest: "default/web-1", Port: 80, Protocol: "TCP", Allowed: true},
		{Source: "default/client", Dest: "default/web-1", Port: 80, Protocol: "TCP", Allowed: false},
		// To a Service's ClusterIP: the Service.
		{Source: "default/client", Dest: "10.96.0.80", Service: "default/web", Port: 80, Protocol: "TCP", Allowed: true},
		// Only a Service as the destination.
		{Source: "default/client", Service: "kube-system/kube-dns", Port: 53, Protocol: "UDP", Allowed: true},
		// The Service as the node agents' flow log names it, with its port.
		{Source: "default/web-2", Service: "default/web:80", Port: 80, Protocol: "TCP", Allowed: true},
		{Source: "default/web-2", Dest: "default/web-1", Service: "10.96.0.80:80", Port: 80, Protocol: "TCP", Allowed: true},
		// A pod that is gone.
		{Source: "default/job-done", Dest: "default/web-1", Port: 80, Protocol: "TCP", Allowed: false},
		// Denied without known policies.
		{Source: "default/web-1", Dest: "prod/db", Port: 5432, Allowed: false},
		// Unusable.
		{Source: "", Dest: "default/web-1"},
		{Source: "default/client"},
	}
	g := l.build()
	want := []string{
		"missing:default/job-done -> pod:default/web-1 80/TCP allowed=false \"80/TCP\\ndenied\"",
		"pod:default/client -> pod:default/web-1 80/TCP allowed=false \"80/TCP\\ndenied\"",
		"pod:default/client -> pod:default/web-1 80/TCP allowed=true \"80/TCP\"",
		"pod:default/client -> svc:default/web 80/TCP allowed=true \"80/TCP\"",
		"pod:default/client -> svc:kube-system/kube-dns 53/UDP allowed=true \"53/UDP\"",
		"pod:default/web-1 -> pod:prod/db 5432/TCP allowed=false \"5432/TCP\\ndenied\"",
		"pod:default/web-2 -> pod:default/web-1 80/TCP allowed=true \"80/TCP via default/web\"",
		"pod:default/web-2 -> svc:default/web 80/TCP allowed=true \"80/TCP\"",
	}
	var got []string
	for _, e := range g.EdgesOf(EdgeFlow) {
		got = append(got, fmt.Sprintf("%s -> %s %d/%s allowed=%v %q", e.From, e.To, e.Port, e.Protocol, e.Allowed, e.Label))
	}
	if !slices.Equal(got, want) {
		t.Errorf("flows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if a := findAddress(g, "missing:default/job-done"); a == nil || a.Kind != AddressMissingPod {
		t.Errorf("missing pod address = %+v", a)
	}
	if !slices.ContainsFunc(g.Notes, func(n string) bool { return strings.Contains(n, "2 without a source or destination") }) {
		t.Errorf("notes = %q, want one about the 2 unusable flows", g.Notes)
	}
}

func TestBuildCaps(t *testing.T) {
	pods := []*corev1.Pod{pod("default", "web", "node-a", "10.244.0.5", "app", "web")}
	var peers []networkingv1.NetworkPolicyPeer
	for i := range MaxPolicyEdges + 20 {
		peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("192.0.%d.%d/32", i/250, i%250)}})
	}
	pol := ingressPolicy("default", "many", matchLabels("app", "web"), networkingv1.NetworkPolicyIngressRule{From: peers})
	var flows []Flow
	for i := range MaxFlowEdges + 10 {
		flows = append(flows, Flow{Source: fmt.Sprintf("198.18.%d.%d", i/250, i%250), Dest: "default/web", Port: 80, Protocol: "TCP", Allowed: true})
	}
	flows = append(flows, Flow{Source: "203.0.113.1", Dest: "default/web", Port: 22, Protocol: "TCP", Allowed: false})

	g := Build(nil, pods, nil, []*networkingv1.NetworkPolicy{pol}, flows)
	if n := len(g.EdgesOf(EdgePolicy)); n != MaxPolicyEdges {
		t.Errorf("%d policy edges, want the cap %d", n, MaxPolicyEdges)
	}
	if n := len(g.EdgesOf(EdgeFlow)); n != MaxFlowEdges {
		t.Errorf("%d flow edges, want the cap %d", n, MaxFlowEdges)
	}
	if !slices.ContainsFunc(g.EdgesOf(EdgeFlow), func(e Edge) bool { return !e.Allowed }) {
		t.Error("the denied flow was dropped by the cap; denied flows must be kept first")
	}
	if len(g.Notes) != 2 {
		t.Errorf("notes = %q, want one per cap", g.Notes)
	}
	// Only addresses of kept edges are drawn.
	used := map[string]bool{}
	for _, e := range g.Edges {
		used[e.From], used[e.To] = true, true
	}
	for _, a := range g.Addresses {
		if !used[a.ID] {
			t.Errorf("address %s has no edge", a.ID)
		}
	}
}

func TestBuildIgnoresInputOrder(t *testing.T) {
	l := newLab()
	want := l.build()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		rng.Shuffle(len(l.nodes), func(i, j int) { l.nodes[i], l.nodes[j] = l.nodes[j], l.nodes[i] })
		rng.Shuffle(len(l.pods), func(i, j int) { l.pods[i], l.pods[j] = l.pods[j], l.pods[i] })
		rng.Shuffle(len(l.services), func(i, j int) { l.services[i], l.services[j] = l.services[j], l.services[i] })
		rng.Shuffle(len(l.policies), func(i, j int) { l.policies[i], l.policies[j] = l.policies[j], l.policies[i] })
		rng.Shuffle(len(l.flows), func(i, j int) { l.flows[i], l.flows[j] = l.flows[j], l.flows[i] })
		if got := l.build(); !reflect.DeepEqual(got, want) {
			t.Fatalf("Build depends on the order of its inputs:\n%+v\nwant\n%+v", got, want)
		}
	}
}

func TestBuildSkipsNil(t *testing.T) {
	g := Build([]*corev1.Node{nil}, []*corev1.Pod{nil}, []*corev1.Service{nil}, []*networkingv1.NetworkPolicy{nil}, nil)
	if len(g.Nodes)+len(g.Services)+len(g.Policies)+len(g.Edges) != 0 {
		t.Errorf("Build of nils = %+v, want empty", g)
	}
}
