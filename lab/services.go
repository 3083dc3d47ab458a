package lab

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/podnet/podnet/cluster"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// Services in the store.
//
// Apply gives each Service what the API server's allocators give it, all or nothing with the
// rest of the apply:
//
//   - a cluster IP from the Lab's serviceCIDR, unless it is headless or an ExternalName. The
//     network and broadcast addresses and the Lab's dnsIP are never handed out. A requested
//     spec.clusterIP is honoured if it is inside serviceCIDR and free. Addresses are handed out
//     round-robin, deterministically: the lowest free address after the one handed out last,
//     wrapping around (the first Service of a lab gets 10.96.0.1). So a deleted and re-created
//     Service gets a fresh address, and stale DNS answers or conntrack entries of the old one
//     reach nothing, while a lab that applies the same files gets the same addresses.
//   - a NodePort from 30000-32767 for each port of a NodePort Service and of a LoadBalancer
//     Service (unless allocateLoadBalancerNodePorts is false), and a healthCheckNodePort for a
//     LoadBalancer Service with externalTrafficPolicy Local, handed out round-robin like cluster
//     IPs. A requested one is honoured if no other Service has it (under any protocol: the TCP
//     and UDP ports of one Service may share a NodePort, as in Kubernetes).
//
// Requested values are taken before any is handed out, so an apply never fails because a
// Service earlier in it was handed what a later one asks for. On update, a Service keeps what it
// was given: an apply without spec.clusterIP keeps the cluster IP (a different one is an error:
// it is immutable), and a port without nodePort keeps the NodePort of the old port with the same
// number and protocol. What a Service no longer needs (its NodePorts when it becomes ClusterIP,
// its cluster IP when it becomes ExternalName) is released; so is everything when it is deleted.
// Nothing is kept outside the Services themselves: what is taken is what the Services hold.
//
// Apply also rejects a Service whose named targetPort none of its selected pods declares (with
// the Service port's protocol), but only when it selects at least one pod: Kubernetes accepts
// such a Service and it silently has no endpoints for that port, which is almost always a typo.
// A Service that selects no pod yet is accepted, since its pods may come later.

// serviceApply is a Service of an apply, waiting for its addresses and ports.
type serviceApply struct {
	doc    cluster.Document
	key    string
	svc    *corev1.Service // the new object, not yet in the state
	old    *corev1.Service // the object it replaces; nil for a new Service
	result int             // index of its line in the apply's results
	// unchanged is set when the apply leaves the Service as it was.
	unchanged bool
}

// prepareService makes the object that Service o of doc becomes, given old (nil if it is new):
// defaults done, status kept, what old was given carried over where o leaves it unset. It returns
// the problems that make the update impossible.
func prepareService(o, old *corev1.Service, now metav1.Time) (*corev1.Service, []string) {
	n := o.DeepCopy()
	n.Status = corev1.ServiceStatus{} // set by the lab, never by a user
	if old == nil {
		n.UID, n.CreationTimestamp = uuid.NewUUID(), now
		return n, nil
	}
	n.UID, n.CreationTimestamp, n.Status = old.UID, old.CreationTimestamp, old.Status
	var problems []string
	if old.Spec.Type != corev1.ServiceTypeExternalName && n.Spec.Type != corev1.ServiceTypeExternalName {
		switch {
		case n.Spec.ClusterIP == "":
			n.Spec.ClusterIP, n.Spec.ClusterIPs = old.Spec.ClusterIP, slices.Clone(old.Spec.ClusterIPs)
		case n.Spec.ClusterIP != old.Spec.ClusterIP:
			problems = append(problems, fmt.Sprintf("spec.clusterIP: Invalid value: %q: field is immutable: the Service has %s (delete the Service to change it)",
				n.Spec.ClusterIP, orNone(old.Spec.ClusterIP)))
		}
	}
	if cluster.NeedsNodePorts(old) && cluster.NeedsNodePorts(n) {
		for i := range n.Spec.Ports {
			p := &n.Spec.Ports[i]
			if p.NodePort != 0 {
				continue
			}
			for _, op := range old.Spec.Ports {
				if op.Port == p.Port && op.Protocol == p.Protocol {
					p.NodePort = op.NodePort
				}
			}
		}
	}
	if cluster.NeedsHealthCheckNodePort(old) && cluster.NeedsHealthCheckNodePort(n) && n.Spec.HealthCheckNodePort == 0 {
		n.Spec.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	}
	return n, problems
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// allocator hands out cluster IPs and NodePorts in one apply.
type allocator struct {
	netw     cluster.Network
	ips      map[netip.Addr]string // cluster IP -> key of the Service that has it
	ports    map[int32]string      // NodePort -> key of the Service that has it
	lastIP   netip.Addr
	lastPort int32
}

// allocateServices gives the Services of an apply their cluster IPs and NodePorts, in next
// (which holds them already). It returns the problems, each naming the document and field.
func allocateServices(next *state, applied []*serviceApply) []string {
	netw, err := next.Lab.Network()
	if err != nil {
		return []string{err.Error()}
	}
	a := &allocator{netw: netw, ips: map[netip.Addr]string{}, ports: map[int32]string{}}
	a.lastIP, _ = netip.ParseAddr(next.LastClusterIP)
	a.lastPort = next.LastNodePort
	mine := make(map[string]bool, len(applied))
	for _, sa := range applied {
		mine[sa.key] = true
	}
	// What the other Services hold is taken.
	for k, svc := range next.Services {
		if mine[k] {
			continue
		}
		if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
			a.ips[ip] = k
		}
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				a.ports[p.NodePort] = k
			}
		}
		if hc := svc.Spec.HealthCheckNodePort; hc != 0 {
			a.ports[hc] = k
		}
	}
	var problems []string
	bad := func(sa *serviceApply, format string, args ...any) {
		problems = append(problems, problemf(sa.doc, format, args...))
	}
	// Then what the applied Services ask for, in order.
	for _, sa := range applied {
		svc := sa.svc
		if cluster.NeedsClusterIP(svc) && svc.Spec.ClusterIP != "" {
			if msg := a.takeIP(sa.key, svc.Spec.ClusterIP); msg != "" {
				bad(sa, "spec.clusterIP: Invalid value: %q: %s", svc.Spec.ClusterIP, msg)
			}
		}
		for i, p := range svc.Spec.Ports {
			if p.NodePort != 0 && cluster.NeedsNodePorts(svc) {
				if other := a.takePort(sa.key, p.NodePort); other != "" {
					bad(sa, "spec.ports[%d].nodePort: Invalid value: %d: provided port is already allocated (to service %s)", i, p.NodePort, other)
				}
			}
		}
		if hc := svc.Spec.HealthCheckNodePort; hc != 0 && cluster.NeedsHealthCheckNodePort(svc) {
			if other := a.takePort(sa.key, hc); other != "" {
				bad(sa, "spec.healthCheckNodePort: Invalid value: %d: provided port is already allocated (to service %s)", hc, other)
			}
		}
	}
	if len(problems) > 0 {
		return problems
	}
	// Then what they need and did not ask for.
	for _, sa := range applied {
		spec := &sa.svc.Spec
		if spec.Type == corev1.ServiceTypeExternalName {
			spec.ClusterIP, spec.ClusterIPs = "", nil
		} else if spec.ClusterIP == "" {
			ip, ok := a.nextIP(sa.key)
			if !ok {
				bad(sa, "spec.clusterIP: Internal error: no free address left in serviceCIDR %s: delete Services or use a larger serviceCIDR in a new lab", netw.ServiceCIDR)
				continue
			}
			spec.ClusterIP, spec.ClusterIPs = ip.String(), []string{ip.String()}
		}
		needs := cluster.NeedsNodePorts(sa.svc)
		for i := range spec.Ports {
			p := &spec.Ports[i]
			if !needs {
				p.NodePort = 0
				continue
			}
			if p.NodePort != 0 {
				continue
			}
			port, ok := a.nextPort(sa.key)
			if !ok {
				bad(sa, "spec.ports[%d].nodePort: Internal error: no free NodePort left in %d-%d", i, cluster.NodePortMin, cluster.NodePortMax)
				break
			}
			p.NodePort = port
		}
		switch {
		case !cluster.NeedsHealthCheckNodePort(sa.svc):
			spec.HealthCheckNodePort = 0
		case spec.HealthCheckNodePort == 0:
			port, ok := a.nextPort(sa.key)
			if !ok {
				bad(sa, "spec.healthCheckNodePort: Internal error: no free NodePort left in %d-%d", cluster.NodePortMin, cluster.NodePortMax)
				continue
			}
			spec.HealthCheckNodePort = port
		}
	}
	if a.lastIP.IsValid() {
		next.LastClusterIP = a.lastIP.String()
	}
	next.LastNodePort = a.lastPort
	return problems
}

// takeIP takes the requested cluster IP s for the Service key, or says why it cannot.
func (a *allocator) takeIP(key, s string) string {
	ip, err := netip.ParseAddr(s)
	cidr := a.netw.ServiceCIDR
	switch {
	case err != nil:
		return "must be an IPv4 address"
	case !cidr.Contains(ip):
		return fmt.Sprintf("provided IP is not in the valid range: the lab's serviceCIDR is %s", cidr)
	case ip == cidr.Masked().Addr():
		return fmt.Sprintf("is the network address of serviceCIDR %s", cidr)
	case ip == lastAddr(cidr):
		return fmt.Sprintf("is the broadcast address of serviceCIDR %s", cidr)
	case ip == a.netw.DNSIP:
		return "is the lab's cluster DNS address (spec.dnsIP of the Lab)"
	}
	if other, taken := a.ips[ip]; taken && other != key {
		return fmt.Sprintf("provided IP is already allocated (to service %s)", other)
	}
	a.ips[ip] = key
	return ""
}

// nextIP hands out the lowest free address after the one handed out last, wrapping around.
func (a *allocator) nextIP(key string) (netip.Addr, bool) {
	cidr := a.netw.ServiceCIDR
	first, last := cidr.Masked().Addr().Next(), lastAddr(cidr).Prev()
	ip := a.lastIP
	if !ip.IsValid() || !cidr.Contains(ip) {
		ip = last
	}
	size := 1 << (32 - cidr.Bits())
	for range size {
		ip = ip.Next()
		if ip.Compare(last) > 0 || ip.Compare(first) < 0 {
			ip = first
		}
		if _, taken := a.ips[ip]; taken || ip == a.netw.DNSIP {
			continue
		}
		a.ips[ip], a.lastIP = key, ip
		return ip, true
	}
	return netip.Addr{}, false
}

// takePort takes the requested NodePort for the Service key; it returns the key of the Service
// that has it already, if another does.
func (a *allocator) takePort(key string, port int32) string {
	if other, taken := a.ports[port]; taken && other != key {
		return other
	}
	a.ports[port] = key
	return ""
}

// nextPort hands out the lowest free NodePort after the one handed out last, wrapping around.
func (a *allocator) nextPort(key string) (int32, bool) {
	port := a.lastPort
	for range cluster.NodePortMax - cluster.NodePortMin + 1 {
		port++
		if port < cluster.NodePortMin || port > cluster.NodePortMax {
			port = cluster.NodePortMin
		}
		if _, taken := a.ports[port]; taken {
			continue
		}
		a.ports[port], a.lastPort = key, port
		return port, true
	}
	return 0, false
}

// lastAddr returns the last address of an IPv4 prefix (its broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// checkTargetPortNames rejects a named targetPort of an applied Service that none of the pods
// it selects declares, if it selects any (see the comment at the top of this file). Only
// Services whose ports or selector the apply changed are checked.
func checkTargetPortNames(next *state, applied []*serviceApply) []string {
	var problems []string
	var byNS map[string][]*corev1.Pod
	for _, sa := range applied {
		svc := sa.svc
		if len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		if sa.unchanged || sa.old != nil && equality.Semantic.DeepEqual(sa.old.Spec.Ports, svc.Spec.Ports) && equality.Semantic.DeepEqual(sa.old.Spec.Selector, svc.Spec.Selector) {
			continue
		}
		named := false
		for _, p := range svc.Spec.Ports {
			named = named || p.TargetPort.Type == intstr.String
		}
		if !named {
			continue
		}
		if byNS == nil {
			byNS = podsByNamespace(next)
		}
		var selected []*corev1.Pod
		for _, p := range byNS[svc.Namespace] {
			if selects(svc.Spec.Selector, p.Labels) {
				selected = append(selected, p)
			}
		}
		if len(selected) == 0 {
			continue
		}
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			if sp.TargetPort.Type != intstr.String {
				continue
			}
			found := false
			for _, p := range selected {
				if _, ok := cluster.ResolveTargetPort(p, sp); ok {
					found = true
					break
				}
			}
			if !found {
				names := map[string]bool{}
				for _, p := range selected {
					for _, c := range p.Spec.Containers {
						for _, cp := range c.Ports {
							if cp.Name != "" && cp.Protocol == sp.Protocol {
								names[cp.Name] = true
							}
						}
					}
				}
				have := "they declare no named " + string(sp.Protocol) + " ports"
				if len(names) > 0 {
					have = "their named " + string(sp.Protocol) + " ports are " + strings.Join(sortedSet(names), ", ")
				}
				problems = append(problems, problemf(sa.doc,
					"spec.ports[%d].targetPort: Invalid value: %q: none of the %d pods the Service selects has a %s container port of that name (%s)",
					i, sp.TargetPort.StrVal, len(selected), sp.Protocol, have))
			}
		}
	}
	return problems
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// selects reports whether a Service selector matches labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// podsByNamespace returns the pods of next by namespace, each namespace's sorted by name.
func podsByNamespace(next *state) map[string][]*corev1.Pod {
	out := map[string][]*corev1.Pod{}
	for _, p := range next.Pods {
		out[p.Namespace] = append(out[p.Namespace], p)
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	}
	return out
}

// syncLoadBalancers sets the status of every LoadBalancer Service to the nodes' addresses, in
// the Lab's node order, as k3s's ServiceLB does, and clears it on every other Service. Only the
// Services in dirty are looked at, or all of them if the nodes changed.
func syncLoadBalancers(next *state, dirty map[string]bool, nodesChanged bool) bool {
	var ingress []corev1.LoadBalancerIngress
	vip := corev1.LoadBalancerIPModeVIP
	for _, n := range next.Lab.Spec.Nodes {
		if node := next.Nodes[n.Name]; node != nil {
			if addr := nodeAddress(node); addr != "" {
				ingress = append(ingress, corev1.LoadBalancerIngress{IP: addr, IPMode: &vip})
			}
		}
	}
	changed := false
	update := func(k string, svc *corev1.Service) {
		want := ingress
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			want = nil
		}
		if equality.Semantic.DeepEqual(svc.Status.LoadBalancer.Ingress, want) {
			return
		}
		n := svc.DeepCopy()
		n.Status.LoadBalancer.Ingress = slices.Clone(want)
		next.Services[k] = n
		changed = true
	}
	if nodesChanged {
		for k, svc := range next.Services {
			update(k, svc)
		}
		return changed
	}
	for k := range dirty {
		if svc := next.Services[k]; svc != nil {
			update(k, svc)
		}
	}
	return changed
}

// problemf formats a problem of document d as Apply reports it: position, object, then what is
// wrong.
func problemf(d cluster.Document, format string, a ...any) string {
	return fmt.Sprintf("%s: %s: %s", d.Position(), cluster.ObjectName(d.Object), fmt.Sprintf(format, a...))
}
