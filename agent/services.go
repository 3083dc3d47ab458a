package agent

import (
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/podnet/podnet/proxy"
	"github.com/podnet/podnet/stack"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// defaultAffinityTimeout is Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds.
const defaultAffinityTimeout = 10800 * time.Second

// balancer lets the stack ask the proxy for the backend of a new flow.
type balancer struct{ p *proxy.Proxy }

var _ stack.ServiceBalancer = balancer{}

func (b balancer) Pick(proto uint8, client, vip netip.Addr, port uint16) (netip.AddrPort, stack.PickResult) {
	backend, r := b.p.Pick(proxy.Protocol(proto), client, vip, port)
	switch r {
	case proxy.Picked:
		return backend, stack.PickBackend
	case proxy.NoEndpoint:
		return netip.AddrPort{}, stack.PickNoEndpoint
	default:
		return netip.AddrPort{}, stack.PickNotService
	}
}

// serviceState is what the last syncServices saw, to skip work when nothing changed.
type serviceState struct {
	svcs    []*corev1.Service
	slices  []*discoveryv1.EndpointSlice
	nodeErr string // the last NodePorts error logged

	hostPortGen uint64 // Agent.hostPortGen when the table was made
}

// syncServices brings the proxy's table and the node's NodePorts up to date with the Services and
// EndpointSlices of the source. The store replaces objects rather than changing them, so the same
// pointers mean nothing changed.
func (a *Agent) syncServices() {
	svcs, slices := a.opts.Source.Services(), a.opts.Source.EndpointSlices()
	st := &a.svcState
	gen := a.hostPortGen.Load()
	if samePointers(svcs, st.svcs) && samePointers(slices, st.slices) && gen == st.hostPortGen {
		return
	}
	st.svcs, st.slices, st.hostPortGen = svcs, slices, gen
	start := time.Now()
	table := proxyServices(svcs, slices, a.opts.NodeName)
	removed := a.proxy.Update(table)
	if n := a.stack.FlushUDPBackends(removed); n > 0 {
		a.log.Debug("flushed UDP flows of removed endpoints", "flows", n)
	}
	a.nodePorts.FlushUDP(removed)
	err := a.nodePorts.Sync(table)
	a.metrics.serviceSync.Observe(time.Since(start).Seconds())
	if herr := a.syncHostPorts(); herr != nil {
		err = errors.Join(err, herr)
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != st.nodeErr {
		st.nodeErr = msg
		if err != nil {
			a.log.Warn("some Service ports or hostPorts cannot be served", "address", a.opts.NodeAddress, "err", err)
		}
	}
}

func samePointers[T any](a, b []*T) bool {
	return slices.Equal(a, b)
}

// proxyServices converts Services and their EndpointSlices into the proxy's table for node.
// ExternalName Services have no virtual address and are left out.
func proxyServices(svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice, node string) []proxy.Service {
	bySvc := make(map[string][]*discoveryv1.EndpointSlice, len(svcs))
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		k := s.Namespace + "/" + name
		bySvc[k] = append(bySvc[k], s)
	}
	out := make([]proxy.Service, 0, len(svcs))
	for _, svc := range svcs {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		ps := proxy.Service{
			Namespace:           svc.Namespace,
			Name:                svc.Name,
			ExternalLocal:       svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
			InternalLocal:       svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
			HealthCheckNodePort: uint16(svc.Spec.HealthCheckNodePort),
		}
		if a, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil && a.Is4() {
			ps.ClusterIP = a
		}
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			for _, in := range svc.Status.LoadBalancer.Ingress {
				if a, err := netip.ParseAddr(in.IP); err == nil {
					ps.LoadBalancerIPs = append(ps.LoadBalancerIPs, a)
				}
			}
			for _, r := range svc.Spec.LoadBalancerSourceRanges {
				if p, err := netip.ParsePrefix(r); err == nil {
					ps.SourceRanges = append(ps.SourceRanges, p.Masked())
				}
			}
		}
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			ps.AffinityTimeout = defaultAffinityTimeout
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				ps.AffinityTimeout = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
			}
		}
		eps := bySvc[svc.Namespace+"/"+svc.Name]
		for _, sp := range svc.Spec.Ports {
			pp := proxy.Port{Name: sp.Name, Port: uint16(sp.Port), NodePort: uint16(sp.NodePort)}
			switch sp.Protocol {
			case corev1.ProtocolUDP:
				pp.Protocol = proxy.UDP
			case corev1.ProtocolTCP, "":
				pp.Protocol = proxy.TCP
			default:
				continue
			}
			pp.Endpoints = endpointsFor(eps, sp, node)
			ps.Ports = append(ps.Ports, pp)
		}
		out = append(out, ps)
	}
	return out
}

// endpointsFor returns the endpoints of the Service port sp in the slices eps: the port of a slice
// with sp's name and protocol, each address once.
func endpointsFor(eps []*discoveryv1.EndpointSlice, sp corev1.ServicePort, node string) []proxy.Endpoint {
	var out []proxy.Endpoint
	seen := map[netip.AddrPort]bool{}
	for _, s := range eps {
		port := -1
		for _, p := range s.Ports {
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name == sp.Name && proto == sp.Protocol && p.Port != nil {
				port = int(*p.Port)
				break
			}
		}
		if port < 1 || port > 65535 {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			a, err := netip.ParseAddr(e.Addresses[0])
			if err != nil || !a.Is4() {
				continue
			}
			ap := netip.AddrPortFrom(a, uint16(port))
			if seen[ap] {
				continue
			}
			seen[ap] = true
			n := ""
			if e.NodeName != nil {
				n = *e.NodeName
			}
			// A nil ready condition means unknown, which consumers take as ready (the API's rule).
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			if e.Conditions.Terminating != nil && *e.Conditions.Terminating {
				ready = false
			}
			out = append(out, proxy.Endpoint{Addr: ap, Node: n, Local: n == node, Ready: ready})
		}
	}
	return out
}
