package policy

import (
	"encoding/binary"
	"net/netip"
)

// Table is the compiled verdict table of a set of policies over a set of
// pods. It is immutable: build a new one with Compile on every change and
// swap it in (an atomic.Pointer), so that every method is safe for
// concurrent use. A nil *Table allows everything and isolates nothing.
type Table struct {
	pods []podEntry // sorted by namespace and name; a pod's index is its place here
	byV4 map[uint32]int32
	byV6 map[[16]byte]int32

	// in and out give, per pod index, the rule list of the pod's ingress
	// and egress isolation (an index into lists), or -1 when the pod is not
	// isolated in that direction.
	in, out []int32
	lists   []ruleList

	policies []compiledPolicy // sorted by namespace and name
	// sets[s] are the names of PolicySet s: sets[0] is empty, sets[i+1] is
	// policy i alone, the rest are the isolating sets of the rule lists.
	sets [][]string
}

// podEntry is what the table keeps of a pod.
type podEntry struct {
	name  string // namespace/name
	ns    int32  // namespace index of the compiler
	addr  netip.Addr
	ports []NamedPort // protocols normalized: never 0
}

// ruleList is the verdict of one pod in one direction: the rules of the
// policies that isolate it, in policy and rule order, named ports resolved
// for ingress. Pods with the same list share it.
type ruleList struct {
	rules    []rule
	policies []int32   // the isolating policies, in order
	deny     PolicySet // the set of policies, reported for a denial
}

// rule is one rule of one policy, in the form the packet path scans.
type rule struct {
	ports  *portMatcher // nil: every port and protocol
	peer   *peerMatcher
	policy int32
}

// portMatcher is the ports list of a rule.
type portMatcher struct {
	id     int32
	ranges []portRange
	named  []namedRef // egress only: resolved against the destination pod
}

type portRange struct {
	proto  Protocol
	lo, hi uint16
}

type namedRef struct {
	proto Protocol
	name  string
}

func (m *portMatcher) match(proto Protocol, port uint16, dst *podEntry) bool {
	for i := range m.ranges {
		r := &m.ranges[i]
		if r.proto == proto && r.lo <= port && port <= r.hi {
			return true
		}
	}
	if dst != nil {
		for i := range m.named {
			n := &m.named[i]
			if n.proto != proto {
				continue
			}
			for j := range dst.ports {
				p := &dst.ports[j]
				if p.Port == port && p.Protocol == proto && p.Name == n.name {
					return true
				}
			}
		}
	}
	return false
}

// peerMatcher is the union of a rule's peers.
type peerMatcher struct {
	any   bool // no peers: every address
	pods  podSet
	addrs addrSet
}

// match reports whether the peer address a, the pod with index pod (-1 if
// a is not a pod), is one of m's.
func (m *peerMatcher) match(pod int32, a netip.Addr) bool {
	if m.any || m.pods.has(pod) {
		return true
	}
	if a.Is4() {
		if len(m.addrs.v4) == 0 {
			return false
		}
		b := a.As4()
		return m.addrs.has4(binary.BigEndian.Uint32(b[:]))
	}
	return len(m.addrs.v6) > 0 && m.addrs.has6(addrU128(a))
}

// lookup returns the index of the pod with address a (unmapped), or -1.
func (t *Table) lookup(a netip.Addr) int32 {
	if a.Is4() {
		b := a.As4()
		if i, ok := t.byV4[binary.BigEndian.Uint32(b[:])]; ok {
			return i
		}
		return -1
	}
	if i, ok := t.byV6[a.As16()]; ok {
		return i
	}
	return -1
}

// Isolated reports whether the pod with address a is isolated for ingress
// and for egress: selected by some policy with that policy type. Addresses
// that are not pods are never isolated.
func (t *Table) Isolated(a netip.Addr) (ingress, egress bool) {
	if t == nil {
		return false, false
	}
	i := t.lookup(a.Unmap())
	if i < 0 {
		return false, false
	}
	return t.in[i] >= 0, t.out[i] >= 0
}

// Allows decides the new flow f in direction dir. Egress judges f against
// the policies that isolate f.Src for egress; Ingress against those that
// isolate f.Dst for ingress. A flow is allowed with decider 0 when the pod
// judged is not isolated in that direction (or is not a pod at all), and
// when it goes from a pod to itself (a pod cannot block access to itself).
// Otherwise it is allowed when a rule of one of those policies matches it:
// decider is then the set holding the first such policy, in namespace/name
// order; or denied, and decider is the set of all the isolating policies.
//
// Allows neither allocates nor locks: it looks the pod up by address and
// scans its rule list.
func (t *Table) Allows(f Flow, dir Direction) (allowed bool, decider PolicySet) {
	if t == nil {
		return true, 0
	}
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	if src == dst {
		return true, 0
	}
	var judged, peer netip.Addr
	var lists []int32
	if dir == Egress {
		judged, peer, lists = src, dst, t.out
	} else {
		judged, peer, lists = dst, src, t.in
	}
	self := t.lookup(judged)
	if self < 0 || lists[self] < 0 {
		return true, 0
	}
	l := &t.lists[lists[self]]
	peerPod := t.lookup(peer)
	// Named ports resolve against the destination: for ingress they were
	// resolved at Compile, for egress the destination is the peer.
	var dstPod *podEntry
	if dir == Egress && peerPod >= 0 {
		dstPod = &t.pods[peerPod]
	}
	for i := range l.rules {
		r := &l.rules[i]
		if r.ports != nil && !r.ports.match(f.Proto, f.Port, dstPod) {
			continue
		}
		if r.peer.match(peerPod, peer) {
			return true, PolicySet(r.policy + 1)
		}
	}
	return false, l.deny
}

// Policies returns the "namespace/name"s of the policies in s, in order;
// nil for 0 or a set t does not know. The slice is the table's own: callers
// must not modify it (so that counting denials per policy allocates
// nothing).
func (t *Table) Policies(s PolicySet) []string {
	if t == nil || int(s) >= len(t.sets) {
		return nil
	}
	return t.sets[s]
}

// Stats are the sizes of a Table.
type Stats struct {
	Pods, Policies int
	// IsolatedIngress and IsolatedEgress count the pods isolated in each
	// direction.
	IsolatedIngress, IsolatedEgress int
	// RuleLists counts the distinct per-pod rule lists (pods with equal
	// lists share one) and Rules the rules in them.
	RuleLists, Rules int
}

// Stats returns the sizes of t.
func (t *Table) Stats() Stats {
	if t == nil {
		return Stats{}
	}
	s := Stats{Pods: len(t.pods), Policies: len(t.policies), RuleLists: len(t.lists)}
	for i := range t.pods {
		if t.in[i] >= 0 {
			s.IsolatedIngress++
		}
		if t.out[i] >= 0 {
			s.IsolatedEgress++
		}
	}
	for i := range t.lists {
		s.Rules += len(t.lists[i].rules)
	}
	return s
}
