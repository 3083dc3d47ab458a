package policy_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/podnet/podnet/policy"
)

const explainPolicies = `
metadata: {name: default-deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}
---
metadata: {name: allow-dns, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
---
metadata: {name: a-to-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {pod: b}}}]
  - to:
    - namespaceSelector: {matchLabels: {ns: "y"}}
      podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}
    - ipBlock: {cidr: 10.244.3.0/24, except: [10.244.3.1/32]}
    ports: [{port: 80}, {protocol: UDP, port: 81, endPort: 90}, {port: serve-81-tcp}]
---
metadata: {name: from-x, namespace: "y"}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}}]
    ports: [{protocol: TCP}]`

func TestExplain(t *testing.T) {
	tb := policy.Compile(decode(t, explainPolicies), modelNamespaces, modelPods)
	for _, c := range []struct {
		from, to string
		port     uint16
		proto    policy.Protocol
		want     string
	}{
		{"x/a", "y/a", 80, policy.TCP, `
10.244.1.1 -> 10.244.2.1:80/TCP: allowed
  egress at x/a (10.244.1.1): isolated by x/a-to-y, x/allow-dns, x/default-deny-egress
    allowed by x/a-to-y egress[1]: to namespaceSelector{ns=y} and podSelector{pod in (a,b)} or ipBlock{10.244.3.0/24 except 10.244.3.1/32} ports TCP/80, UDP/81-90, TCP/serve-81-tcp
  ingress at y/a (10.244.2.1): isolated by y/from-x
    allowed by y/from-x ingress[0]: from namespaceSelector{kubernetes.io/metadata.name=x} ports TCP
`},
		{"x/a", "y/c", 80, policy.TCP, `
10.244.1.1 -> 10.244.2.3:80/TCP: denied
  egress at x/a (10.244.1.1): isolated by x/a-to-y, x/allow-dns, x/default-deny-egress
    denied: no rule of these policies matches
  ingress at y/c (10.244.2.3): isolated by y/from-x
    allowed by y/from-x ingress[0]: from namespaceSelector{kubernetes.io/metadata.name=x} ports TCP
`},
		{"x/a", "x/b", 53, policy.UDP, `
10.244.1.1 -> 10.244.1.2:53/UDP: allowed
  egress at x/a (10.244.1.1): isolated by x/a-to-y, x/allow-dns, x/default-deny-egress
    allowed by x/a-to-y egress[0]: to podSelector{pod=b} on all ports
    allowed by x/allow-dns egress[0]: to anywhere ports UDP/53, TCP/53
  ingress at x/b (10.244.1.2): not isolated: allowed
`},
		{"z/a", "8.8.8.8", 53, policy.UDP, `
10.244.3.1 -> 8.8.8.8:53/UDP: allowed
  egress at z/a (10.244.3.1): not isolated: allowed
  ingress at 8.8.8.8 (not a pod): not isolated: allowed
`},
		{"x/c", "x/c", 9, policy.TCP, `
10.244.1.3 -> 10.244.1.3:9/TCP: allowed
  egress at x/c (10.244.1.3): a pod's traffic to itself: allowed
  ingress at x/c (10.244.1.3): a pod's traffic to itself: allowed
`},
	} {
		f := policy.Flow{Src: endpoint(t, modelPods, c.from), Dst: endpoint(t, modelPods, c.to), Proto: c.proto, Port: c.port}
		e := tb.Explain(f)
		if got := e.String(); got != strings.TrimPrefix(c.want, "\n") {
			t.Errorf("Explain(%v):\n%s\nwant:\n%s", f, got, strings.TrimPrefix(c.want, "\n"))
		}
		for _, v := range []policy.Verdict{e.Egress, e.Ingress} {
			ok, decider := tb.Allows(f, v.Direction)
			if ok != v.Allowed || decider != v.Decider {
				t.Errorf("%v %v: Allows %v %d, Explain %v %d", f, v.Direction, ok, decider, v.Allowed, v.Decider)
			}
		}
	}
}

func TestDecider(t *testing.T) {
	tb := policy.Compile(decode(t, explainPolicies), modelNamespaces, modelPods)
	f := policy.Flow{Src: podAddr(t, modelPods, "x/a"), Dst: podAddr(t, modelPods, "y/c"), Proto: policy.TCP, Port: 80}
	ok, d := tb.Allows(f, policy.Egress)
	if want := []string{"x/a-to-y", "x/allow-dns", "x/default-deny-egress"}; ok || !slices.Equal(tb.Policies(d), want) {
		t.Errorf("denied egress: %v, decider %v, want false %v", ok, tb.Policies(d), want)
	}
	ok, d = tb.Allows(f, policy.Ingress)
	if !ok || !slices.Equal(tb.Policies(d), []string{"y/from-x"}) {
		t.Errorf("allowed ingress: %v, decider %v", ok, tb.Policies(d))
	}
	// The same isolating policies give the same set, whichever pod.
	f.Src = podAddr(t, modelPods, "x/b")
	f.Port = 443
	_, d2 := tb.Allows(f, policy.Egress)
	if want := []string{"x/allow-dns", "x/default-deny-egress"}; !slices.Equal(tb.Policies(d2), want) {
		t.Errorf("x/b: decider %v, want %v", tb.Policies(d2), want)
	}
	f.Src = podAddr(t, modelPods, "x/c")
	if _, d3 := tb.Allows(f, policy.Egress); d3 != d2 {
		t.Errorf("x/b and x/c are denied by the same policies but get sets %d and %d", d2, d3)
	}
	// Not isolated, or not a pod: decider 0.
	f.Src = podAddr(t, modelPods, "z/a")
	if ok, d := tb.Allows(f, policy.Egress); !ok || d != 0 || tb.Policies(d) != nil {
		t.Errorf("not isolated: %v %d %v", ok, d, tb.Policies(d))
	}
	if tb.Policies(1<<30) != nil {
		t.Error("Policies of an unknown set is not nil")
	}
}

func TestIsolated(t *testing.T) {
	tb := policy.Compile(decode(t, explainPolicies), modelNamespaces, modelPods)
	for _, c := range []struct {
		a       string
		in, out bool
	}{
		{"10.244.1.1", false, true}, // x/a
		{"10.244.2.2", true, false}, // y/b
		{"10.244.3.3", false, false},
		{"::ffff:10.244.1.1", false, true},
		{"8.8.8.8", false, false},
		{"fd00::1", false, false},
	} {
		in, out := tb.Isolated(addr(c.a))
		if in != c.in || out != c.out {
			t.Errorf("Isolated(%s) = %v, %v; want %v, %v", c.a, in, out, c.in, c.out)
		}
	}
	if in, out := tb.Isolated(netip.Addr{}); in || out {
		t.Error("the zero address is isolated")
	}
}

func TestNilTable(t *testing.T) {
	var tb *policy.Table
	f := policy.Flow{Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), Proto: policy.TCP, Port: 80}
	if ok, d := tb.Allows(f, policy.Ingress); !ok || d != 0 {
		t.Error("a nil table denies")
	}
	if in, out := tb.Isolated(f.Src); in || out {
		t.Error("a nil table isolates")
	}
	if !tb.Explain(f).Allowed() || tb.Policies(1) != nil || tb.Stats() != (policy.Stats{}) {
		t.Error("a nil table explains a denial")
	}
	empty := policy.Compile(nil, nil, nil)
	if ok, _ := empty.Allows(f, policy.Egress); !ok {
		t.Error("an empty table denies")
	}
}

// TestPods covers the pods Compile is given: without an address, sharing
// one, IPv6, in the default namespace, and the table's independence from
// the caller's maps.
func TestPods(t *testing.T) {
	policies := decode(t, `
metadata: {name: deny}
spec: {podSelector: {matchLabels: {app: db}}}
---
metadata: {name: from-web}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]`)
	webLabels := map[string]string{"app": "web"}
	pods := []policy.Pod{
		{Name: "db6", IP: addr("fd00::10"), Labels: map[string]string{"app": "db"}},
		{Namespace: "default", Name: "web6", IP: addr("fd00::20"), Labels: webLabels},
		{Name: "pending", Labels: map[string]string{"app": "web"}},
		{Name: "db4", IP: addr("10.0.0.10"), Labels: map[string]string{"app": "db"}},
		// b-web and z-other share an address: b-web, first by name, keeps it.
		{Name: "z-other", IP: addr("10.0.0.20"), Labels: map[string]string{"app": "other"}},
		{Name: "b-web", IP: addr("10.0.0.20"), Labels: webLabels},
		{Namespace: "other", Name: "web", IP: addr("10.0.0.30"), Labels: map[string]string{"app": "web"}},
	}
	tb := policy.Compile(policies, nil, pods)
	webLabels["app"] = "changed" // the table keeps no reference
	for _, c := range []struct {
		from, to string
		want     bool
	}{
		{"fd00::20", "fd00::10", true},
		{"10.0.0.20", "fd00::10", true},
		{"::ffff:10.0.0.20", "10.0.0.10", true},
		{"10.0.0.30", "10.0.0.10", false}, // app=web in another namespace
		{"fd00::30", "fd00::10", false},
		{"fd00::10", "10.0.0.30", true},
	} {
		f := policy.Flow{Src: addr(c.from), Dst: addr(c.to), Proto: policy.TCP, Port: 5432}
		if got := allows(tb, f); got != c.want {
			t.Errorf("%s -> %s: %v, want %v\n%v", c.from, c.to, got, c.want, tb.Explain(f))
		}
	}
	if st := tb.Stats(); st.Pods != 5 || st.IsolatedIngress != 2 || st.Policies != 2 {
		t.Errorf("stats %+v", st)
	}
	if e := tb.Explain(policy.Flow{Src: addr("10.0.0.20"), Dst: addr("10.0.0.10"), Proto: policy.TCP, Port: 1}); e.Egress.Pod != "default/b-web" {
		t.Errorf("10.0.0.20 is %q, want default/b-web", e.Egress.Pod)
	}
}

func TestAllowsDoesNotAllocate(t *testing.T) {
	tb := policy.Compile(decode(t, explainPolicies), modelNamespaces, modelPods)
	var flows []policy.Flow
	for _, a := range modelPods {
		for _, b := range modelPods {
			for _, p := range allProbes {
				flows = append(flows, policy.Flow{Src: a.IP, Dst: b.IP, Proto: p.proto, Port: p.port})
			}
		}
		flows = append(flows, policy.Flow{Src: a.IP, Dst: addr("fd00::1"), Proto: policy.UDP, Port: 53})
	}
	if n := testing.AllocsPerRun(20, func() {
		for _, f := range flows {
			tb.Allows(f, policy.Ingress)
			tb.Allows(f, policy.Egress)
		}
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
