package policy

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// nsNameLabel is the label the API server puts on every namespace.
const nsNameLabel = "kubernetes.io/metadata.name"

// compiledPolicy is what the table keeps of a policy, for Explain.
type compiledPolicy struct {
	name            string // namespace/name
	ingress, egress bool   // its policy types, defaulted
	in, out         []compiledRule
}

// compiledRule is one ingress or egress rule of a policy.
type compiledRule struct {
	peer  *peerMatcher
	peers []peerDesc
	ports []portSpec // empty: every port and protocol
	// fast is the rule's port matcher when it does not depend on the pod
	// (no ports: nil); named tells that an ingress rule has named ports,
	// resolved per selected pod instead.
	fast  *portMatcher
	named bool
	dead  bool // no port can match: the rule never allows anything
}

// peerDesc is one peer of a rule, for rendering.
type peerDesc struct {
	pod, ns *selector
	ipBlock string // "10.0.0.0/8 except 10.1.0.0/16"
	invalid bool   // ipBlock with a selector, or nothing at all: matches nothing
}

// portSpec is one entry of a rule's ports.
type portSpec struct {
	proto  Protocol
	proto0 string // the protocol as written, when it is not one we know
	lo, hi uint16
	name   string // a named port
	all    bool   // no port: every port of proto
	none   bool   // matches nothing (unknown protocol, bad range)
}

type selScope struct {
	sel *selector
	ns  int32
}

// compiler holds the caches of one Compile.
type compiler struct {
	t         *Table
	nsNames   []string
	nsLabels  []map[string]string
	nsIndex   map[string]int32
	nsFirst   []int32 // pods of namespace i are t.pods[nsFirst[i]:nsFirst[i+1]]
	podLabels []map[string]string

	selectors map[string]*selector
	selPods   map[selScope][]int32
	nsMatch   map[*selector][]int32
	peers     map[string]*peerMatcher
	ports     map[string]*portMatcher
	anyPeer   *peerMatcher
	denySets  map[string]PolicySet
	scratch   bitmap
	key       []byte // scratch for peer and port keys
	listKey   []byte // scratch for rule list keys
}

// Compile builds the verdict table of policies over namespaces and pods.
// Policies are expected to be valid (see Validate), but Compile accepts
// anything without panicking: a part of a policy the API server would
// reject matches nothing (an unparsable CIDR or except, an unknown
// protocol, a malformed selector, a peer with ipBlock and a selector). nil
// policies are skipped, an empty namespace means "default", and of pods
// sharing an address the first in namespace/name order keeps it.
//
// The table keeps no reference to the arguments.
func Compile(policies []*networkingv1.NetworkPolicy, namespaces []Namespace, pods []Pod) *Table {
	c := &compiler{
		t:         &Table{},
		selectors: map[string]*selector{},
		selPods:   map[selScope][]int32{},
		nsMatch:   map[*selector][]int32{},
		peers:     map[string]*peerMatcher{},
		ports:     map[string]*portMatcher{},
		denySets:  map[string]PolicySet{},
	}
	c.anyPeer = &peerMatcher{any: true}
	pols := make([]*networkingv1.NetworkPolicy, 0, len(policies))
	for _, p := range policies {
		if p != nil {
			pols = append(pols, p)
		}
	}
	slices.SortStableFunc(pols, func(a, b *networkingv1.NetworkPolicy) int {
		if c := strings.Compare(nsOr(a.Namespace), nsOr(b.Namespace)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	c.namespaces(pols, namespaces, pods)
	c.pods(pods)
	c.policies(pols)
	return c.t
}

func nsOr(ns string) string {
	if ns == "" {
		return metav1.NamespaceDefault
	}
	return ns
}

// namespaces indexes every namespace given or named by a pod or a policy,
// sorted by name.
func (c *compiler) namespaces(pols []*networkingv1.NetworkPolicy, namespaces []Namespace, pods []Pod) {
	c.nsIndex = map[string]int32{}
	given := map[string]map[string]string{}
	for _, n := range namespaces {
		if n.Name == "" {
			continue
		}
		if _, ok := given[n.Name]; !ok {
			given[n.Name] = n.Labels
		}
		c.nsIndex[n.Name] = 0
	}
	for i := range pods {
		if pods[i].IP.IsValid() {
			c.nsIndex[nsOr(pods[i].Namespace)] = 0
		}
	}
	for _, p := range pols {
		c.nsIndex[nsOr(p.Namespace)] = 0
	}
	c.nsNames = make([]string, 0, len(c.nsIndex))
	for n := range c.nsIndex {
		c.nsNames = append(c.nsNames, n)
	}
	slices.Sort(c.nsNames)
	c.nsLabels = make([]map[string]string, len(c.nsNames))
	for i, n := range c.nsNames {
		c.nsIndex[n] = int32(i)
		l := given[n]
		if _, ok := l[nsNameLabel]; !ok {
			l2 := make(map[string]string, len(l)+1)
			for k, v := range l {
				l2[k] = v
			}
			l2[nsNameLabel] = n
			l = l2
		}
		c.nsLabels[i] = l
	}
}

// pods indexes the pods with an address, sorted by namespace and name.
func (c *compiler) pods(pods []Pod) {
	idx := make([]int, 0, len(pods))
	for i := range pods {
		if pods[i].IP.IsValid() {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		pa, pb := &pods[a], &pods[b]
		if c := strings.Compare(nsOr(pa.Namespace), nsOr(pb.Namespace)); c != 0 {
			return c
		}
		return strings.Compare(pa.Name, pb.Name)
	})
	t := c.t
	t.byV4 = make(map[uint32]int32, len(idx))
	t.byV6 = map[[16]byte]int32{}
	t.pods = make([]podEntry, 0, len(idx))
	c.podLabels = make([]map[string]string, 0, len(idx))
	c.nsFirst = make([]int32, len(c.nsNames)+1)
	for _, i := range idx {
		p := &pods[i]
		a := p.IP.Unmap()
		n := int32(len(t.pods))
		if a.Is4() {
			b := a.As4()
			k := binary.BigEndian.Uint32(b[:])
			if _, dup := t.byV4[k]; dup {
				continue
			}
			t.byV4[k] = n
		} else {
			k := a.As16()
			if _, dup := t.byV6[k]; dup {
				continue
			}
			t.byV6[k] = n
		}
		ns := nsOr(p.Namespace)
		e := podEntry{name: ns + "/" + p.Name, ns: c.nsIndex[ns], addr: a}
		if len(p.Ports) > 0 {
			e.ports = make([]NamedPort, len(p.Ports))
			for j, np := range p.Ports {
				if np.Protocol == 0 {
					np.Protocol = TCP
				}
				e.ports[j] = np
			}
		}
		t.pods = append(t.pods, e)
		c.podLabels = append(c.podLabels, p.Labels)
	}
	// Pods are grouped by namespace, in namespace index order.
	for i := range c.nsFirst {
		c.nsFirst[i] = int32(len(t.pods))
	}
	for i := len(t.pods) - 1; i >= 0; i-- {
		c.nsFirst[t.pods[i].ns] = int32(i)
	}
	for i := len(c.nsNames) - 1; i >= 0; i-- {
		if c.nsFirst[i] > c.nsFirst[i+1] {
			c.nsFirst[i] = c.nsFirst[i+1]
		}
	}
	c.scratch = newBitmap(len(t.pods))
	t.in = make([]int32, len(t.pods))
	t.out = make([]int32, len(t.pods))
}

// selector interns the compiled form of ls.
func (c *compiler) selector(ls *metav1.LabelSelector) *selector {
	s := newSelector(ls)
	if old, ok := c.selectors[s.key]; ok {
		return old
	}
	c.selectors[s.key] = s
	return s
}

// podsOf returns the pods of namespace ns that sel selects, in order.
func (c *compiler) podsOf(sel *selector, ns int32) []int32 {
	k := selScope{sel, ns}
	if l, ok := c.selPods[k]; ok {
		return l
	}
	var l []int32
	for i := c.nsFirst[ns]; i < c.nsFirst[ns+1]; i++ {
		if sel.matches(c.podLabels[i]) {
			l = append(l, i)
		}
	}
	c.selPods[k] = l
	return l
}

// namespacesOf returns the namespaces sel selects.
func (c *compiler) namespacesOf(sel *selector) []int32 {
	if l, ok := c.nsMatch[sel]; ok {
		return l
	}
	l := []int32{}
	for i, labels := range c.nsLabels {
		if sel.matches(labels) {
			l = append(l, int32(i))
		}
	}
	c.nsMatch[sel] = l
	return l
}

// policies compiles every policy and then every pod's rule lists.
func (c *compiler) policies(pols []*networkingv1.NetworkPolicy) {
	t := c.t
	t.policies = make([]compiledPolicy, len(pols))
	t.sets = make([][]string, 1, 1+len(pols))
	names := make([]string, len(pols))
	polIn := make([][]int32, len(t.pods))
	polOut := make([][]int32, len(t.pods))
	for pi, np := range pols {
		ns := c.nsIndex[nsOr(np.Namespace)]
		cp := &t.policies[pi]
		cp.name = nsOr(np.Namespace) + "/" + np.Name
		names[pi] = cp.name
		cp.ingress, cp.egress = policyTypes(&np.Spec)
		if cp.ingress {
			cp.in = make([]compiledRule, len(np.Spec.Ingress))
			for i := range np.Spec.Ingress {
				r := &np.Spec.Ingress[i]
				c.rule(&cp.in[i], ns, r.From, r.Ports, Ingress)
			}
		}
		if cp.egress {
			cp.out = make([]compiledRule, len(np.Spec.Egress))
			for i := range np.Spec.Egress {
				r := &np.Spec.Egress[i]
				c.rule(&cp.out[i], ns, r.To, r.Ports, Egress)
			}
		}
		if !cp.ingress && !cp.egress {
			continue
		}
		sel := c.selector(&np.Spec.PodSelector)
		for _, p := range c.podsOf(sel, ns) {
			if cp.ingress {
				polIn[p] = append(polIn[p], int32(pi))
			}
			if cp.egress {
				polOut[p] = append(polOut[p], int32(pi))
			}
		}
	}
	for i := range names {
		t.sets = append(t.sets, names[i:i+1:i+1])
	}
	lists := map[string]int32{}
	for p := range t.pods {
		t.in[p] = c.ruleList(lists, polIn[p], Ingress, int32(p))
		t.out[p] = c.ruleList(lists, polOut[p], Egress, int32(p))
	}
}

// policyTypes returns the policy types of spec, defaulted as the API server
// does when none is given: Ingress, and Egress when there are egress rules.
// Unknown types are ignored.
func policyTypes(spec *networkingv1.NetworkPolicySpec) (ingress, egress bool) {
	if len(spec.PolicyTypes) == 0 {
		return true, len(spec.Egress) > 0
	}
	for _, pt := range spec.PolicyTypes {
		switch pt {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

// rule compiles one rule of a policy of namespace ns into r.
func (c *compiler) rule(r *compiledRule, ns int32, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, dir Direction) {
	r.peers = make([]peerDesc, len(peers))
	for i := range peers {
		r.peers[i] = c.peerDesc(&peers[i])
	}
	r.peer = c.peerMatcher(ns, peers, r.peers)
	if len(ports) == 0 {
		return
	}
	r.ports = make([]portSpec, len(ports))
	for i := range ports {
		r.ports[i] = newPortSpec(&ports[i])
		if r.ports[i].name != "" && !r.ports[i].none && dir == Ingress {
			r.named = true
		}
	}
	if !r.named {
		r.fast = c.portMatcher(r.ports, nil, dir == Egress)
		r.dead = r.fast == nil
	}
}

func (c *compiler) peerDesc(p *networkingv1.NetworkPolicyPeer) peerDesc {
	var d peerDesc
	if p.PodSelector != nil {
		d.pod = c.selector(p.PodSelector)
	}
	if p.NamespaceSelector != nil {
		d.ns = c.selector(p.NamespaceSelector)
	}
	if b := p.IPBlock; b != nil {
		d.ipBlock = b.CIDR
		if len(b.Except) > 0 {
			d.ipBlock += " except " + strings.Join(b.Except, ",")
		}
		d.invalid = d.pod != nil || d.ns != nil
	} else if d.pod == nil && d.ns == nil {
		d.invalid = true
	}
	return d
}

// peerMatcher interns the union of the peers of a rule of namespace ns.
func (c *compiler) peerMatcher(ns int32, peers []networkingv1.NetworkPolicyPeer, descs []peerDesc) *peerMatcher {
	if len(peers) == 0 {
		return c.anyPeer
	}
	k := c.key[:0]
	for i, d := range descs {
		switch {
		case d.invalid:
			k = append(k, 'X')
		case d.ipBlock != "":
			b := peers[i].IPBlock
			k = append(k, 'I')
			k = appendLen(k, b.CIDR)
			for _, e := range b.Except {
				k = appendLen(k, e)
			}
			k = append(k, 0, 0, 0, 0)
		case d.ns != nil:
			k = append(k, 'N')
			k = appendLen(k, d.ns.key)
			if d.pod != nil {
				k = appendLen(k, d.pod.key)
			} else {
				k = append(k, 0xff, 0xff, 0xff, 0xff)
			}
		default:
			k = append(k, 'P')
			k = binary.BigEndian.AppendUint32(k, uint32(ns))
			k = appendLen(k, d.pod.key)
		}
	}
	c.key = k
	if m, ok := c.peers[string(k)]; ok {
		return m
	}
	m := &peerMatcher{}
	c.peers[string(k)] = m
	c.scratch.clear()
	var v4, v6 []ipRange
	for i, d := range descs {
		switch {
		case d.invalid:
		case d.ipBlock != "":
			r4, r6 := ipBlockRanges(peers[i].IPBlock)
			v4, v6 = append(v4, r4...), append(v6, r6...)
		case d.ns != nil:
			pod := d.pod
			for _, n := range c.namespacesOf(d.ns) {
				if pod == nil || pod.everything() {
					for p := c.nsFirst[n]; p < c.nsFirst[n+1]; p++ {
						c.scratch.add(p)
					}
					continue
				}
				for _, p := range c.podsOf(pod, n) {
					c.scratch.add(p)
				}
			}
		default:
			for _, p := range c.podsOf(d.pod, ns) {
				c.scratch.add(p)
			}
		}
	}
	m.pods = c.scratch.podSet(len(c.t.pods))
	for _, r := range mergeRanges(v4) {
		m.addrs.v4 = append(m.addrs.v4, v4Range{uint32(r.lo.lo), uint32(r.hi.lo)})
	}
	m.addrs.v6 = mergeRanges(v6)
	return m
}

func appendLen(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// ipBlockRanges returns the addresses of b, its cidr minus its excepts, as
// IPv4 and IPv6 ranges. An unparsable cidr or except makes the block empty:
// a broken except must not widen what the block matches.
func ipBlockRanges(b *networkingv1.IPBlock) (v4, v6 []ipRange) {
	p, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return nil, nil
	}
	rs := []ipRange{prefixRange(p)}
	for _, e := range b.Except {
		x, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, nil
		}
		if x.Addr().Is4() != p.Addr().Is4() {
			continue
		}
		rs = subtract(rs, prefixRange(x))
	}
	if p.Addr().Is4() {
		return rs, nil
	}
	return nil, rs
}

// newPortSpec compiles one entry of a rule's ports.
func newPortSpec(p *networkingv1.NetworkPolicyPort) portSpec {
	s := portSpec{proto: TCP}
	if p.Protocol != nil {
		switch *p.Protocol {
		case corev1.ProtocolTCP:
		case corev1.ProtocolUDP:
			s.proto = UDP
		case corev1.ProtocolSCTP:
			s.proto = SCTP
		default:
			s.proto, s.proto0, s.none = 0, string(*p.Protocol), true
		}
	}
	switch {
	case p.Port == nil:
		s.all, s.lo, s.hi = true, 0, 65535
	case p.Port.Type == intstr.String:
		s.name = p.Port.StrVal
		if s.name == "" {
			s.none = true
		}
	default:
		lo, hi := int64(p.Port.IntVal), int64(p.Port.IntVal)
		if p.EndPort != nil {
			hi = int64(*p.EndPort)
		}
		hi = min(hi, 65535)
		if lo < 0 || lo > hi {
			s.none = true
		} else {
			s.lo, s.hi = uint16(lo), uint16(hi)
		}
	}
	return s
}

// portMatcher interns the matcher of specs. Named ports resolve against
// pod when it is not nil; otherwise they are kept as names when keepNamed
// (egress) and dropped when not. It returns nil when nothing can match.
func (c *compiler) portMatcher(specs []portSpec, pod *podEntry, keepNamed bool) *portMatcher {
	var ranges []portRange
	var named []namedRef
	for _, s := range specs {
		switch {
		case s.none:
		case s.name == "":
			ranges = append(ranges, portRange{s.proto, s.lo, s.hi})
		case pod != nil:
			for _, p := range pod.ports {
				if p.Name == s.name && p.Protocol == s.proto {
					ranges = append(ranges, portRange{s.proto, p.Port, p.Port})
				}
			}
		case keepNamed:
			named = append(named, namedRef{s.proto, s.name})
		}
	}
	if len(ranges) == 0 && len(named) == 0 {
		return nil
	}
	slices.SortFunc(ranges, func(a, b portRange) int {
		if a.proto != b.proto {
			return cmp.Compare(a.proto, b.proto)
		}
		return cmp.Compare(a.lo, b.lo)
	})
	merged := ranges[:0]
	for _, r := range ranges {
		if n := len(merged); n > 0 && merged[n-1].proto == r.proto && int(r.lo) <= int(merged[n-1].hi)+1 {
			merged[n-1].hi = max(merged[n-1].hi, r.hi)
			continue
		}
		merged = append(merged, r)
	}
	slices.SortFunc(named, func(a, b namedRef) int {
		if a.proto != b.proto {
			return cmp.Compare(a.proto, b.proto)
		}
		return strings.Compare(a.name, b.name)
	})
	named = slices.Compact(named)
	k := c.key[:0]
	for _, r := range merged {
		k = append(k, byte(r.proto), byte(r.lo>>8), byte(r.lo), byte(r.hi>>8), byte(r.hi))
	}
	for _, n := range named {
		k = append(k, 0, byte(n.proto))
		k = appendLen(k, n.name)
	}
	c.key = k
	if m, ok := c.ports[string(k)]; ok {
		return m
	}
	m := &portMatcher{id: int32(len(c.ports) + 1), ranges: slices.Clip(merged), named: slices.Clip(named)}
	c.ports[string(k)] = m
	return m
}

// ruleList returns the index of the rule list of pod p isolated in
// direction dir by the policies pols (in order), building and interning it;
// -1 if pols is empty.
func (c *compiler) ruleList(lists map[string]int32, pols []int32, dir Direction, p int32) int32 {
	if len(pols) == 0 {
		return -1
	}
	t := c.t
	pod := &t.pods[p]
	// The list depends on the policies, and for ingress rules with named
	// ports on the pod's ports too.
	k := c.listKey[:0]
	k = append(k, byte(dir))
	named := false
	for _, pi := range pols {
		k = binary.BigEndian.AppendUint32(k, uint32(pi))
		if dir == Ingress {
			for i := range t.policies[pi].in {
				named = named || t.policies[pi].in[i].named
			}
		}
	}
	polsEnd := len(k)
	var resolved []*portMatcher
	if named {
		for _, pi := range pols {
			for i := range t.policies[pi].in {
				r := &t.policies[pi].in[i]
				if !r.named {
					continue
				}
				m := c.portMatcher(r.ports, pod, false)
				resolved = append(resolved, m)
				id := int32(-1)
				if m != nil {
					id = m.id
				}
				k = binary.BigEndian.AppendUint32(k, uint32(id))
			}
		}
	}
	c.listKey = k
	if l, ok := lists[string(k)]; ok {
		return l
	}
	key := string(k)
	l := ruleList{policies: slices.Clone(pols)}
	// The deny set: the same policies give the same set, whatever the
	// direction.
	if s, ok := c.denySets[key[1:polsEnd]]; ok {
		l.deny = s
	} else {
		names := make([]string, len(pols))
		for i, pi := range pols {
			names[i] = t.policies[pi].name
		}
		l.deny = PolicySet(len(t.sets))
		t.sets = append(t.sets, names)
		c.denySets[key[1:polsEnd]] = l.deny
	}
	type ruleKey struct {
		peer  *peerMatcher
		ports *portMatcher
	}
	seen := map[ruleKey]bool{}
	ri := 0
rules:
	for _, pi := range pols {
		rs := t.policies[pi].out
		if dir == Ingress {
			rs = t.policies[pi].in
		}
		for i := range rs {
			r := &rs[i]
			ports := r.fast
			if r.named {
				ports = resolved[ri]
				ri++
				if ports == nil {
					continue
				}
			} else if r.dead {
				continue
			}
			if r.peer.empty() {
				continue
			}
			if seen[ruleKey{r.peer, ports}] {
				// An equal rule of an earlier policy decides first.
				continue
			}
			seen[ruleKey{r.peer, ports}] = true
			l.rules = append(l.rules, rule{ports: ports, peer: r.peer, policy: pi})
			if ports == nil && r.peer.any {
				// Everything matches here: later rules are never reached.
				break rules
			}
		}
	}
	l.rules = slices.Clip(l.rules)
	n := int32(len(t.lists))
	t.lists = append(t.lists, l)
	lists[key] = n
	return n
}

// empty reports whether m can match no address.
func (m *peerMatcher) empty() bool { return !m.any && m.pods.empty() && m.addrs.empty() }
