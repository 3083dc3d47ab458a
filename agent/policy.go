package agent

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/podnet/podnet/policy"
	"github.com/podnet/podnet/stack"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// flowLogSize is how many of the latest policy verdicts each agent keeps for `podnet flows`.
const flowLogSize = 4096

// FlowRecord is one verdict of NetworkPolicy on a new flow: a TCP connection attempt or the first
// datagram of a UDP flow, from a pod this node isolates for egress or to one it isolates for
// ingress.
type FlowRecord struct {
	Time      time.Time `json:"time"`
	Node      string    `json:"node"`
	Protocol  string    `json:"protocol"` // TCP, UDP, SCTP
	Source    string    `json:"source"`   // ns/pod, or the address if it is no pod
	SourceIP  string    `json:"sourceIP"`
	Dest      string    `json:"dest"` // ns/pod, or the address
	DestIP    string    `json:"destIP"`
	Port      uint16    `json:"port"`      // the destination port
	Direction string    `json:"direction"` // Egress (judged at the source) or Ingress (at the destination)
	Allowed   bool      `json:"allowed"`
	Policies  []string  `json:"policies"` // the policies that allowed it, or that isolated the pod and allowed nothing
}

// policyFilter is the stack's view of the compiled NetworkPolicy: it decides, and keeps the
// verdicts for `podnet flows` and the per-policy deny counters.
type policyFilter struct {
	t     *policy.Table
	names map[netip.Addr]string // pod address → ns/name
	a     *Agent
}

var _ stack.Filter = (*policyFilter)(nil)

func (f *policyFilter) Isolated(a netip.Addr) (bool, bool) { return f.t.Isolated(a) }

func (f *policyFilter) Allow(proto uint8, src, dst netip.AddrPort, egress bool) bool {
	if !egress && src.Addr() == f.a.NodeLinkAddress() {
		// The node's own traffic to its pods (the kubelet's probes) is always allowed, as
		// Kubernetes asks of a NetworkPolicy implementation.
		return true
	}
	dir := policy.Ingress
	if egress {
		dir = policy.Egress
	}
	allowed, decider := f.t.Allows(policy.Flow{Src: src.Addr(), Dst: dst.Addr(), Proto: policy.Protocol(proto), Port: dst.Port()}, dir)
	f.a.flows.add(f, proto, src, dst, dir, allowed, decider)
	return allowed
}

// flowLog is an agent's ring of the latest verdicts and its deny counters per policy.
type flowLog struct {
	mu     sync.Mutex
	ring   []FlowRecord      // guarded by mu
	next   int               // guarded by mu: where the next record goes once ring is full
	denied map[string]uint64 // guarded by mu: denied flows per policy ("ns/name")
}

func (l *flowLog) add(f *policyFilter, proto uint8, src, dst netip.AddrPort, dir policy.Direction, allowed bool, decider policy.PolicySet) {
	r := FlowRecord{
		Time:      time.Now(),
		Node:      f.a.opts.NodeName,
		Protocol:  protoName(proto),
		Source:    nameOf(f.names, src.Addr()),
		SourceIP:  src.Addr().String(),
		Dest:      nameOf(f.names, dst.Addr()),
		DestIP:    dst.Addr().String(),
		Port:      dst.Port(),
		Direction: "Ingress",
		Allowed:   allowed,
		Policies:  f.t.Policies(decider),
	}
	if dir == policy.Egress {
		r.Direction = "Egress"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !allowed {
		if l.denied == nil {
			l.denied = map[string]uint64{}
		}
		for _, p := range r.Policies {
			l.denied[p]++
		}
	}
	if len(l.ring) < flowLogSize {
		l.ring = append(l.ring, r)
		return
	}
	l.ring[l.next] = r
	l.next = (l.next + 1) % flowLogSize
}

// records returns the kept verdicts, oldest first.
func (l *flowLog) records() []FlowRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]FlowRecord, 0, len(l.ring))
	out = append(out, l.ring[l.next:]...)
	return append(out, l.ring[:l.next]...)
}

// deniedByPolicy returns a copy of the deny counters.
func (l *flowLog) deniedByPolicy() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]uint64, len(l.denied))
	for k, v := range l.denied {
		m[k] = v
	}
	return m
}

func nameOf(names map[netip.Addr]string, a netip.Addr) string {
	if n, ok := names[a]; ok {
		return n
	}
	return a.String()
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 132:
		return "SCTP"
	}
	return "?"
}

// Flows returns the agent's latest NetworkPolicy verdicts, oldest first.
func (a *Agent) Flows() []FlowRecord { return a.flows.records() }

// policyState is what the last syncPolicy saw.
type policyState struct {
	pols []*networkingv1.NetworkPolicy
	nss  []*corev1.Namespace
	pods []*corev1.Pod
}

// syncPolicy compiles the cluster's NetworkPolicies and gives them to the stack when policies,
// namespaces or pods changed.
func (a *Agent) syncPolicy() {
	src := a.opts.Source
	pols, nss, pods := src.NetworkPolicies(), src.Namespaces(), src.Pods()
	st := &a.policyState
	if slices.Equal(pols, st.pols) && slices.Equal(nss, st.nss) && slices.Equal(pods, st.pods) {
		return
	}
	st.pols, st.nss, st.pods = pols, nss, pods
	if len(pols) == 0 {
		a.stack.SetFilter(nil)
		return
	}
	start := time.Now()
	t, names := CompilePolicy(pols, nss, pods)
	a.stack.SetFilter(&policyFilter{t: t, names: names, a: a})
	a.metrics.policySync.Observe(time.Since(start).Seconds())
}

// CompilePolicy compiles NetworkPolicies over the cluster's namespaces and pods, and returns the
// table and the names of the pods by address.
func CompilePolicy(pols []*networkingv1.NetworkPolicy, nss []*corev1.Namespace, pods []*corev1.Pod) (*policy.Table, map[netip.Addr]string) {
	ns := make([]policy.Namespace, 0, len(nss))
	for _, n := range nss {
		ns = append(ns, policy.Namespace{Name: n.Name, Labels: n.Labels})
	}
	pp := make([]policy.Pod, 0, len(pods))
	names := make(map[netip.Addr]string, len(pods))
	for _, p := range pods {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || isTerminal(p) {
			continue
		}
		names[ip] = p.Namespace + "/" + p.Name
		pod := policy.Pod{Namespace: p.Namespace, Name: p.Name, IP: ip, Labels: p.Labels}
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == "" {
					continue
				}
				proto := policy.TCP
				switch cp.Protocol {
				case corev1.ProtocolUDP:
					proto = policy.UDP
				case corev1.ProtocolSCTP:
					proto = policy.SCTP
				}
				pod.Ports = append(pod.Ports, policy.NamedPort{Name: cp.Name, Protocol: proto, Port: uint16(cp.ContainerPort)})
			}
		}
		pp = append(pp, pod)
	}
	return policy.Compile(pols, ns, pp), names
}

// isTerminal reports whether a pod has ended: its address may be another pod's already.
func isTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
