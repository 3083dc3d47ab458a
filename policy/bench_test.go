package policy_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/podnet/podnet/policy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// bigCluster is 1,000 policies over 1,000 pods in 15 namespaces, written
// the way teams write them: per namespace a default deny in each
// direction, DNS allowed, same-namespace traffic allowed, and per app
// rules from its frontends by named port, from other teams' namespaces
// (namespaceSelector AND podSelector), from monitoring on a metrics port,
// to its database, to the outside world by ipBlock with except, and port
// ranges. Apps reuse names across namespaces, so selectors repeat.
func bigCluster() *cluster {
	const namespaces, podsPerNS, apps = 15, 67, 8
	r := rand.New(rand.NewPCG(1, 2))
	c := &cluster{}
	for n := range namespaces {
		c.namespaces = append(c.namespaces, policy.Namespace{
			Name:   fmt.Sprintf("team%d-%s", n, []string{"prod", "staging", "dev"}[n%3]),
			Labels: map[string]string{"team": fmt.Sprintf("t%d", n%5), "env": []string{"prod", "staging", "dev"}[n%3]},
		})
	}
	for n, ns := range c.namespaces {
		for i := range podsPerNS {
			app := fmt.Sprintf("app%d", i%apps)
			tier := []string{"frontend", "backend", "db"}[i%3]
			c.pods = append(c.pods, policy.Pod{
				Namespace: ns.Name, Name: fmt.Sprintf("%s-%s-%d", app, tier, i),
				IP:     netip.AddrFrom4([4]byte{10, 244, byte(n), byte(i + 2)}),
				Labels: map[string]string{"app": app, "tier": tier, "version": []string{"v1", "v2"}[r.IntN(2)], "pod-template-hash": fmt.Sprintf("%x", r.Uint32())},
				Ports: []policy.NamedPort{
					{Name: "http", Protocol: policy.TCP, Port: uint16(8080 + i%3)},
					{Name: "metrics", Protocol: policy.TCP, Port: 9090},
					{Name: "grpc", Protocol: policy.TCP, Port: 9000},
				},
			})
		}
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	num := func(p int32) *intstr.IntOrString { v := intstr.FromInt32(p); return &v }
	named := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	sel := func(kv ...string) *metav1.LabelSelector {
		s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
		for i := 0; i < len(kv); i += 2 {
			s.MatchLabels[kv[i]] = kv[i+1]
		}
		return s
	}
	add := func(ns, name string, spec networkingv1.NetworkPolicySpec) {
		if len(c.policies) < 1000 {
			c.policies = append(c.policies, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})
		}
	}
	for n, ns := range c.namespaces {
		add(ns.Name, "default-deny", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Ingress", "Egress"}})
		add(ns.Name, "allow-dns", networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{"Egress"},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: num(53)}, {Protocol: &tcp, Port: num(53)}},
			}},
		})
		add(ns.Name, "allow-same-namespace", networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel()}}}},
		})
		for a := range apps {
			app := fmt.Sprintf("app%d", a)
			other := fmt.Sprintf("t%d", (n+a)%5)
			add(ns.Name, app+"-from-frontend", networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", app, "tier", "backend"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", app, "tier", "frontend")}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: named("http")}, {Port: named("grpc")}},
				}},
			})
			add(ns.Name, app+"-from-team", networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", app),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: sel("team", other),
						PodSelector:       sel("tier", "frontend"),
					}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: num(8080), EndPort: ptr(int32(8082))}},
				}},
			})
			add(ns.Name, app+"-monitoring", networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", app),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("kubernetes.io/metadata.name", c.namespaces[0].Name)}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: named("metrics")}},
				}},
			})
			add(ns.Name, app+"-to-db", networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", app, "tier", "backend"),
				PolicyTypes: []networkingv1.PolicyType{"Egress"},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					To:    []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", app, "tier", "db")}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: num(5432)}},
				}},
			})
			add(ns.Name, app+"-db-ingress", networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", app, "tier", "db"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{
						{PodSelector: sel("app", app, "tier", "backend")},
						{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
							{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"backend", "batch"}},
							{Key: "version", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"v0"}},
						}}},
					},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: num(5432)}},
				}},
			})
			add(ns.Name, app+"-egress-internet", networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", app, "tier", "frontend"),
				PolicyTypes: []networkingv1.PolicyType{"Egress"},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{
						CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"},
					}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: num(443)}, {Protocol: &tcp, Port: num(80)}},
				}},
			})
			add(ns.Name, app+"-from-lb", networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", app, "tier", "frontend"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{
						{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("192.168.%d.0/24", a)}},
						{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.244.0.0/16"}}},
					},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: num(30000), EndPort: ptr(int32(32767))}},
				}},
			})
			add(ns.Name, app+"-egress-team", networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", app),
				PolicyTypes: []networkingv1.PolicyType{"Egress"},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", other)}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: named("http")}},
				}},
			})
		}
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// benchFlows are flows between random pods and a few outside addresses, on
// ports the policies name and ports they do not.
func benchFlows(c *cluster) []policy.Flow {
	r := rand.New(rand.NewPCG(3, 4))
	outside := []netip.Addr{addr("192.168.3.7"), addr("8.8.8.8"), addr("10.1.2.3")}
	ports := []uint16{53, 80, 443, 5432, 8080, 8081, 9000, 9090, 31000, 12345}
	var flows []policy.Flow
	for range 4096 {
		src := c.pods[r.IntN(len(c.pods))].IP
		dst := c.pods[r.IntN(len(c.pods))].IP
		if r.IntN(8) == 0 {
			src = outside[r.IntN(len(outside))]
		} else if r.IntN(8) == 0 {
			dst = outside[r.IntN(len(outside))]
		}
		proto := policy.TCP
		if r.IntN(6) == 0 {
			proto = policy.UDP
		}
		flows = append(flows, policy.Flow{Src: src, Dst: dst, Proto: proto, Port: ports[r.IntN(len(ports))]})
	}
	return flows
}

func BenchmarkCompile1000x1000(b *testing.B) {
	c := bigCluster()
	b.ReportAllocs()
	for b.Loop() {
		policy.Compile(c.policies, c.namespaces, c.pods)
	}
}

// BenchmarkAllows asks both directions of a flow per iteration, as the data
// path does for a new connection, and reports the cost per call.
func BenchmarkAllows(b *testing.B) {
	c := bigCluster()
	tb := policy.Compile(c.policies, c.namespaces, c.pods)
	flows := benchFlows(c)
	b.ReportAllocs()
	i, denied := 0, 0
	for b.Loop() {
		f := flows[i&4095]
		i++
		if ok, _ := tb.Allows(f, policy.Egress); !ok {
			denied++
		}
		if ok, _ := tb.Allows(f, policy.Ingress); !ok {
			denied++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/call")
	b.ReportMetric(float64(denied)/float64(2*b.N), "denied/call")
}

// BenchmarkAllowsWorst asks, for the pod with the longest rule list, about
// a flow that no rule allows: the whole list is scanned.
func BenchmarkAllowsWorst(b *testing.B) {
	c := bigCluster()
	tb := policy.Compile(c.policies, c.namespaces, c.pods)
	f := policy.Flow{Src: addr("8.8.8.8"), Proto: policy.UDP, Port: 9}
	best := -1
	for _, p := range c.pods {
		f.Dst = p.IP
		n := len(tb.Explain(f).Ingress.Policies)
		if n > best {
			best = n
		}
	}
	for _, p := range c.pods {
		f.Dst = p.IP
		if len(tb.Explain(f).Ingress.Policies) == best {
			break
		}
	}
	if ok, _ := tb.Allows(f, policy.Ingress); ok {
		b.Fatalf("%v allowed", f)
	}
	b.ReportAllocs()
	for b.Loop() {
		tb.Allows(f, policy.Ingress)
	}
	b.ReportMetric(float64(best), "policies")
}

// TestCompileBudget holds the goals of the issue with a margin for slower
// or busier machines: Compile of 1,000 policies over 1,000 pods within
// 100 ms (failing only above 300 ms), Allows within 1 µs (failing above
// 3 µs), and no allocation in Allows.
// TestBigTable checks the table of the benchmarks' cluster (1,000 policies over 1,005 pods) and
// that Allows does not allocate. Its speed is BenchmarkCompile1000x1000's and BenchmarkAllows's:
// timing belongs in benchmarks, not in tests.
func TestBigTable(t *testing.T) {
	c := bigCluster()
	tb := policy.Compile(c.policies, c.namespaces, c.pods)
	st := tb.Stats()
	if st.Policies != 1000 || st.Pods != 1005 || st.IsolatedIngress != st.Pods || st.IsolatedEgress != st.Pods {
		t.Errorf("unexpected table: %+v", st)
	}
	flows := benchFlows(c)
	allocs := testing.AllocsPerRun(100, func() {
		for _, f := range flows[:64] {
			tb.Allows(f, policy.Ingress)
			tb.Allows(f, policy.Egress)
		}
	})
	if allocs != 0 {
		t.Errorf("Allows allocates: %v per 128 calls", allocs)
	}
}

// denseCluster is the hard case for a per-pod rule list: 1,000 policies in
// 10 namespaces that all select every pod of their namespace, so each pod
// is isolated by 100 policies of random rules.
func denseCluster() *cluster {
	c := bigCluster()
	c.policies = nil
	g := gen{rand.New(rand.NewPCG(5, 6))}
	for i := range 1000 {
		ns := c.namespaces[i%10].Name
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", i)}}
		np.Spec.PolicyTypes = []networkingv1.PolicyType{"Ingress", "Egress"}
		for range 1 + g.r.IntN(2) {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
				From:  []networkingv1.NetworkPolicyPeer{g.benchPeer(c)},
				Ports: []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromInt32(int32(1000 + g.r.IntN(1000))))}},
			})
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{
				To:    []networkingv1.NetworkPolicyPeer{g.benchPeer(c)},
				Ports: []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromInt32(int32(1000 + g.r.IntN(1000))))}},
			})
		}
		c.policies = append(c.policies, np)
	}
	return c
}

func (g gen) benchPeer(c *cluster) networkingv1.NetworkPolicyPeer {
	app := fmt.Sprintf("app%d", g.r.IntN(8))
	switch g.r.IntN(3) {
	case 0:
		return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}
	case 1:
		return networkingv1.NetworkPolicyPeer{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", g.r.IntN(5))}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
		}
	}
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("10.%d.0.0/16", g.r.IntN(256))}}
}

func BenchmarkCompileDense(b *testing.B) {
	c := denseCluster()
	b.ReportAllocs()
	for b.Loop() {
		policy.Compile(c.policies, c.namespaces, c.pods)
	}
}

// BenchmarkAllowsDense asks about flows between the pods of denseCluster
// on a port no rule names: every call scans a whole list of about 150
// rules.
func BenchmarkAllowsDense(b *testing.B) {
	c := denseCluster()
	tb := policy.Compile(c.policies, c.namespaces, c.pods)
	flows := benchFlows(c)
	for i := range flows {
		flows[i].Port = 12345
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tb.Allows(flows[i&4095], policy.Ingress)
		i++
	}
	b.ReportMetric(float64(tb.Stats().Rules)/float64(tb.Stats().RuleLists), "rules/list")
}
