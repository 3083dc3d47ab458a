package graph

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// namespaceNameLabel is the label the API server sets on every namespace to
// its name; the only namespace label Build knows (it gets no Namespace
// objects).
const namespaceNameLabel = "kubernetes.io/metadata.name"

// Build makes the picture's model from the cluster's objects and the flows.
// Nil entries are skipped, and so are later duplicates of a name. Build
// keeps no reference to its arguments and does not modify them; the order
// of the arguments' elements does not matter.
func Build(nodes []*corev1.Node, pods []*corev1.Pod, services []*corev1.Service, policies []*networkingv1.NetworkPolicy, flows []Flow) *Graph {
	b := &builder{
		g:         &Graph{},
		nodes:     map[string]*nodeEntry{},
		pods:      map[string]*podEntry{},
		services:  map[string]*Service{},
		addresses: map[string]*Address{},
		ips:       map[netip.Addr]string{},
		nodeIPs:   map[netip.Addr]string{},
		groups:    map[string]string{},
		policyE:   map[[2]string]*policyEdge{},
		flowE:     map[flowKey]*Edge{},
	}
	b.addNodes(nodes)
	b.addPods(pods)
	b.addServices(services)
	b.addPolicies(policies)
	b.addFlows(flows)
	b.finish()
	return b.g
}

// builder holds the state of one Build.
type builder struct {
	g         *Graph
	nodes     map[string]*nodeEntry // by name
	pods      map[string]*podEntry  // by ID
	podOrder  []*podEntry           // by namespace/name
	services  map[string]*Service   // by ID
	addresses map[string]*Address   // by ID
	// ips maps the addresses of drawn pods and of Services to their IDs;
	// an address two pods share (hostNetwork pods) maps to "".
	ips     map[netip.Addr]string
	nodeIPs map[netip.Addr]string // node address → node name

	selects  []Edge
	policyE  map[[2]string]*policyEdge // by from, to
	flowE    map[flowKey]*Edge
	badFlows int               // flows without a source or destination
	groups   map[string]string // the joined pod IDs of a pod group → its ID
}

// nodeEntry is a node while Build collects its pods.
type nodeEntry struct {
	node Node
	pods []*podEntry
}

// podEntry is a drawn pod with the labels selectors match.
type podEntry struct {
	pod    Pod
	labels labels.Set
}

// policyEdge collects the policies and ports that allow one pair of ends.
type policyEdge struct {
	policies map[string]bool
	ports    map[string]bool
	allPorts bool
}

// flowKey is what makes a flow edge distinct.
type flowKey struct {
	from, to string
	port     uint16
	proto    string
	allowed  bool
}

// note adds a sentence to the Graph's notes.
func (b *builder) note(format string, args ...any) {
	b.g.Notes = append(b.g.Notes, fmt.Sprintf(format, args...))
}

// addNodes adds the nodes' boxes and remembers their addresses.
func (b *builder) addNodes(nodes []*corev1.Node) {
	nodes = sortedObjects(nodes, func(n *corev1.Node) string { return n.Name })
	for _, n := range nodes {
		if _, dup := b.nodes[n.Name]; dup {
			continue
		}
		b.nodes[n.Name] = &nodeEntry{node: Node{Name: n.Name, PodCIDR: n.Spec.PodCIDR}}
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				if _, seen := b.nodeIPs[ip]; !seen {
					b.nodeIPs[ip] = n.Name
				}
			}
		}
	}
}

// addPods puts every pod that is bound and not terminal in its node's box.
func (b *builder) addPods(pods []*corev1.Pod) {
	pods = sortedObjects(pods, func(p *corev1.Pod) string { return p.Namespace + "/" + p.Name })
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		id := PodID(p.Namespace, p.Name)
		if _, dup := b.pods[id]; dup {
			continue
		}
		ip := p.Status.PodIP
		if ip == "" && len(p.Status.PodIPs) > 0 {
			ip = p.Status.PodIPs[0].IP
		}
		e := &podEntry{
			pod:    Pod{ID: id, Namespace: p.Namespace, Name: p.Name, IP: ip, Node: p.Spec.NodeName},
			labels: labels.Set(p.Labels),
		}
		b.pods[id] = e
		b.podOrder = append(b.podOrder, e)
		n := b.nodes[p.Spec.NodeName]
		if n == nil {
			n = &nodeEntry{node: Node{Name: p.Spec.NodeName, Unlisted: true}}
			b.nodes[p.Spec.NodeName] = n
		}
		n.pods = append(n.pods, e)

		addrs := []string{p.Status.PodIP}
		for _, a := range p.Status.PodIPs {
			addrs = append(addrs, a.IP)
		}
		for _, a := range addrs {
			if addr, err := netip.ParseAddr(a); err == nil {
				b.claimIP(addr, id)
			}
		}
	}
}

// claimIP maps addr to id, or to "" when something else has it already.
func (b *builder) claimIP(addr netip.Addr, id string) {
	if old, seen := b.ips[addr]; seen && old != id {
		b.ips[addr] = ""
		return
	}
	b.ips[addr] = id
}

// addServices adds the Services, remembers their addresses and draws
// their selects edges.
func (b *builder) addServices(services []*corev1.Service) {
	services = sortedObjects(services, func(s *corev1.Service) string { return s.Namespace + "/" + s.Name })
	for _, s := range services {
		id := ServiceID(s.Namespace, s.Name)
		if _, dup := b.services[id]; dup {
			continue
		}
		svc := &Service{
			ID:        id,
			Namespace: s.Namespace,
			Name:      s.Name,
			Type:      string(s.Spec.Type),
			ClusterIP: s.Spec.ClusterIP,
		}
		if svc.Type == "" {
			svc.Type = string(corev1.ServiceTypeClusterIP)
		}
		if s.Spec.Type == corev1.ServiceTypeExternalName {
			svc.ClusterIP = s.Spec.ExternalName
		}
		for _, p := range s.Spec.Ports {
			svc.Ports = append(svc.Ports, servicePort(p))
		}
		svc.HasSelector = s.Spec.Type != corev1.ServiceTypeExternalName && len(s.Spec.Selector) > 0
		b.services[id] = svc
		b.g.Services = append(b.g.Services, *svc)

		addrs := slices.Clone(s.Spec.ClusterIPs)
		addrs = append(addrs, s.Spec.ClusterIP)
		addrs = append(addrs, s.Spec.ExternalIPs...)
		for _, in := range s.Status.LoadBalancer.Ingress {
			addrs = append(addrs, in.IP)
		}
		if s.Spec.Type != corev1.ServiceTypeExternalName {
			for _, a := range addrs {
				if addr, err := netip.ParseAddr(a); err == nil {
					if _, pod := b.ips[addr]; !pod {
						b.ips[addr] = id
					}
				}
			}
		}

		if !svc.HasSelector {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: s.Spec.Selector})
		if err != nil {
			b.note("Service %s/%s: spec.selector: %v; no pods drawn as selected.", s.Namespace, s.Name, err)
			continue
		}
		for _, p := range b.podOrder {
			if p.pod.Namespace == s.Namespace && sel.Matches(p.labels) {
				b.selects = append(b.selects, Edge{
					Kind: EdgeSelects, From: id, To: p.pod.ID,
					Label: "selects", Color: ColorSelects,
				})
			}
		}
	}
}

// servicePort renders a Service port as kubectl does: 80/TCP, 80:30080/TCP.
func servicePort(p corev1.ServicePort) string {
	proto := string(p.Protocol)
	if proto == "" {
		proto = string(corev1.ProtocolTCP)
	}
	s := strconv.Itoa(int(p.Port))
	if p.NodePort != 0 {
		s += ":" + strconv.Itoa(int(p.NodePort))
	}
	return s + "/" + proto
}

// addPolicies marks the pods every policy selects and collects the edges
// of their ingress rules.
func (b *builder) addPolicies(policies []*networkingv1.NetworkPolicy) {
	policies = sortedObjects(policies, func(p *networkingv1.NetworkPolicy) string { return p.Namespace + "/" + p.Name })
	seen := map[string]bool{}
	for _, np := range policies {
		name := np.Namespace + "/" + np.Name
		if seen[name] {
			continue
		}
		seen[name] = true
		pol := Policy{Name: name}
		for _, t := range np.Spec.PolicyTypes {
			switch t {
			case networkingv1.PolicyTypeIngress:
				pol.Ingress = true
			case networkingv1.PolicyTypeEgress:
				pol.Egress = true
			}
		}
		if len(np.Spec.PolicyTypes) == 0 {
			pol.Ingress = true
			pol.Egress = len(np.Spec.Egress) > 0
		}

		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			b.note("NetworkPolicy %s: spec.podSelector: %v; it selects no pods here.", name, err)
			b.g.Policies = append(b.g.Policies, pol)
			continue
		}
		var selected []string
		for _, p := range b.podOrder {
			if p.pod.Namespace == np.Namespace && sel.Matches(p.labels) {
				selected = append(selected, p.pod.ID)
				p.pod.Policies = append(p.pod.Policies, name)
			}
		}
		pol.Pods = selected
		b.g.Policies = append(b.g.Policies, pol)
		if !pol.Ingress || len(selected) == 0 {
			continue
		}
		targets := b.groupIfMany(selected, "pods selected by "+name)
		for ri, rule := range np.Spec.Ingress {
			ports, all := policyPorts(rule.Ports)
			var sources []string
			if len(rule.From) == 0 {
				sources = append(sources, b.address(AddressAny, "any", "any address"))
			}
			for pi, peer := range rule.From {
				field := fmt.Sprintf("spec.ingress[%d].from[%d]", ri, pi)
				if peer.IPBlock != nil {
					if peer.PodSelector != nil || peer.NamespaceSelector != nil {
						b.note("NetworkPolicy %s: %s has an ipBlock and a selector, which matches nothing; not drawn.", name, field)
						continue
					}
					sources = append(sources, b.ipBlock(peer.IPBlock))
					continue
				}
				peers, err := b.peerPods(np.Namespace, peer)
				if err != nil {
					b.note("NetworkPolicy %s: %s: %v; not drawn.", name, field, err)
					continue
				}
				sources = append(sources, b.groupIfMany(peers, peerText(np.Namespace, peer))...)
			}
			for _, from := range sources {
				for _, to := range targets {
					if from != to || strings.HasPrefix(from, "group:") {
						b.allow(from, to, name, ports, all)
					}
				}
			}
		}
	}
}

// groupIfMany returns ids, or when they are more than GroupPods the ID of
// one AddressPodGroup that stands for them, described by what. Groups with
// the same pods are one group, described by the first description.
func (b *builder) groupIfMany(ids []string, what string) []string {
	if len(ids) <= GroupPods {
		return ids
	}
	members := strings.Join(ids, "\x00")
	if id, ok := b.groups[members]; ok {
		return []string{id}
	}
	id := b.address(AddressPodGroup, what, fmt.Sprintf("%s\n(%d pods)", what, len(ids)))
	b.addresses[id].Pods = slices.Clone(ids)
	b.groups[members] = id
	return []string{id}
}

// peerText describes the pods a podSelector/namespaceSelector peer of a
// policy in namespace ns matches.
func peerText(ns string, peer networkingv1.NetworkPolicyPeer) string {
	pods := "all pods"
	if peer.PodSelector != nil && !isEmptySelector(peer.PodSelector) {
		pods = "pods " + metav1.FormatLabelSelector(peer.PodSelector)
	}
	switch {
	case peer.NamespaceSelector == nil:
		return pods + " in " + ns
	case isEmptySelector(peer.NamespaceSelector):
		return pods + " in all namespaces"
	case len(peer.NamespaceSelector.MatchExpressions) == 0 && len(peer.NamespaceSelector.MatchLabels) == 1 &&
		peer.NamespaceSelector.MatchLabels[namespaceNameLabel] != "":
		return pods + " in " + peer.NamespaceSelector.MatchLabels[namespaceNameLabel]
	}
	return pods + " in namespaces " + metav1.FormatLabelSelector(peer.NamespaceSelector)
}

// isEmptySelector reports whether s selects everything.
func isEmptySelector(s *metav1.LabelSelector) bool {
	return len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
}

// peerPods returns the drawn pods a podSelector/namespaceSelector peer of a
// policy in namespace ns matches. A namespaceSelector is matched against
// the label kubernetes.io/metadata.name=<namespace> only: Build gets no
// Namespace objects, so selectors on other namespace labels match nothing.
func (b *builder) peerPods(ns string, peer networkingv1.NetworkPolicyPeer) ([]string, error) {
	if peer.PodSelector == nil && peer.NamespaceSelector == nil {
		return nil, fmt.Errorf("a peer without podSelector, namespaceSelector or ipBlock matches nothing")
	}
	podSel := labels.Everything()
	if peer.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
		if err != nil {
			return nil, fmt.Errorf("podSelector: %w", err)
		}
		podSel = s
	}
	inNamespace := func(podNS string) bool { return podNS == ns }
	if peer.NamespaceSelector != nil {
		nsSel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("namespaceSelector: %w", err)
		}
		inNamespace = func(podNS string) bool { return nsSel.Matches(labels.Set{namespaceNameLabel: podNS}) }
	}
	var out []string
	for _, p := range b.podOrder {
		if inNamespace(p.pod.Namespace) && podSel.Matches(p.labels) {
			out = append(out, p.pod.ID)
		}
	}
	return out, nil
}

// ipBlock returns the ID of the address drawn for an ipBlock peer.
func (b *builder) ipBlock(block *networkingv1.IPBlock) string {
	key, label := block.CIDR, "ipBlock "+block.CIDR
	if len(block.Except) > 0 {
		except := slices.Sorted(slices.Values(block.Except))
		key += " except " + strings.Join(except, ", ")
		label += "\nexcept " + strings.Join(except, ", ")
	}
	return b.address(AddressBlock, key, label)
}

// policyPorts renders a rule's ports, sorted; all is true when the rule
// allows every port.
func policyPorts(ports []networkingv1.NetworkPolicyPort) (out []string, all bool) {
	if len(ports) == 0 {
		return nil, true
	}
	for _, p := range ports {
		proto := string(corev1.ProtocolTCP)
		if p.Protocol != nil && *p.Protocol != "" {
			proto = string(*p.Protocol)
		}
		port := "*"
		if p.Port != nil {
			port = p.Port.String()
			if p.EndPort != nil && p.Port.IntValue() != 0 {
				port += "-" + strconv.Itoa(int(*p.EndPort))
			}
		}
		out = append(out, port+"/"+proto)
	}
	return out, false
}

// allow records that policy allows from to reach to on ports.
func (b *builder) allow(from, to, policy string, ports []string, all bool) {
	k := [2]string{from, to}
	e := b.policyE[k]
	if e == nil {
		e = &policyEdge{policies: map[string]bool{}, ports: map[string]bool{}}
		b.policyE[k] = e
	}
	e.policies[policy] = true
	e.allPorts = e.allPorts || all
	for _, p := range ports {
		e.ports[p] = true
	}
}

// address returns the ID of the Address of kind and key, adding it.
func (b *builder) address(kind AddressKind, key, label string) string {
	var prefix string
	switch kind {
	case AddressBlock:
		prefix = "cidr:"
	case AddressAny:
		prefix = "any:"
	case AddressMissingPod:
		prefix = "missing:"
	case AddressPodGroup:
		prefix = "group:"
	default:
		prefix = "ip:"
	}
	id := prefix + key
	if _, ok := b.addresses[id]; !ok {
		b.addresses[id] = &Address{ID: id, Kind: kind, Address: key, Label: label}
	}
	return id
}

// endpoint returns the ID of a flow's source or destination s:
// "namespace/pod" or an address.
func (b *builder) endpoint(s string) string {
	s = strings.TrimSpace(s)
	if addr, err := netip.ParseAddr(s); err == nil {
		if id := b.ips[addr]; id != "" {
			return id
		}
		if node, ok := b.nodeIPs[addr]; ok {
			return b.address(AddressNode, addr.String(), addr.String()+"\nnode "+node)
		}
		return b.address(AddressOutside, addr.String(), addr.String())
	}
	if _, err := netip.ParsePrefix(s); err == nil {
		return b.address(AddressOutside, s, s)
	}
	if ns, name, ok := strings.Cut(s, "/"); ok {
		id := PodID(ns, name)
		if _, drawn := b.pods[id]; drawn {
			return id
		}
		return b.address(AddressMissingPod, s, s+"\n(pod not drawn)")
	}
	return b.address(AddressOutside, s, s)
}

// addFlows counts the flows into one edge per distinct source,
// destination, port, protocol and verdict.
func (b *builder) addFlows(flows []Flow) {
	for _, f := range flows {
		if strings.TrimSpace(f.Source) == "" || (strings.TrimSpace(f.Dest) == "" && strings.TrimSpace(f.Service) == "") {
			b.badFlows++
			continue
		}
		from := b.endpoint(f.Source)
		var to string
		switch {
		case strings.TrimSpace(f.Dest) != "":
			to = b.endpoint(f.Dest)
		default:
			var ok bool
			if to, ok = b.serviceRef(f.Service); !ok {
				svc := strings.TrimSpace(f.Service)
				to = b.address(AddressMissingPod, svc, svc+"\n(Service not drawn)")
			}
		}
		proto := strings.ToUpper(strings.TrimSpace(f.Protocol))
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		k := flowKey{from: from, to: to, port: f.Port, proto: proto, allowed: f.Allowed}
		e := b.flowE[k]
		if e == nil {
			color := ColorAllowed
			if !f.Allowed {
				color = ColorDenied
			}
			e = &Edge{Kind: EdgeFlow, From: from, To: to, Color: color, Port: f.Port, Protocol: proto, Allowed: f.Allowed}
			b.flowE[k] = e
		}
		e.Count++
		if !f.Allowed {
			e.Policies = appendNew(e.Policies, f.Policies...)
		}
		if svc := strings.TrimSpace(f.Service); svc != "" {
			// A drawn Service is named as namespace/name, however the log
			// gave it.
			id, ok := b.serviceRef(svc)
			if ok {
				svc = strings.TrimPrefix(id, "svc:")
			}
			if id != to {
				e.Via = appendNew(e.Via, svc)
			}
		}
	}
}

// serviceRef returns the ID of the drawn Service that a flow's Service
// names: "namespace/name", "namespace/name:port" (as the node agents' flow
// log writes it), or its address with or without a port.
func (b *builder) serviceRef(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		s = ap.Addr().String()
	}
	if addr, err := netip.ParseAddr(s); err == nil {
		id := b.ips[addr]
		_, ok := b.services[id]
		return id, ok
	}
	ns, name, _ := strings.Cut(s, "/")
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		if _, err := strconv.ParseUint(name[i+1:], 10, 16); err == nil {
			name = name[:i]
		}
	}
	id := ServiceID(ns, name)
	_, ok := b.services[id]
	return id, ok
}

// appendNew appends the elements of add that s does not hold yet.
func appendNew(s []string, add ...string) []string {
	for _, a := range add {
		if a != "" && !slices.Contains(s, a) {
			s = append(s, a)
		}
	}
	return s
}

// finish sorts everything, applies the caps and writes the labels.
func (b *builder) finish() {
	g := b.g
	for _, name := range slices.Sorted(maps.Keys(b.nodes)) {
		n := b.nodes[name]
		for _, p := range n.pods {
			n.node.Pods = append(n.node.Pods, p.pod)
		}
		g.Nodes = append(g.Nodes, n.node)
	}

	policyEdges := make([]Edge, 0, len(b.policyE))
	for k, pe := range b.policyE {
		e := Edge{
			Kind: EdgePolicy, From: k[0], To: k[1], Color: ColorAllowed, Dashed: true,
			Policies: slices.Sorted(maps.Keys(pe.policies)),
		}
		if !pe.allPorts {
			e.Ports = slices.Sorted(maps.Keys(pe.ports))
		}
		// A policy selects pods of its own namespace, so the name alone is
		// clear next to the pod the edge points to.
		names := make([]string, len(e.Policies))
		for i, p := range e.Policies {
			names[i] = shortPolicy(p, b.podNamespace(e.To))
		}
		e.Label = "allowed by " + strings.Join(names, ", ")
		if len(e.Ports) > 0 {
			e.Label += " (" + strings.Join(e.Ports, ", ") + ")"
		}
		policyEdges = append(policyEdges, e)
	}
	slices.SortFunc(policyEdges, compareEdges)
	if n := len(policyEdges); n > MaxPolicyEdges {
		policyEdges = policyEdges[:MaxPolicyEdges]
		b.note("Policy edges: %d of %d drawn; the policies allow more peers than a picture can show.", MaxPolicyEdges, n)
	}

	flowEdges := make([]Edge, 0, len(b.flowE))
	for _, e := range b.flowE {
		slices.Sort(e.Policies)
		slices.Sort(e.Via)
		e.Label = flowLabel(e)
		flowEdges = append(flowEdges, *e)
	}
	if n := len(flowEdges); n > MaxFlowEdges {
		// Keep the denied flows, then the most frequent ones.
		slices.SortFunc(flowEdges, func(a, b Edge) int {
			if a.Allowed != b.Allowed {
				if !a.Allowed {
					return -1
				}
				return 1
			}
			if c := cmp.Compare(b.Count, a.Count); c != 0 {
				return c
			}
			return compareEdges(a, b)
		})
		flowEdges = flowEdges[:MaxFlowEdges]
		b.note("Flows: %d of %d distinct flows drawn (denied ones first, then the most frequent).", MaxFlowEdges, n)
	}
	if b.badFlows > 0 {
		b.note("Flows: %d without a source or destination left out.", b.badFlows)
	}

	// Keep only the addresses that some kept edge uses.
	used := map[string]bool{}
	g.Edges = append(g.Edges, b.selects...)
	g.Edges = append(g.Edges, policyEdges...)
	g.Edges = append(g.Edges, flowEdges...)
	slices.SortFunc(g.Edges, compareEdges)
	for _, e := range g.Edges {
		used[e.From], used[e.To] = true, true
	}
	for id, a := range b.addresses {
		if used[id] {
			g.Addresses = append(g.Addresses, *a)
		}
	}
	slices.SortFunc(g.Addresses, func(a, b Address) int {
		if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// podNamespace returns the namespace of the drawn pod id, or "".
func (b *builder) podNamespace(id string) string {
	if p := b.pods[id]; p != nil {
		return p.pod.Namespace
	}
	return ""
}

// shortPolicy returns the policy namespace/name without its namespace when
// that is ns.
func shortPolicy(name, ns string) string {
	if rest, ok := strings.CutPrefix(name, ns+"/"); ok && ns != "" {
		return rest
	}
	return name
}

// flowLabel is the text of a flow edge: port/protocol, the Services, the
// count and, when denied, the deciding policies.
func flowLabel(e *Edge) string {
	s := e.Protocol
	if e.Port != 0 {
		s = strconv.Itoa(int(e.Port)) + "/" + e.Protocol
	}
	if len(e.Via) > 0 {
		s += " via " + strings.Join(e.Via, ", ")
	}
	if e.Count > 1 {
		s += " ×" + strconv.Itoa(e.Count)
	}
	if !e.Allowed {
		if len(e.Policies) > 0 {
			s += "\ndenied by " + strings.Join(e.Policies, ", ")
		} else {
			s += "\ndenied"
		}
	}
	return s
}

// compareEdges orders edges by kind, ends, then the rest of their key.
func compareEdges(a, b Edge) int {
	return cmp.Or(
		cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.From, b.From),
		cmp.Compare(a.To, b.To),
		cmp.Compare(a.Protocol, b.Protocol),
		cmp.Compare(a.Port, b.Port),
		compareBool(a.Allowed, b.Allowed),
		cmp.Compare(a.Label, b.Label),
	)
}

// compareBool orders false before true.
func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// sortedObjects returns the non-nil elements of objs sorted by key (stable,
// so that of duplicates the earlier one wins).
func sortedObjects[T any](objs []*T, key func(*T) string) []*T {
	out := make([]*T, 0, len(objs))
	for _, o := range objs {
		if o != nil {
			out = append(out, o)
		}
	}
	slices.SortStableFunc(out, func(a, b *T) int { return cmp.Compare(key(a), key(b)) })
	return out
}
