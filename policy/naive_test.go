package policy_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/podnet/podnet/policy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// cluster is the input of one comparison.
type cluster struct {
	policies   []*networkingv1.NetworkPolicy
	namespaces []policy.Namespace
	pods       []policy.Pod
}

// naiveVerdict decides f in direction dir straight from the API reference,
// with nothing precomputed: it walks every policy for every question and
// matches labels with apimachinery's own selectors. It returns the verdict,
// the policies isolating the judged pod and those with a rule allowing f,
// in namespace/name order.
func (c *cluster) naiveVerdict(f policy.Flow, dir policy.Direction) (allowed bool, isolating, allowing []string) {
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	if src == dst {
		return true, nil, nil // a pod cannot block access to itself
	}
	judged, peer := c.pod(dst), c.pod(src)
	peerAddr := src
	if dir == policy.Egress {
		judged, peer, peerAddr = c.pod(src), c.pod(dst), dst
	}
	if judged == nil {
		return true, nil, nil
	}
	pols := slices.Clone(c.policies)
	slices.SortStableFunc(pols, func(a, b *networkingv1.NetworkPolicy) int {
		return cmp.Compare(nsOf(a.Namespace)+"/"+a.Name, nsOf(b.Namespace)+"/"+b.Name)
	})
	for _, np := range pols {
		ns := nsOf(np.Namespace)
		if ns != nsOf(judged.Namespace) || !selects(&np.Spec.PodSelector, judged.Labels) {
			continue
		}
		types := np.Spec.PolicyTypes
		if len(types) == 0 {
			types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(np.Spec.Egress) > 0 {
				types = append(types, networkingv1.PolicyTypeEgress)
			}
		}
		want := networkingv1.PolicyTypeIngress
		if dir == policy.Egress {
			want = networkingv1.PolicyTypeEgress
		}
		if !slices.Contains(types, want) {
			continue
		}
		name := ns + "/" + np.Name
		isolating = append(isolating, name)
		// The destination pod, for named ports.
		dstPod := judged
		if dir == policy.Egress {
			dstPod = peer
		}
		match := false
		if dir == policy.Ingress {
			for _, r := range np.Spec.Ingress {
				match = match || c.peersMatch(r.From, ns, peer, peerAddr) && portsMatch(r.Ports, f, dstPod)
			}
		} else {
			for _, r := range np.Spec.Egress {
				match = match || c.peersMatch(r.To, ns, peer, peerAddr) && portsMatch(r.Ports, f, dstPod)
			}
		}
		if match {
			allowing = append(allowing, name)
		}
	}
	if len(isolating) == 0 {
		return true, nil, nil
	}
	return len(allowing) > 0, isolating, allowing
}

func nsOf(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// pod returns the pod with address a: of pods sharing it, the first by
// namespace and name.
func (c *cluster) pod(a netip.Addr) *policy.Pod {
	var best *policy.Pod
	for i := range c.pods {
		p := &c.pods[i]
		if !p.IP.IsValid() || p.IP.Unmap() != a {
			continue
		}
		if best == nil || nsOf(p.Namespace)+"/"+p.Name < nsOf(best.Namespace)+"/"+best.Name {
			best = p
		}
	}
	return best
}

func (c *cluster) nsLabels(ns string) labels.Set {
	for _, n := range c.namespaces {
		if n.Name == ns {
			l := labels.Set{"kubernetes.io/metadata.name": ns}
			for k, v := range n.Labels {
				l[k] = v
			}
			return l
		}
	}
	return labels.Set{"kubernetes.io/metadata.name": ns}
}

func selects(ls *metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(ls)
	return err == nil && s.Matches(labels.Set(l))
}

func (c *cluster) peersMatch(peers []networkingv1.NetworkPolicyPeer, ns string, peer *policy.Pod, a netip.Addr) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		switch {
		case p.IPBlock != nil:
			cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
			if err != nil || !cidr.Contains(a) {
				continue
			}
			excepted := false
			for _, e := range p.IPBlock.Except {
				x, err := netip.ParsePrefix(e)
				excepted = excepted || err == nil && x.Contains(a)
			}
			if !excepted {
				return true
			}
		case peer == nil:
		case p.NamespaceSelector != nil:
			if selects(p.NamespaceSelector, c.nsLabels(nsOf(peer.Namespace))) &&
				(p.PodSelector == nil || selects(p.PodSelector, peer.Labels)) {
				return true
			}
		case p.PodSelector != nil:
			if nsOf(peer.Namespace) == ns && selects(p.PodSelector, peer.Labels) {
				return true
			}
		}
	}
	return false
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, f policy.Flow, dst *policy.Pod) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		proto := "TCP"
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		if proto != f.Proto.String() {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.Int:
			end := p.Port.IntVal
			if p.EndPort != nil {
				end = *p.EndPort
			}
			if int32(f.Port) >= p.Port.IntVal && int32(f.Port) <= end {
				return true
			}
		case dst != nil:
			for _, cp := range dst.Ports {
				cproto := cp.Protocol
				if cproto == 0 {
					cproto = policy.TCP
				}
				if cp.Name == p.Port.StrVal && cproto == f.Proto && cp.Port == f.Port {
					return true
				}
			}
		}
	}
	return false
}

// gen builds random small clusters and policies, mostly valid ones, from a
// seed.
type gen struct{ r *rand.Rand }

func (g gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }
func (g gen) chance(p float64) bool    { return g.r.Float64() < p }

func (g gen) labels(keys, values []string) map[string]string {
	l := map[string]string{}
	for _, k := range keys {
		if g.chance(0.6) {
			l[k] = g.pick(values...)
		}
	}
	return l
}

func (g gen) selector(keys, values []string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch g.r.IntN(4) {
	case 0: // empty: everything
	case 1:
		s.MatchLabels = map[string]string{g.pick(keys...): g.pick(values...)}
	default:
		if g.chance(0.3) {
			s.MatchLabels = map[string]string{g.pick(keys...): g.pick(values...)}
		}
		for range 1 + g.r.IntN(2) {
			e := metav1.LabelSelectorRequirement{Key: g.pick(keys...)}
			switch g.r.IntN(4) {
			case 0:
				e.Operator, e.Values = metav1.LabelSelectorOpIn, []string{g.pick(values...), g.pick(values...)}
			case 1:
				e.Operator, e.Values = metav1.LabelSelectorOpNotIn, []string{g.pick(values...)}
			case 2:
				e.Operator = metav1.LabelSelectorOpExists
			case 3:
				e.Operator = metav1.LabelSelectorOpDoesNotExist
			}
			s.MatchExpressions = append(s.MatchExpressions, e)
		}
	}
	return s
}

var (
	podKeys   = []string{"app", "tier"}
	podValues = []string{"a", "b", "c"}
	nsKeys    = []string{"team", "env"}
	nsValues  = []string{"t1", "t2"}
	portNames = []string{"http", "dns", "metrics"}
	nsNames   = []string{"x", "y", "z", ""}
)

func (g gen) prefix() string {
	bits := 24 + g.r.IntN(8)
	if g.chance(0.1) {
		bits = 0
	}
	a := netip.AddrFrom4([4]byte{10, 0, 0, byte(g.r.IntN(32))})
	if g.chance(0.1) {
		return netip.PrefixFrom(netip.MustParseAddr("fd00::"), 120).String()
	}
	return netip.PrefixFrom(a, bits).Masked().String()
}

func (g gen) peer() networkingv1.NetworkPolicyPeer {
	var p networkingv1.NetworkPolicyPeer
	switch g.r.IntN(4) {
	case 0:
		p.PodSelector = g.selector(podKeys, podValues)
	case 1:
		p.NamespaceSelector = g.selector(nsKeys, nsValues)
		if g.chance(0.2) {
			p.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": g.pick("x", "y", "z")}}
		}
	case 2:
		p.PodSelector = g.selector(podKeys, podValues)
		p.NamespaceSelector = g.selector(nsKeys, nsValues)
	case 3:
		cidr := g.prefix()
		p.IPBlock = &networkingv1.IPBlock{CIDR: cidr}
		base := netip.MustParsePrefix(cidr)
		for range g.r.IntN(3) {
			if base.Bits() >= 31 && base.Addr().Is4() || base.Bits() >= 127 {
				break
			}
			// A random strict sub-prefix of the cidr.
			b := base.Bits() + 1 + g.r.IntN(min(4, base.Addr().BitLen()-base.Bits()))
			raw := base.Addr().As16()
			if base.Addr().Is4() {
				a4 := base.Addr().As4()
				a4[3] |= byte(g.r.IntN(256)) & byte(0xff>>max(0, base.Bits()-24))
				p.IPBlock.Except = append(p.IPBlock.Except, netip.PrefixFrom(netip.AddrFrom4(a4), b).Masked().String())
			} else {
				raw[15] |= byte(g.r.IntN(256))
				p.IPBlock.Except = append(p.IPBlock.Except, netip.PrefixFrom(netip.AddrFrom16(raw), b).Masked().String())
			}
		}
	}
	return p
}

func (g gen) ports() []networkingv1.NetworkPolicyPort {
	var ps []networkingv1.NetworkPolicyPort
	for range g.r.IntN(3) {
		var p networkingv1.NetworkPolicyPort
		if g.chance(0.7) {
			proto := corev1.Protocol(g.pick("TCP", "UDP", "SCTP"))
			p.Protocol = &proto
		}
		switch g.r.IntN(4) {
		case 0: // every port of the protocol
		case 1:
			v := intstr.FromInt32([]int32{53, 80, 81, 8080}[g.r.IntN(4)])
			p.Port = &v
		case 2:
			v := intstr.FromInt32(int32(79 + g.r.IntN(3)))
			end := v.IntVal + int32(g.r.IntN(3))
			p.Port, p.EndPort = &v, &end
		case 3:
			v := intstr.FromString(g.pick(portNames...))
			p.Port = &v
		}
		ps = append(ps, p)
	}
	if ps == nil && g.chance(0.2) {
		ps = []networkingv1.NetworkPolicyPort{} // empty, not nil: the same
	}
	return ps
}

func (g gen) cluster() *cluster {
	c := &cluster{}
	for _, n := range []string{"x", "y", "z"} {
		if g.chance(0.8) {
			c.namespaces = append(c.namespaces, policy.Namespace{Name: n, Labels: g.labels(nsKeys, nsValues)})
		}
	}
	used := map[netip.Addr]bool{}
	for i := range 2 + g.r.IntN(7) {
		p := policy.Pod{Namespace: g.pick(nsNames...), Name: fmt.Sprintf("p%d", i), Labels: g.labels(podKeys, podValues)}
		switch {
		case g.chance(0.05): // no address yet
		case g.chance(0.1):
			p.IP = netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(g.r.IntN(8))})
		case g.chance(0.1):
			p.IP = netip.AddrFrom16(netip.AddrFrom4([4]byte{10, 0, 0, byte(g.r.IntN(32))}).As16()) // 4in6
		default:
			p.IP = netip.AddrFrom4([4]byte{10, 0, 0, byte(g.r.IntN(32))})
		}
		if used[p.IP.Unmap()] && g.chance(0.7) {
			continue
		}
		used[p.IP.Unmap()] = true
		for _, n := range portNames {
			if g.chance(0.4) {
				proto := []policy.Protocol{0, policy.TCP, policy.UDP}[g.r.IntN(3)]
				p.Ports = append(p.Ports, policy.NamedPort{Name: n, Protocol: proto, Port: uint16(79 + g.r.IntN(3))})
			}
		}
		c.pods = append(c.pods, p)
	}
	for i := range g.r.IntN(6) {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("np%d", i), Namespace: g.pick(nsNames...)}}
		np.Spec.PodSelector = *g.selector(podKeys, podValues)
		switch g.r.IntN(4) {
		case 1:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		case 2:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		case 3:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress}
		}
		for range g.r.IntN(3) {
			r := networkingv1.NetworkPolicyIngressRule{Ports: g.ports()}
			for range g.r.IntN(3) {
				r.From = append(r.From, g.peer())
			}
			np.Spec.Ingress = append(np.Spec.Ingress, r)
		}
		for range g.r.IntN(3) {
			r := networkingv1.NetworkPolicyEgressRule{Ports: g.ports()}
			for range g.r.IntN(3) {
				r.To = append(r.To, g.peer())
			}
			np.Spec.Egress = append(np.Spec.Egress, r)
		}
		c.policies = append(c.policies, np)
	}
	return c
}

// compare checks Compile+Allows, Isolated and Explain against the naive
// evaluator on every flow between the pods and a few other addresses.
func compareWithNaive(t *testing.T, c *cluster, st *naiveStats) {
	t.Helper()
	tb := policy.Compile(c.policies, c.namespaces, c.pods)
	addrs := []netip.Addr{
		addr("10.0.0.40"), addr("10.0.0.7"), addr("192.168.0.1"), addr("fd00::99"), addr("fd00::3"),
		netip.AddrFrom16(addr("10.0.0.5").As16()),
	}
	for _, p := range c.pods {
		if p.IP.IsValid() {
			addrs = append(addrs, p.IP)
		}
	}
	probes := []probe{{53, policy.UDP}, {79, policy.TCP}, {80, policy.TCP}, {81, policy.TCP}, {80, policy.UDP}, {80, policy.SCTP}, {81, policy.SCTP}, {0, 1}}
	for _, a := range addrs {
		in, out := tb.Isolated(a)
		_, iso1, _ := c.naiveVerdict(policy.Flow{Src: addr("203.0.113.1"), Dst: a, Proto: policy.TCP, Port: 1}, policy.Ingress)
		_, iso2, _ := c.naiveVerdict(policy.Flow{Src: a, Dst: addr("203.0.113.1"), Proto: policy.TCP, Port: 1}, policy.Egress)
		if in != (len(iso1) > 0) || out != (len(iso2) > 0) {
			t.Fatalf("Isolated(%v) = %v, %v; naive %v, %v\n%s", a, in, out, iso1, iso2, dump(c))
		}
	}
	for _, src := range addrs {
		for _, dst := range addrs {
			for _, pr := range probes {
				f := policy.Flow{Src: src, Dst: dst, Proto: pr.proto, Port: pr.port}
				e := tb.Explain(f)
				for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
					got, decider := tb.Allows(f, dir)
					want, isolating, allowing := c.naiveVerdict(f, dir)
					v := e.Ingress
					if dir == policy.Egress {
						v = e.Egress
					}
					var wantSet []string
					if !want {
						wantSet = isolating
					} else if len(allowing) > 0 {
						wantSet = allowing[:1]
					}
					gotSet := tb.Policies(decider)
					switch {
					case len(isolating) == 0:
						st.open++
					case want:
						st.allowedByRule++
					default:
						st.denied++
					}
					if got != want || !slices.Equal(gotSet, wantSet) || v.Allowed != want || v.Decider != decider ||
						!slices.Equal(v.Policies, isolating) || !slices.Equal(ruleNames(v.Rules), allowing) {
						t.Fatalf("%v %v: Allows %v %v, Explain %v; naive %v (isolating %v, allowing %v)\n%v\n%s",
							f, dir, got, gotSet, v.Allowed, want, isolating, allowing, e, dump(c))
					}
				}
			}
		}
	}
}

// naiveStats counts the kinds of verdicts compared, to show that the
// random clusters exercise all of them.
type naiveStats struct{ open, allowedByRule, denied int }

// ruleNames returns the policies of rs, each once, in order.
func ruleNames(rs []policy.RuleMatch) []string {
	var out []string
	for _, r := range rs {
		if len(out) == 0 || out[len(out)-1] != r.Policy {
			out = append(out, r.Policy)
		}
	}
	return out
}

func dump(c *cluster) string {
	var b strings.Builder
	for _, n := range c.namespaces {
		fmt.Fprintf(&b, "namespace %s %v\n", n.Name, n.Labels)
	}
	for _, p := range c.pods {
		fmt.Fprintf(&b, "pod %s/%s %v %v %v\n", p.Namespace, p.Name, p.IP, p.Labels, p.Ports)
	}
	for _, np := range c.policies {
		y, _ := yaml.Marshal(np)
		b.WriteString("---\n" + string(y))
	}
	return b.String()
}

// valid reports whether every policy of c passes Validate.
func (c *cluster) valid() bool {
	for _, np := range c.policies {
		if len(policy.Validate(np)) > 0 {
			return false
		}
	}
	return true
}

// TestAgainstNaive compares the compiled tables with the naive evaluator on
// a few thousand random clusters.
func TestAgainstNaive(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	compared := 0
	var st naiveStats
	for seed := range uint64(n) {
		c := gen{rand.New(rand.NewPCG(seed, 7))}.cluster()
		if !c.valid() {
			policy.Compile(c.policies, c.namespaces, c.pods) // must not panic
			continue
		}
		compared++
		compareWithNaive(t, c, &st)
	}
	if compared < n/2 {
		t.Errorf("only %d of %d random clusters were valid: the generator or Validate is off", compared, n)
	}
	t.Logf("compared %d clusters: %+v", compared, st)
	if st.allowedByRule == 0 || st.denied == 0 || st.open == 0 {
		t.Errorf("the random clusters miss a kind of verdict: %+v", st)
	}
}

// FuzzAgainstNaive is TestAgainstNaive driven by the fuzzer's seeds.
func FuzzAgainstNaive(f *testing.F) {
	for i := range uint64(8) {
		f.Add(i, i*31)
	}
	f.Fuzz(func(t *testing.T, s1, s2 uint64) {
		c := gen{rand.New(rand.NewPCG(s1, s2))}.cluster()
		if !c.valid() {
			policy.Compile(c.policies, c.namespaces, c.pods)
			return
		}
		compareWithNaive(t, c, &naiveStats{})
	})
}

// corruptions each break a policy in a way the API server rejects.
var corruptions = []struct {
	name  string
	apply func(np *networkingv1.NetworkPolicy)
}{
	{"bad cidr", func(np *networkingv1.NetworkPolicy) { addPeer(np, ipBlock("10.0.0.0/33")) }},
	{"cidr with host bits", func(np *networkingv1.NetworkPolicy) { addPeer(np, ipBlock("10.0.0.1/24")) }},
	{"except outside cidr", func(np *networkingv1.NetworkPolicy) { addPeer(np, ipBlock("10.0.0.0/24", "10.0.1.0/28")) }},
	{"except equal to cidr", func(np *networkingv1.NetworkPolicy) { addPeer(np, ipBlock("10.0.0.0/24", "10.0.0.0/24")) }},
	{"bad except", func(np *networkingv1.NetworkPolicy) { addPeer(np, ipBlock("10.0.0.0/24", "nonsense")) }},
	{"ipBlock and podSelector", func(np *networkingv1.NetworkPolicy) {
		p := ipBlock("10.0.0.0/24")
		p.PodSelector = &metav1.LabelSelector{}
		addPeer(np, p)
	}},
	{"empty peer", func(np *networkingv1.NetworkPolicy) { addPeer(np, networkingv1.NetworkPolicyPeer{}) }},
	{"bad selector operator", func(np *networkingv1.NetworkPolicy) {
		addPeer(np, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near"}}}})
	}},
	{"In without values", func(np *networkingv1.NetworkPolicy) {
		np.Spec.PodSelector.MatchExpressions = append(np.Spec.PodSelector.MatchExpressions,
			metav1.LabelSelectorRequirement{Key: "app", Operator: metav1.LabelSelectorOpIn})
	}},
	{"Exists with values", func(np *networkingv1.NetworkPolicy) {
		addPeer(np, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpExists, Values: []string{"t1"}}}}})
	}},
	{"endPort below port", func(np *networkingv1.NetworkPolicy) { addPort(np, port("", 81, 80)) }},
	{"endPort without port", func(np *networkingv1.NetworkPolicy) {
		end := int32(90)
		addPort(np, networkingv1.NetworkPolicyPort{EndPort: &end})
	}},
	{"endPort with a named port", func(np *networkingv1.NetworkPolicy) {
		p := port("", 0, 90)
		v := intstr.FromString("http")
		p.Port = &v
		addPort(np, p)
	}},
	{"unknown protocol", func(np *networkingv1.NetworkPolicy) { addPort(np, port("ICMP", 80, 0)) }},
	{"port out of range", func(np *networkingv1.NetworkPolicy) { addPort(np, port("", 70000, 0)) }},
	{"port 0", func(np *networkingv1.NetworkPolicy) {
		v := intstr.FromInt32(0)
		addPort(np, networkingv1.NetworkPolicyPort{Port: &v})
	}},
	{"bad port name", func(np *networkingv1.NetworkPolicy) {
		v := intstr.FromString("-http-")
		addPort(np, networkingv1.NetworkPolicyPort{Port: &v})
	}},
	{"unknown policy type", func(np *networkingv1.NetworkPolicy) {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, "Sideways")
	}},
}

func ipBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func port(proto string, p, end int32) networkingv1.NetworkPolicyPort {
	var np networkingv1.NetworkPolicyPort
	if proto != "" {
		pr := corev1.Protocol(proto)
		np.Protocol = &pr
	}
	if p != 0 || end != 0 {
		v := intstr.FromInt32(p)
		np.Port = &v
	}
	if end != 0 {
		np.EndPort = &end
	}
	return np
}

// addPeer adds p to the first ingress rule (made if there is none).
func addPeer(np *networkingv1.NetworkPolicy, p networkingv1.NetworkPolicyPeer) {
	if len(np.Spec.Ingress) == 0 {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
	}
	np.Spec.Ingress[0].From = append(np.Spec.Ingress[0].From, p)
}

// addPort adds p to the first egress rule (made if there is none).
func addPort(np *networkingv1.NetworkPolicy, p networkingv1.NetworkPolicyPort) {
	if len(np.Spec.Egress) == 0 {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{})
	}
	np.Spec.Egress[0].Ports = append(np.Spec.Egress[0].Ports, p)
}

// TestInvalidPolicies breaks random policies in every way the API server
// rejects: Validate must reject each, and Compile, Allows and Explain must
// still work on them.
func TestInvalidPolicies(t *testing.T) {
	for seed := range uint64(200) {
		g := gen{rand.New(rand.NewPCG(seed, 11))}
		c := g.cluster()
		if len(c.policies) == 0 {
			continue
		}
		k := corruptions[int(seed)%len(corruptions)]
		np := c.policies[g.r.IntN(len(c.policies))]
		k.apply(np)
		if len(policy.Validate(np)) == 0 {
			t.Errorf("%s: Validate accepts\n%s", k.name, dump(c))
		}
		tb := policy.Compile(c.policies, c.namespaces, c.pods)
		for _, a := range c.pods {
			for _, b := range c.pods {
				f := policy.Flow{Src: a.IP, Dst: b.IP, Proto: policy.TCP, Port: 80}
				tb.Allows(f, policy.Ingress)
				tb.Allows(f, policy.Egress)
				_ = tb.Explain(f).String()
			}
		}
	}
}
