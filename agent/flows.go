package agent

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podnet/podnet/stack"
	corev1 "k8s.io/api/core/v1"
)

// The flow log: every new flow the node's data path saw (stack.FlowObserver), named — pods as
// namespace/name, Services as namespace/name:port — with its verdict and the policies that
// decided it. It keeps the latest FlowLogSize flows in a ring and hands each new one to its
// followers (`podnet flows --follow`); a follower that does not keep up loses flows, counted, and
// never slows the data path.

// FlowLogSize is how many of the latest flows each agent keeps.
const FlowLogSize = 4096

// Where a node saw a flow (FlowRecord.Direction).
const (
	// FlowEgress: sent by a pod of the node.
	FlowEgress = "egress"
	// FlowIngress: arrived from another node for a pod of this one.
	FlowIngress = "ingress"
	// FlowFromNode: opened by the node itself for a NodePort, a hostPort or the Ingress.
	FlowFromNode = "node"
)

// FlowRecord is one new flow: a TCP connection attempt, or the first datagram of a UDP or SCTP
// flow.
type FlowRecord struct {
	Time      time.Time `json:"time"`
	Node      string    `json:"node"`
	Direction string    `json:"direction"` // FlowEgress, FlowIngress or FlowFromNode
	Protocol  string    `json:"protocol"`  // TCP, UDP, SCTP
	// Source and Dest are the pods' namespace/name, or the address when it is no pod; Dest is the
	// backend when a Service translated the flow.
	Source     string `json:"source"`
	SourceIP   string `json:"sourceIP"`
	SourcePort uint16 `json:"sourcePort"`
	Dest       string `json:"dest"`
	DestIP     string `json:"destIP"`
	Port       uint16 `json:"port"` // the destination port (the backend's, after translation)
	// Service is the Service the client addressed (namespace/name:port), ServiceIP its address
	// and port; both empty when it addressed no Service.
	Service   string `json:"service,omitempty"`
	ServiceIP string `json:"serviceIP,omitempty"`
	// Verdict is forwarded, denied, no-endpoint (a Service without a ready endpoint: refused) or
	// dropped (the connection-tracking table was full).
	Verdict string `json:"verdict"`
	Allowed bool   `json:"allowed"` // not denied by NetworkPolicy
	// Policies are the NetworkPolicies that decided: those that allowed it, or those that
	// isolated the pod and allowed nothing. DeniedBy says whose side denied: "Egress" (the
	// source's) or "Ingress" (the destination's).
	Policies []string `json:"policies,omitempty"`
	DeniedBy string   `json:"deniedBy,omitempty"`
}

// flowNames are the names the flow log gives addresses: pods and Services.
type flowNames struct {
	pods     map[netip.Addr]string     // pod address → namespace/name
	services map[netip.AddrPort]string // ClusterIP:port → namespace/name:port
}

// flowLog is an agent's ring of its latest flows, its followers and its verdict counters.
type flowLog struct {
	node  string
	names atomic.Pointer[flowNames]

	mu        sync.Mutex
	ring      []FlowRecord                   // guarded by mu
	next      int                            // guarded by mu: where the next record goes once ring is full
	followers map[*FlowFollower]struct{}     // guarded by mu
	verdicts  map[policyVerdict]uint64       // guarded by mu: flows judged, by policy and verdict
	seen      [flowVerdicts]uint64           // guarded by mu: flows by verdict
	namesOf   struct{ pods, services []any } // owned by Run: what the names were made from
}

// flowVerdicts is the number of flow verdicts (stack.FlowVerdict values).
const flowVerdicts = 4

// policyVerdict keys the per-policy counters.
type policyVerdict struct {
	policy  string
	allowed bool
}

// observe is the stack's FlowObserver: it names ev and keeps it.
func (l *flowLog) observe(ev *stack.FlowEvent) {
	r := l.record(ev)
	l.mu.Lock()
	defer l.mu.Unlock()
	if int(ev.Verdict) < len(l.seen) {
		l.seen[ev.Verdict]++
	}
	if ev.Filter != nil {
		if l.verdicts == nil {
			l.verdicts = map[policyVerdict]uint64{}
		}
		for _, p := range r.Policies {
			l.verdicts[policyVerdict{p, r.Allowed}]++
		}
	}
	if len(l.ring) < FlowLogSize {
		l.ring = append(l.ring, r)
	} else {
		l.ring[l.next] = r
		l.next = (l.next + 1) % FlowLogSize
	}
	for f := range l.followers {
		select {
		case f.c <- r:
		default:
			f.lost.Add(1)
		}
	}
}

// record names the flow ev.
func (l *flowLog) record(ev *stack.FlowEvent) FlowRecord {
	names := l.names.Load()
	if names == nil {
		names = &flowNames{}
	}
	r := FlowRecord{
		Time:       ev.Time,
		Node:       l.node,
		Protocol:   protoName(ev.Proto),
		Source:     names.pod(ev.Src.Addr()),
		SourceIP:   ev.Src.Addr().String(),
		SourcePort: ev.Src.Port(),
		Dest:       names.pod(ev.Dst.Addr()),
		DestIP:     ev.Dst.Addr().String(),
		Port:       ev.Dst.Port(),
		Verdict:    ev.Verdict.String(),
		Allowed:    ev.Verdict != stack.FlowDenied,
	}
	switch ev.Point {
	case stack.FlowFromPod:
		r.Direction = FlowEgress
	case stack.FlowFromOverlay:
		r.Direction = FlowIngress
	default:
		r.Direction = FlowFromNode
	}
	if ev.Service.IsValid() {
		r.ServiceIP = ev.Service.String()
		r.Service = names.services[ev.Service]
		if r.Service == "" {
			r.Service = r.ServiceIP
		}
	}
	if pf, ok := ev.Filter.(*policyFilter); ok {
		var sets []uint32
		switch {
		case r.Allowed:
			if ev.EgressJudged {
				sets = append(sets, ev.EgressDecider)
			}
			if ev.IngressJudged {
				sets = append(sets, ev.IngressDecider)
			}
		case ev.DeniedEgress:
			sets, r.DeniedBy = []uint32{ev.EgressDecider}, "Egress"
		default:
			sets, r.DeniedBy = []uint32{ev.IngressDecider}, "Ingress"
		}
		for _, s := range sets {
			for _, p := range pf.policies(s) {
				if !slices.Contains(r.Policies, p) {
					r.Policies = append(r.Policies, p)
				}
			}
		}
	}
	return r
}

func (n *flowNames) pod(a netip.Addr) string {
	if name, ok := n.pods[a]; ok {
		return name
	}
	return a.String()
}

// setNames makes the names of pods and Services (and of the node's own interface, nodeLink, if
// valid), when pods or Services changed since the last call. It is called by Run's goroutine.
func (l *flowLog) setNames(pods []*corev1.Pod, services []*corev1.Service, nodeLink netip.Addr) {
	if sameObjects(l.namesOf.pods, pods) && sameObjects(l.namesOf.services, services) && l.names.Load() != nil {
		return
	}
	l.namesOf.pods, l.namesOf.services = asAny(pods), asAny(services)
	n := &flowNames{pods: make(map[netip.Addr]string, len(pods)), services: map[netip.AddrPort]string{}}
	if nodeLink.IsValid() {
		// The node's own interface to its pods: the kubelet's probes, hostNetwork pods.
		n.pods[nodeLink] = "host:" + l.node
	}
	for _, p := range pods {
		if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil && !isTerminal(p) && !p.Spec.HostNetwork {
			n.pods[ip] = p.Namespace + "/" + p.Name
		}
	}
	for _, s := range services {
		for _, ipStr := range s.Spec.ClusterIPs {
			ip, err := netip.ParseAddr(ipStr)
			if err != nil {
				continue
			}
			for _, sp := range s.Spec.Ports {
				name := sp.Name
				if name == "" {
					name = strconv.Itoa(int(sp.Port))
				}
				n.services[netip.AddrPortFrom(ip, uint16(sp.Port))] = s.Namespace + "/" + s.Name + ":" + name
			}
		}
	}
	l.names.Store(n)
}

func asAny[T any](s []*T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// sameObjects reports whether old holds the same pointers as cur, in order (a changed object
// is a new object: see Source).
func sameObjects[T any](old []any, cur []*T) bool {
	if len(old) != len(cur) {
		return false
	}
	for i, v := range cur {
		if p, ok := old[i].(*T); !ok || p != v {
			return false
		}
	}
	return true
}

// records returns the kept flows, oldest first.
func (l *flowLog) records() []FlowRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]FlowRecord, 0, len(l.ring))
	out = append(out, l.ring[l.next:]...)
	return append(out, l.ring[:l.next]...)
}

// deniedByPolicy returns the flows denied, per policy.
func (l *flowLog) deniedByPolicy() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[string]uint64{}
	for k, v := range l.verdicts {
		if !k.allowed {
			m[k.policy] += v
		}
	}
	return m
}

// verdictsByPolicy returns the flows NetworkPolicy judged, per policy and verdict ("allowed",
// "denied").
func (l *flowLog) verdictsByPolicy() map[[2]string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[[2]string]uint64, len(l.verdicts))
	for k, v := range l.verdicts {
		verdict := "denied"
		if k.allowed {
			verdict = "allowed"
		}
		m[[2]string{k.policy, verdict}] = v
	}
	return m
}

// flowsByVerdict returns the flows seen, by verdict.
func (l *flowLog) flowsByVerdict() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]uint64, len(l.seen))
	for i, v := range l.seen {
		m[stack.FlowVerdict(i).String()] = v
	}
	return m
}

// FlowFollower receives an agent's new flows as they come (Agent.FollowFlows).
type FlowFollower struct {
	c    chan FlowRecord
	lost atomic.Uint64
	stop func()
}

// C is the channel of new flows. It is never closed: stop with Stop.
func (f *FlowFollower) C() <-chan FlowRecord { return f.c }

// Lost returns how many flows the follower missed because it did not read C fast enough.
func (f *FlowFollower) Lost() uint64 { return f.lost.Load() }

// Stop ends the follower.
func (f *FlowFollower) Stop() { f.stop() }

// follow adds a follower with a buffer of n flows.
func (l *flowLog) follow(n int) *FlowFollower {
	f := &FlowFollower{c: make(chan FlowRecord, n)}
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.followers, f)
			l.mu.Unlock()
		})
	}
	l.mu.Lock()
	if l.followers == nil {
		l.followers = map[*FlowFollower]struct{}{}
	}
	l.followers[f] = struct{}{}
	l.mu.Unlock()
	return f
}

// Flows returns the agent's latest flows, oldest first.
func (a *Agent) Flows() []FlowRecord { return a.flows.records() }

// FollowFlows returns a follower of the agent's new flows, from now on; Stop it when done.
func (a *Agent) FollowFlows() *FlowFollower { return a.flows.follow(1024) }

func protoName(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 132:
		return "SCTP"
	}
	return fmt.Sprintf("proto-%d", p)
}

// NodeName returns the name of the agent's node.
func (a *Agent) NodeName() string { return a.opts.NodeName }
