package cluster

import (
	"fmt"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The API group and version of the Lab kind.
const (
	LabGroup      = "podnet.dev"
	LabVersion    = "v1alpha1"
	LabAPIVersion = LabGroup + "/" + LabVersion
)

// Defaults of a LabSpec, and the bounds of its MTU.
const (
	DefaultClusterCIDR   = "10.244.0.0/16"
	DefaultServiceCIDR   = "10.96.0.0/16"
	DefaultClusterDomain = "cluster.local"
	DefaultMTU           = 1500
	// DefaultHostMTU is the pod MTU when a node has an explicit address (a real host): a
	// 1500-byte underlay less WireGuard's 80 bytes over IPv6 (60 over IPv4). Lab nodes on
	// loopback addresses have a 65536-byte underlay, where 1500 leaves room to spare.
	DefaultHostMTU = 1420
	MinMTU         = 1280
	MaxMTU         = 65520

	// NodePodCIDRBits is the prefix length of each node's pod CIDR.
	NodePodCIDRBits = 24
	// maxServiceCIDRBits is the longest serviceCIDR: a /28 leaves room for
	// the default DNS address (the 10th) and a few Services.
	maxServiceCIDRBits = 28
	// dnsIPOffset is the position of the default DNS address in the
	// serviceCIDR.
	dnsIPOffset = 10

	// The default ports of the nodes' Ingress controllers: the standard ones
	// when the lab runs as root, and unprivileged ones when it runs rootless.
	DefaultIngressHTTPPort          = 80
	DefaultIngressHTTPSPort         = 443
	DefaultRootlessIngressHTTPPort  = 8080
	DefaultRootlessIngressHTTPSPort = 8443
)

// Lab describes a local lab: its network and its nodes. A lab file holds at
// most one Lab document.
type Lab struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec LabSpec `json:"spec"`
}

// LabSpec is the network and the nodes of a lab. Zero values take the
// defaults noted on each field.
type LabSpec struct {
	// ClusterCIDR is the pod network; each node gets a /24 of it, in node
	// order. Default 10.244.0.0/16.
	ClusterCIDR string `json:"clusterCIDR,omitempty"`
	// ServiceCIDR is where Services' cluster IPs come from. It must not
	// overlap ClusterCIDR. Default 10.96.0.0/16.
	ServiceCIDR string `json:"serviceCIDR,omitempty"`
	// ClusterDomain is the DNS domain of the cluster. Default cluster.local.
	ClusterDomain string `json:"clusterDomain,omitempty"`
	// DNSIP is the cluster DNS server's address, inside ServiceCIDR.
	// Default: the 10th address of ServiceCIDR (10.96.0.10).
	DNSIP string `json:"dnsIP,omitempty"`
	// DNS configures how the cluster DNS resolves names outside the cluster.
	DNS LabDNS `json:"dns,omitempty"`
	// MTU is the pods' MTU, from 1280 to 65520. Default 1500.
	MTU int `json:"mtu,omitempty"`
	// Ingress sets the ports every node's Ingress controller listens on, at
	// the node's address: httpPort for plain HTTP and httpsPort for TLS.
	// Zero (unset) is the default for the lab's mode, which the lab file
	// cannot know: 80 and 443 when the lab runs as root, 8080 and 8443 when
	// it runs rootless (where binding a port below 1024 needs the host's
	// net.ipv4.ip_unprivileged_port_start to allow it). The ports must differ
	// from each other and lie outside the NodePort range 30000-32767.
	// Network.IngressPorts resolves them.
	Ingress LabIngress `json:"ingress,omitzero"`
	// HostLoopback says whether pods reach the host's loopback services
	// (127.0.0.1) at their gateway address: with it, `curl
	// http://10.244.0.1:8000/` from a pod reaches a server on the host's
	// 127.0.0.1:8000, as slirp4netns and pasta map the host's loopback. It
	// exposes every TCP and UDP service bound to the host's 127.0.0.1 to
	// every pod of the lab. Default true; false refuses connections to the
	// gateway. (Kubernetes mode never maps it.)
	HostLoopback *bool `json:"hostLoopback,omitempty"`
	// FlowLog says whether the nodes keep a log of the new flows they see
	// (`podnet flows`, `podnet check`'s reasons, `podnet lab graph`'s
	// flows). Default true; false spares the data path its look at each
	// connection attempt and first datagram.
	FlowLog *bool `json:"flowLog,omitempty"`
	// MaxNewFlowsPerPod bounds the new flows (TCP SYNs, first UDP and SCTP
	// datagrams) each pod may start a second; more are dropped and counted.
	// 0 (unset) is the default, 1,000 for each CPU the lab's daemon may use;
	// -1 means no bound.
	MaxNewFlowsPerPod int `json:"maxNewFlowsPerPod,omitempty"`
	// RealtimePriority, from 1 to 99, runs the lab's daemon, where the
	// nodes' data paths run, under the kernel's real-time policy SCHED_RR
	// at that priority (the lowest, 1, is enough), so that a busy process
	// on the host cannot delay a packet by its time slice; the pods' own
	// processes stay under the ordinary policy. It needs root,
	// CAP_SYS_NICE or an RLIMIT_RTPRIO of at least the priority. 0 (unset):
	// the ordinary policy.
	RealtimePriority int `json:"realtimePriority,omitempty"`
	// Nodes are the lab's nodes, at least one.
	Nodes []LabNode `json:"nodes"`
}

// LabDNS configures the cluster DNS.
type LabDNS struct {
	// Upstreams are the servers, as "IP:port", that names outside the
	// cluster are forwarded to. Empty: the servers of the host's
	// /etc/resolv.conf.
	Upstreams []string `json:"upstreams,omitempty"`
}

// LabIngress is where the nodes' Ingress controllers listen; see
// LabSpec.Ingress.
type LabIngress struct {
	// HTTPPort is the TCP port for HTTP. Zero: 80 as root, 8080 rootless.
	HTTPPort int32 `json:"httpPort,omitempty"`
	// HTTPSPort is the TCP port for HTTPS. Zero: 443 as root, 8443 rootless.
	HTTPSPort int32 `json:"httpsPort,omitempty"`
}

// LabNode is one node of a lab.
type LabNode struct {
	// Name is the node's name, a DNS label.
	Name string `json:"name"`
	// Address is the IPv4 address the node's agent listens on for its
	// WireGuard port, NodePorts and Ingress. Empty: a loopback address
	// chosen by the lab.
	Address string `json:"address,omitempty"`
}

var _ runtime.Object = (*Lab)(nil)

// DeepCopyInto copies in into out.
func (in *Lab) DeepCopyInto(out *Lab) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	in.Spec.DeepCopyInto(&out.Spec)
}

// DeepCopy returns a deep copy of in.
func (in *Lab) DeepCopy() *Lab {
	if in == nil {
		return nil
	}
	out := new(Lab)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *Lab) DeepCopyObject() runtime.Object {
	if c := in.DeepCopy(); c != nil {
		return c
	}
	return nil
}

// DeepCopyInto copies in into out.
func (in *LabSpec) DeepCopyInto(out *LabSpec) {
	*out = *in
	out.DNS.Upstreams = slices.Clone(in.DNS.Upstreams)
	out.Nodes = slices.Clone(in.Nodes)
	if in.HostLoopback != nil {
		v := *in.HostLoopback
		out.HostLoopback = &v
	}
	if in.FlowLog != nil {
		v := *in.FlowLog
		out.FlowLog = &v
	}
}

// NodeNames returns the names of the lab's nodes, in order.
func (l *Lab) NodeNames() []string {
	names := make([]string, len(l.Spec.Nodes))
	for i, n := range l.Spec.Nodes {
		names[i] = n.Name
	}
	return names
}

// setLabDefaults fills in the zero fields of spec that have a default. The
// default DNSIP is set only when ServiceCIDR is an IPv4 prefix.
func setLabDefaults(spec *LabSpec) {
	if spec.ClusterCIDR == "" {
		spec.ClusterCIDR = DefaultClusterCIDR
	}
	if spec.ServiceCIDR == "" {
		spec.ServiceCIDR = DefaultServiceCIDR
	}
	if spec.ClusterDomain == "" {
		spec.ClusterDomain = DefaultClusterDomain
	}
	if spec.MTU == 0 {
		spec.MTU = DefaultMTU
		for _, n := range spec.Nodes {
			if n.Address != "" {
				// A node on a real host: its underlay is likely a 1500-byte link.
				spec.MTU = DefaultHostMTU
			}
		}
	}
	if spec.DNSIP == "" {
		if p, err := netip.ParsePrefix(spec.ServiceCIDR); err == nil && p.Addr().Is4() && p.Bits() <= maxServiceCIDRBits {
			spec.DNSIP = addrAdd(p.Masked().Addr(), dnsIPOffset).String()
		}
	}
}

// Network is the parsed, defaulted form of a LabSpec.
type Network struct {
	ClusterCIDR netip.Prefix
	ServiceCIDR netip.Prefix
	DNSIP       netip.Addr
	Domain      string
	MTU         int
	// Upstreams are the DNS servers for names outside the cluster. Empty:
	// the servers of the host's /etc/resolv.conf.
	Upstreams []netip.AddrPort
	// IngressHTTPPort and IngressHTTPSPort are the Ingress controllers'
	// ports as the Lab sets them; zero means the default for the lab's mode.
	// IngressPorts resolves them.
	IngressHTTPPort, IngressHTTPSPort uint16
	// HostLoopback says whether pods reach the host's 127.0.0.1 at their
	// gateway (LabSpec.HostLoopback).
	HostLoopback bool
	// FlowLog says whether the nodes log new flows (LabSpec.FlowLog).
	FlowLog bool
	// MaxNewFlowsPerPod is LabSpec.MaxNewFlowsPerPod: 0 the default, -1 none.
	MaxNewFlowsPerPod int
	// RealtimePriority is LabSpec.RealtimePriority: 0 none.
	RealtimePriority int
}

// IngressPorts returns the TCP ports the nodes' Ingress controllers listen
// on for HTTP and HTTPS: those the Lab sets, and for those it leaves unset,
// 80 and 443 when the lab runs as root or 8080 and 8443 when it runs
// rootless.
func (n Network) IngressPorts(rootless bool) (http, https uint16) {
	http, https = DefaultIngressHTTPPort, DefaultIngressHTTPSPort
	if rootless {
		http, https = DefaultRootlessIngressHTTPPort, DefaultRootlessIngressHTTPSPort
	}
	if n.IngressHTTPPort != 0 {
		http = n.IngressHTTPPort
	}
	if n.IngressHTTPSPort != 0 {
		https = n.IngressHTTPSPort
	}
	return http, https
}

// Network returns the lab's network, with defaults applied. It fails if the
// lab's spec is invalid.
func (l *Lab) Network() (Network, error) {
	spec := l.Spec
	setLabDefaults(&spec)
	if errs := validateLabSpec(&spec, field.NewPath("spec")); len(errs) > 0 {
		return Network{}, fmt.Errorf("%s: %w", ObjectName(l), errs.ToAggregate())
	}
	// Validation has checked that all of these parse.
	n := Network{
		ClusterCIDR: netip.MustParsePrefix(spec.ClusterCIDR),
		ServiceCIDR: netip.MustParsePrefix(spec.ServiceCIDR),
		DNSIP:       netip.MustParseAddr(spec.DNSIP),
		Domain:      spec.ClusterDomain,
		MTU:         spec.MTU,
		// Validation has checked that both are ports.
		IngressHTTPPort:   uint16(spec.Ingress.HTTPPort),
		IngressHTTPSPort:  uint16(spec.Ingress.HTTPSPort),
		HostLoopback:      spec.HostLoopback == nil || *spec.HostLoopback,
		FlowLog:           spec.FlowLog == nil || *spec.FlowLog,
		MaxNewFlowsPerPod: spec.MaxNewFlowsPerPod,
		RealtimePriority:  spec.RealtimePriority,
	}
	for _, u := range spec.DNS.Upstreams {
		n.Upstreams = append(n.Upstreams, netip.MustParseAddrPort(u))
	}
	return n, nil
}

// PodCIDR returns the pod CIDR of the index-th node (0-based), as
// NodePodCIDR does.
func (n Network) PodCIDR(index int) (netip.Prefix, error) {
	return NodePodCIDR(n.ClusterCIDR, index)
}

// MaxNodes returns how many nodes the cluster CIDR has a /24 for.
func (n Network) MaxNodes() int {
	return maxNodes(n.ClusterCIDR)
}

func maxNodes(cluster netip.Prefix) int {
	if !cluster.Addr().Is4() || cluster.Bits() > NodePodCIDRBits || cluster.Bits() < 0 {
		return 0
	}
	return 1 << (NodePodCIDRBits - cluster.Bits())
}

// NodePodCIDR returns the index-th /24 (0-based) of cluster, the pod CIDR
// the index-th node of a lab gets. cluster must be an IPv4 network address
// no longer than /24.
func NodePodCIDR(cluster netip.Prefix, index int) (netip.Prefix, error) {
	switch {
	case !cluster.IsValid() || !cluster.Addr().Is4():
		return netip.Prefix{}, fmt.Errorf("pod CIDR of node %d: cluster CIDR %s is not an IPv4 prefix", index, cluster)
	case cluster.Masked() != cluster:
		return netip.Prefix{}, fmt.Errorf("pod CIDR of node %d: cluster CIDR %s is not a network address", index, cluster)
	case cluster.Bits() > NodePodCIDRBits:
		return netip.Prefix{}, fmt.Errorf("pod CIDR of node %d: cluster CIDR %s is smaller than a /24", index, cluster)
	case index < 0 || index >= maxNodes(cluster):
		return netip.Prefix{}, fmt.Errorf("pod CIDR of node %d: cluster CIDR %s has room for %d nodes (one /24 each)", index, cluster, maxNodes(cluster))
	}
	return netip.PrefixFrom(addrAdd(cluster.Addr(), uint32(index)<<8), NodePodCIDRBits), nil
}

// AssignPodCIDRs gives each of nodes a /24 of cluster. A node that has one in
// current keeps it; the others get the lowest /24s that no node holds, in
// order. With an empty current, the i-th node gets NodePodCIDR(cluster, i).
// Nodes of current that are not in nodes give theirs up.
//
// A lab whose node list changes while it runs uses this, so that a running
// node's pod CIDR never moves when a node before it is removed.
func AssignPodCIDRs(cluster netip.Prefix, nodes []string, current map[string]netip.Prefix) (map[string]netip.Prefix, error) {
	if _, err := NodePodCIDR(cluster, 0); err != nil {
		return nil, fmt.Errorf("assign pod CIDRs: %w", err)
	}
	out := make(map[string]netip.Prefix, len(nodes))
	used := make(map[netip.Prefix]string, len(nodes))
	for _, n := range nodes {
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("assign pod CIDRs: node %q is listed twice", n)
		}
		out[n] = netip.Prefix{}
		p, ok := current[n]
		if !ok {
			continue
		}
		if p.Bits() != NodePodCIDRBits || p.Masked() != p || !cluster.Contains(p.Addr()) {
			return nil, fmt.Errorf("assign pod CIDRs: node %s holds %s, which is not a /24 of %s", n, p, cluster)
		}
		if other, taken := used[p]; taken {
			return nil, fmt.Errorf("assign pod CIDRs: nodes %s and %s both hold %s", other, n, p)
		}
		out[n] = p
		used[p] = n
	}
	next := 0
	for _, n := range nodes {
		if out[n].IsValid() {
			continue
		}
		for {
			p, err := NodePodCIDR(cluster, next)
			if err != nil {
				return nil, fmt.Errorf("assign pod CIDRs: no /24 of %s left for node %s (%d nodes)", cluster, n, len(nodes))
			}
			next++
			if _, taken := used[p]; !taken {
				out[n] = p
				used[p] = n
				break
			}
		}
	}
	return out, nil
}

// addrAdd returns the IPv4 address n after a.
func addrAdd(a netip.Addr, n uint32) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// lastAddr4 returns the highest (broadcast) address of an IPv4 prefix.
func lastAddr4(p netip.Prefix) netip.Addr {
	return addrAdd(p.Masked().Addr(), uint32(1<<(32-p.Bits())-1))
}

// reservedRanges are IPv4 ranges that neither the pod nor the Service
// network may overlap.
var reservedRanges = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "the \"this network\" range 0.0.0.0/8"},
	{netip.MustParsePrefix("127.0.0.0/8"), "the loopback range 127.0.0.0/8, where lab nodes get their addresses"},
	{netip.MustParsePrefix("224.0.0.0/4"), "the multicast range 224.0.0.0/4"},
	{netip.MustParsePrefix("240.0.0.0/4"), "the reserved range 240.0.0.0/4"},
}

// parseNetwork parses an IPv4 network prefix of the lab spec, reporting
// problems at path.
func parseNetwork(path *field.Path, s string) (netip.Prefix, field.ErrorList) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, field.ErrorList{field.Invalid(path, s, "must be an IPv4 network in CIDR notation, e.g. 10.244.0.0/16")}
	}
	if !p.Addr().Is4() {
		return p, field.ErrorList{field.Invalid(path, s, "must be an IPv4 network: podnet's pod and Service networks are IPv4")}
	}
	if p.Masked() != p {
		return p, field.ErrorList{field.Invalid(path, s, fmt.Sprintf("must be a network address, e.g. %s", p.Masked()))}
	}
	for _, r := range reservedRanges {
		if r.prefix.Overlaps(p) {
			return p, field.ErrorList{field.Invalid(path, s, "overlaps "+r.what)}
		}
	}
	return p, nil
}

// validateLab checks a Lab. It is called with defaults applied.
func validateLab(l *Lab) field.ErrorList {
	errs := validateObjectMeta(&l.ObjectMeta, KindLab, validation.IsDNS1123Label, field.NewPath("metadata"))
	return append(errs, validateLabSpec(&l.Spec, field.NewPath("spec"))...)
}

// validateLabSpec checks a LabSpec with defaults applied.
func validateLabSpec(spec *LabSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList

	clusterPath := path.Child("clusterCIDR")
	cluster, cerrs := parseNetwork(clusterPath, spec.ClusterCIDR)
	errs = append(errs, cerrs...)
	if len(cerrs) == 0 {
		switch room := maxNodes(cluster); {
		case cluster.Bits() > NodePodCIDRBits:
			errs = append(errs, field.Invalid(clusterPath, spec.ClusterCIDR, "must be a /24 or larger: each node gets a /24 of it"))
		case len(spec.Nodes) > room:
			errs = append(errs, field.Invalid(clusterPath, spec.ClusterCIDR,
				fmt.Sprintf("has room for %d nodes (a /24 each), but the lab has %d nodes", room, len(spec.Nodes))))
		}
	} else {
		cluster = netip.Prefix{}
	}

	servicePath := path.Child("serviceCIDR")
	service, serrs := parseNetwork(servicePath, spec.ServiceCIDR)
	errs = append(errs, serrs...)
	if len(serrs) == 0 {
		switch {
		case service.Bits() > maxServiceCIDRBits:
			errs = append(errs, field.Invalid(servicePath, spec.ServiceCIDR,
				fmt.Sprintf("must be a /%d or larger, to hold the cluster DNS address and Services", maxServiceCIDRBits)))
			service = netip.Prefix{}
		case cluster.IsValid() && cluster.Overlaps(service):
			errs = append(errs, field.Invalid(servicePath, spec.ServiceCIDR,
				fmt.Sprintf("overlaps %s %s", clusterPath, spec.ClusterCIDR)))
		}
	} else {
		service = netip.Prefix{}
	}

	dnsPath := path.Child("dnsIP")
	var dnsIP netip.Addr
	switch a, err := netip.ParseAddr(spec.DNSIP); {
	case spec.DNSIP == "" && !service.IsValid():
		// No default for lack of a valid serviceCIDR, which is reported.
	case err != nil || !a.Is4():
		errs = append(errs, field.Invalid(dnsPath, spec.DNSIP, "must be an IPv4 address inside "+servicePath.String()))
	case !service.IsValid():
		dnsIP = a
	case !service.Contains(a):
		errs = append(errs, field.Invalid(dnsPath, spec.DNSIP, fmt.Sprintf("must be inside %s %s", servicePath, service)))
	case a == service.Addr():
		errs = append(errs, field.Invalid(dnsPath, spec.DNSIP, fmt.Sprintf("must not be the network address of %s %s", servicePath, service)))
	case a == lastAddr4(service):
		errs = append(errs, field.Invalid(dnsPath, spec.DNSIP, fmt.Sprintf("must not be the broadcast address of %s %s", servicePath, service)))
	default:
		dnsIP = a
	}

	domainPath := path.Child("clusterDomain")
	for _, msg := range validation.IsDNS1123Subdomain(spec.ClusterDomain) {
		errs = append(errs, field.Invalid(domainPath, spec.ClusterDomain, msg))
	}

	if spec.MTU < MinMTU || spec.MTU > MaxMTU {
		errs = append(errs, field.Invalid(path.Child("mtu"), spec.MTU, validation.InclusiveRangeError(MinMTU, MaxMTU)))
	}
	if spec.MaxNewFlowsPerPod < -1 {
		errs = append(errs, field.Invalid(path.Child("maxNewFlowsPerPod"), spec.MaxNewFlowsPerPod,
			"must be a number of new flows a second, 0 for the default (1000 for each CPU), or -1 for no bound"))
	}
	if spec.RealtimePriority < 0 || spec.RealtimePriority > 99 {
		errs = append(errs, field.Invalid(path.Child("realtimePriority"), spec.RealtimePriority,
			"must be a SCHED_RR priority from 1 to 99, or 0 for the ordinary policy"))
	}

	upPath := path.Child("dns", "upstreams")
	seenUp := make(map[netip.AddrPort]bool)
	for i, u := range spec.DNS.Upstreams {
		p := upPath.Index(i)
		ap, err := netip.ParseAddrPort(u)
		switch {
		case err != nil:
			hint := "must be an IP address and a port, e.g. 1.1.1.1:53 or [2606:4700::1111]:53"
			if _, aerr := netip.ParseAddr(u); aerr == nil {
				hint += "; add the port, usually :53"
			}
			errs = append(errs, field.Invalid(p, u, hint))
		case ap.Port() == 0:
			errs = append(errs, field.Invalid(p, u, "port must be from 1 to 65535"))
		case ap.Addr().IsUnspecified() || ap.Addr().IsMulticast():
			errs = append(errs, field.Invalid(p, u, "must be the address of a DNS server"))
		case ap.Addr().Unmap() == dnsIP:
			errs = append(errs, field.Invalid(p, u, "is the cluster DNS address itself: forwarding to it would loop"))
		case seenUp[ap]:
			errs = append(errs, field.Duplicate(p, u))
		default:
			seenUp[ap] = true
		}
	}

	errs = append(errs, validateLabIngress(spec.Ingress, path.Child("ingress"))...)

	nodesPath := path.Child("nodes")
	if len(spec.Nodes) == 0 {
		errs = append(errs, field.Required(nodesPath, "a lab needs at least one node"))
	}
	names := make(map[string]bool, len(spec.Nodes))
	addrs := make(map[netip.Addr]bool, len(spec.Nodes))
	for i, n := range spec.Nodes {
		p := nodesPath.Index(i)
		switch {
		case n.Name == "":
			errs = append(errs, field.Required(p.Child("name"), ""))
		case names[n.Name]:
			errs = append(errs, field.Duplicate(p.Child("name"), n.Name))
		default:
			names[n.Name] = true
			for _, msg := range validation.IsDNS1123Label(n.Name) {
				errs = append(errs, field.Invalid(p.Child("name"), n.Name, msg))
			}
		}
		if n.Address == "" {
			continue
		}
		ap := p.Child("address")
		a, err := netip.ParseAddr(n.Address)
		switch {
		case err != nil || !a.Is4():
			errs = append(errs, field.Invalid(ap, n.Address, "must be an IPv4 address, e.g. 192.168.1.10"))
		case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			errs = append(errs, field.Invalid(ap, n.Address, "must be a unicast address of the node's host"))
		case cluster.IsValid() && cluster.Contains(a):
			errs = append(errs, field.Invalid(ap, n.Address, fmt.Sprintf("must not be inside %s %s", clusterPath, cluster)))
		case service.IsValid() && service.Contains(a):
			errs = append(errs, field.Invalid(ap, n.Address, fmt.Sprintf("must not be inside %s %s", servicePath, service)))
		case addrs[a]:
			errs = append(errs, field.Duplicate(ap, n.Address))
		default:
			addrs[a] = true
		}
	}
	return errs
}

// validateLabIngress checks the Ingress ports of a LabSpec: each unset or a
// port outside the NodePort range, and the two different in both modes (a
// port set on one must not be the other's default as root or rootless).
func validateLabIngress(in LabIngress, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	ports := []struct {
		name                   string
		port                   int32
		rootDefault, rlDefault int32
	}{
		{"httpPort", in.HTTPPort, DefaultIngressHTTPPort, DefaultRootlessIngressHTTPPort},
		{"httpsPort", in.HTTPSPort, DefaultIngressHTTPSPort, DefaultRootlessIngressHTTPSPort},
	}
	valid := true
	for _, p := range ports {
		fp := path.Child(p.name)
		switch {
		case p.port == 0:
		case p.port < 0 || p.port > 65535:
			errs = append(errs, field.Invalid(fp, p.port, validation.InclusiveRangeError(1, 65535)))
			valid = false
		case p.port >= NodePortMin && p.port <= NodePortMax:
			errs = append(errs, field.Invalid(fp, p.port,
				fmt.Sprintf("must be outside the NodePort range %d-%d, which the lab hands out to Services on the same addresses", NodePortMin, NodePortMax)))
			valid = false
		}
	}
	if !valid {
		return errs
	}
	for i, p := range ports {
		other := ports[1-i]
		switch {
		case p.port == 0:
		case other.port != 0:
			if i == 1 && p.port == other.port {
				errs = append(errs, field.Invalid(path.Child(p.name), p.port, "must differ from "+path.Child(other.name).String()))
			}
		case p.port == other.rootDefault || p.port == other.rlDefault:
			errs = append(errs, field.Invalid(path.Child(p.name), p.port,
				fmt.Sprintf("is the default %s (%d as root, %d rootless): set %s too", other.name, other.rootDefault, other.rlDefault, path.Child(other.name))))
		}
	}
	return errs
}

// ValidateLabChange checks that a running lab, described by old, can take
// the spec of new: the network (clusterCIDR, serviceCIDR, clusterDomain,
// dnsIP, mtu), hostLoopback, the Ingress ports and the address of a node that stays cannot
// change while the lab runs. Nodes may be added and removed, and the DNS upstreams may change.
// Unset fields compare as their defaults. It does not check new by itself:
// call Validate for that.
func ValidateLabChange(old, new *Lab) field.ErrorList {
	o, n := old.Spec, new.Spec
	setLabDefaults(&o)
	setLabDefaults(&n)
	spec := field.NewPath("spec")
	recreate := "run `podnet lab down` and `podnet lab up` to recreate the lab with it"
	var errs field.ErrorList
	for _, f := range []struct {
		name     string
		old, new string
		same     func(a, b string) bool
	}{
		{"clusterCIDR", o.ClusterCIDR, n.ClusterCIDR, samePrefix},
		{"serviceCIDR", o.ServiceCIDR, n.ServiceCIDR, samePrefix},
		{"clusterDomain", o.ClusterDomain, n.ClusterDomain, func(a, b string) bool { return a == b }},
		{"dnsIP", o.DNSIP, n.DNSIP, sameAddr},
		{"mtu", fmt.Sprint(o.MTU), fmt.Sprint(n.MTU), func(a, b string) bool { return a == b }},
		{"ingress.httpPort", ingressPortString(o.Ingress.HTTPPort), ingressPortString(n.Ingress.HTTPPort), func(a, b string) bool { return a == b }},
		{"ingress.httpsPort", ingressPortString(o.Ingress.HTTPSPort), ingressPortString(n.Ingress.HTTPSPort), func(a, b string) bool { return a == b }},
		{"hostLoopback", fmt.Sprint(o.HostLoopback == nil || *o.HostLoopback), fmt.Sprint(n.HostLoopback == nil || *n.HostLoopback), func(a, b string) bool { return a == b }},
		{"flowLog", fmt.Sprint(o.FlowLog == nil || *o.FlowLog), fmt.Sprint(n.FlowLog == nil || *n.FlowLog), func(a, b string) bool { return a == b }},
		{"maxNewFlowsPerPod", fmt.Sprint(o.MaxNewFlowsPerPod), fmt.Sprint(n.MaxNewFlowsPerPod), func(a, b string) bool { return a == b }},
		{"realtimePriority", fmt.Sprint(o.RealtimePriority), fmt.Sprint(n.RealtimePriority), func(a, b string) bool { return a == b }},
	} {
		if !f.same(f.old, f.new) {
			errs = append(errs, field.Forbidden(spec.Child(f.name),
				fmt.Sprintf("cannot change from %s to %s while the lab runs: %s", f.old, f.new, recreate)))
		}
	}
	oldAddr := make(map[string]string, len(o.Nodes))
	for _, node := range o.Nodes {
		oldAddr[node.Name] = node.Address
	}
	for i, node := range n.Nodes {
		if was, ok := oldAddr[node.Name]; ok && !sameAddr(was, node.Address) {
			errs = append(errs, field.Forbidden(spec.Child("nodes").Index(i).Child("address"),
				fmt.Sprintf("cannot change the address of running node %s from %s to %s: remove the node first, or %s",
					node.Name, orDefault(was), orDefault(node.Address), recreate)))
		}
	}
	return errs
}

// ingressPortString returns an Ingress port of a LabSpec as an error names it.
func ingressPortString(p int32) string {
	if p == 0 {
		return "the default"
	}
	return fmt.Sprint(p)
}

func orDefault(addr string) string {
	if addr == "" {
		return "the default"
	}
	return addr
}

func samePrefix(a, b string) bool {
	pa, erra := netip.ParsePrefix(a)
	pb, errb := netip.ParsePrefix(b)
	if erra != nil || errb != nil {
		return a == b
	}
	return pa == pb
}

func sameAddr(a, b string) bool {
	pa, erra := netip.ParseAddr(a)
	pb, errb := netip.ParseAddr(b)
	if erra != nil || errb != nil {
		return a == b
	}
	return pa == pb
}

// validateLabels checks label keys and values, reporting a bad key at path
// and a bad value at path[key].
func validateLabels(labels map[string]string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, k := range sortedKeys(labels) {
		for _, msg := range content.IsLabelKey(k) {
			errs = append(errs, field.Invalid(path, k, msg))
		}
		for _, msg := range content.IsLabelValue(labels[k]) {
			errs = append(errs, field.Invalid(path.Key(k), labels[k], msg))
		}
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
