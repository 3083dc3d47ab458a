package agent

import (
	"net/netip"
	"slices"
	"time"

	"github.com/podnet/podnet/policy"
	"github.com/podnet/podnet/stack"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// policyFilter is the stack's view of the compiled NetworkPolicy: it decides; the flow log
// (flows.go) names its verdicts.
type policyFilter struct {
	t *policy.Table
	a *Agent
}

var _ stack.Filter = (*policyFilter)(nil)

func (f *policyFilter) Isolated(a netip.Addr) (bool, bool) { return f.t.Isolated(a) }

func (f *policyFilter) Allow(proto uint8, src, dst netip.AddrPort, egress bool) (bool, uint32) {
	if !egress && src.Addr() == f.a.NodeLinkAddress() {
		// The node's own traffic to its pods (the kubelet's probes) is always allowed, as
		// Kubernetes asks of a NetworkPolicy implementation.
		return true, 0
	}
	dir := policy.Ingress
	if egress {
		dir = policy.Egress
	}
	allowed, decider := f.t.Allows(policy.Flow{Src: src.Addr(), Dst: dst.Addr(), Proto: policy.Protocol(proto), Port: dst.Port()}, dir)
	return allowed, uint32(decider)
}

// policies names the set of policies decider stands for (Allow's).
func (f *policyFilter) policies(decider uint32) []string {
	return f.t.Policies(policy.PolicySet(decider))
}

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
	t, _ := CompilePolicy(pols, nss, pods)
	a.stack.SetFilter(&policyFilter{t: t, a: a})
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
