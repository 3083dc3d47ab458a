package policy

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Explanation is the verdict on a flow in both directions, with the
// policies and rules behind it: what `podnet policy explain` prints.
type Explanation struct {
	Flow    Flow
	Egress  Verdict // at the source
	Ingress Verdict // at the destination
}

// Allowed is the overall verdict: the flow passes only when both
// directions allow it.
func (e Explanation) Allowed() bool { return e.Egress.Allowed && e.Ingress.Allowed }

// Verdict is the decision of one direction on a flow.
type Verdict struct {
	Direction Direction
	// Addr is the address judged: the source for Egress, the destination
	// for Ingress. Pod is its pod's "namespace/name", "" when it is not a
	// pod.
	Addr netip.Addr
	Pod  string
	// Self tells that the flow goes from a pod to itself, which is always
	// allowed.
	Self bool
	// Isolated tells that policies select the pod for this direction;
	// Policies names them, in namespace/name order.
	Isolated bool
	Policies []string
	Allowed  bool
	// Rules are the rules that allow the flow, in policy and rule order;
	// empty when the pod is not isolated or nothing allowed the flow. The
	// policy of the first is the one Allows reports.
	Rules []RuleMatch
	// Decider is what Allows returns for this direction.
	Decider PolicySet
}

// RuleMatch names one rule of a policy.
type RuleMatch struct {
	Policy string // namespace/name
	Index  int    // in spec.ingress or spec.egress
	// Rule renders the rule: "egress[1]: to podSelector{app=db} ports TCP/5432".
	Rule string
}

// Explain returns the verdicts on f in both directions and the policies and
// rules that decided them. It agrees with Allows but is not meant for the
// packet path: it allocates, and it reports every allowing rule.
func (t *Table) Explain(f Flow) Explanation {
	e := Explanation{Flow: f}
	e.Egress = t.verdict(f, Egress)
	e.Ingress = t.verdict(f, Ingress)
	return e
}

func (t *Table) verdict(f Flow, dir Direction) Verdict {
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	judged, peer := dst, src
	if dir == Egress {
		judged, peer = src, dst
	}
	v := Verdict{Direction: dir, Addr: judged, Allowed: true}
	if t == nil {
		return v
	}
	self := t.lookup(judged)
	if self >= 0 {
		v.Pod = t.pods[self].name
	}
	if src == dst {
		v.Self = true
		return v
	}
	lists := t.in
	if dir == Egress {
		lists = t.out
	}
	if self < 0 || lists[self] < 0 {
		return v
	}
	l := &t.lists[lists[self]]
	v.Isolated = true
	v.Policies = slices.Clone(t.sets[l.deny])
	peerPod := t.lookup(peer)
	dstPod := &t.pods[self]
	if dir == Egress {
		dstPod = nil
		if peerPod >= 0 {
			dstPod = &t.pods[peerPod]
		}
	}
	first := int32(-1)
	for _, pi := range l.policies {
		p := &t.policies[pi]
		rules := p.in
		if dir == Egress {
			rules = p.out
		}
		for i := range rules {
			r := &rules[i]
			if r.matches(f.Proto, f.Port, dstPod, peerPod, peer) {
				v.Rules = append(v.Rules, RuleMatch{Policy: p.name, Index: i, Rule: r.render(dir, i)})
				if first < 0 {
					first = pi
				}
			}
		}
	}
	v.Allowed = len(v.Rules) > 0
	if v.Allowed {
		v.Decider = PolicySet(first + 1)
	} else {
		v.Decider = l.deny
	}
	return v
}

// matches evaluates r directly from its specs (named ports resolved
// against dst), without the per-pod rule lists.
func (r *compiledRule) matches(proto Protocol, port uint16, dst *podEntry, peerPod int32, peer netip.Addr) bool {
	if len(r.ports) > 0 {
		ok := false
		for i := range r.ports {
			if r.ports[i].matches(proto, port, dst) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return r.peer.match(peerPod, peer)
}

func (s *portSpec) matches(proto Protocol, port uint16, dst *podEntry) bool {
	if s.none || s.proto != proto {
		return false
	}
	if s.name != "" {
		if dst == nil {
			return false
		}
		for _, p := range dst.ports {
			if p.Name == s.name && p.Protocol == proto && p.Port == port {
				return true
			}
		}
		return false
	}
	return s.lo <= port && port <= s.hi
}

// render returns a short rendering of rule i of direction dir, as
// "egress[1]: to podSelector{app=db} ports TCP/5432".
func (r *compiledRule) render(dir Direction, i int) string {
	var b strings.Builder
	b.WriteString(dir.String() + "[" + strconv.Itoa(i) + "]: ")
	if dir == Egress {
		b.WriteString("to ")
	} else {
		b.WriteString("from ")
	}
	if len(r.peers) == 0 {
		b.WriteString("anywhere")
	}
	for j, p := range r.peers {
		if j > 0 {
			b.WriteString(" or ")
		}
		switch {
		case p.ipBlock != "" && !p.invalid:
			b.WriteString("ipBlock{" + p.ipBlock + "}")
		case p.invalid:
			b.WriteString("<invalid peer>")
		case p.ns != nil && p.pod != nil:
			b.WriteString("namespaceSelector{" + p.ns.text + "} and podSelector{" + p.pod.text + "}")
		case p.ns != nil:
			b.WriteString("namespaceSelector{" + p.ns.text + "}")
		default:
			b.WriteString("podSelector{" + p.pod.text + "}")
		}
	}
	if len(r.ports) == 0 {
		b.WriteString(" on all ports")
		return b.String()
	}
	b.WriteString(" ports ")
	for j, s := range r.ports {
		if j > 0 {
			b.WriteString(", ")
		}
		if s.proto0 != "" {
			b.WriteString(s.proto0)
		} else {
			b.WriteString(s.proto.String())
		}
		switch {
		case s.name != "":
			b.WriteString("/" + s.name)
		case s.all:
		case s.none:
			b.WriteString("/<invalid>")
		case s.lo == s.hi:
			b.WriteString("/" + strconv.Itoa(int(s.lo)))
		default:
			b.WriteString("/" + strconv.Itoa(int(s.lo)) + "-" + strconv.Itoa(int(s.hi)))
		}
	}
	return b.String()
}

// String renders e as a readable report, one line per fact:
//
//	10.244.0.5 -> 10.244.1.7:5432/TCP: denied
//	  egress at x/a (10.244.0.5): isolated by x/default-deny, x/allow-dns
//	    denied: no rule of these policies matches
//	  ingress at y/db (10.244.1.7): not isolated: allowed
func (e Explanation) String() string {
	var b strings.Builder
	b.WriteString(e.Flow.String() + ": " + allowedWord(e.Allowed()) + "\n")
	for _, v := range []*Verdict{&e.Egress, &e.Ingress} {
		b.WriteString("  " + v.Direction.String() + " at ")
		if v.Pod != "" {
			b.WriteString(v.Pod + " (" + v.Addr.String() + ")")
		} else {
			b.WriteString(v.Addr.String() + " (not a pod)")
		}
		switch {
		case v.Self:
			b.WriteString(": a pod's traffic to itself: allowed\n")
			continue
		case !v.Isolated:
			b.WriteString(": not isolated: allowed\n")
			continue
		}
		b.WriteString(": isolated by " + strings.Join(v.Policies, ", ") + "\n")
		if !v.Allowed {
			b.WriteString("    denied: no rule of these policies matches\n")
			continue
		}
		for _, r := range v.Rules {
			b.WriteString("    allowed by " + r.Policy + " " + r.Rule + "\n")
		}
	}
	return b.String()
}

func allowedWord(ok bool) string {
	if ok {
		return "allowed"
	}
	return "denied"
}
