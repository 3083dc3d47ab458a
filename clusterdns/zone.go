package clusterdns

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// nodeFlags say what kind of name a node is.
type nodeFlags uint8

const (
	nodeApex       nodeFlags = 1 << iota // the cluster domain itself: SOA, NS
	nodeReverse4                         // an in-addr.arpa name we answer PTR for
	nodeReverse6                         // an ip6.arpa name we answer PTR for
	nodeServicePTR                       // a reverse name that a Service or endpoint names
	nodeCNAME                            // an ExternalName: more.cname is set
)

// srvTarget is one SRV record of a node, without owner, priority and
// weight: those depend on the question and on how many records answer it.
type srvTarget struct {
	port   uint16
	target string       // lowercase FQDN
	addrs  []netip.Addr // the target's addresses, for the additional section
}

// node is one name of the zone. A node without records is an empty
// non-terminal: it exists (NODATA) but holds nothing. Most nodes hold
// addresses only; the rarer records live in more.
type node struct {
	flags nodeFlags
	nA    uint16       // A records in wire
	a     []netip.Addr // IPv4 addresses (A)
	aaaa  []netip.Addr // IPv6 addresses (AAAA)
	// wire is the node's A then AAAA records packed for the fast path; each
	// record's owner is a compression pointer to the question (offset 12),
	// so they follow any question for this name.
	wire []byte
	more *nodeMore
}

type nodeMore struct {
	cname string // ExternalName target, lowercase FQDN
	srv   []srvTarget
	ptr   []string // PTR targets, lowercase FQDNs
	txt   string   // dns-version
}

func (n *node) cname() string {
	if n.more == nil {
		return ""
	}
	return n.more.cname
}

func (n *node) srv() []srvTarget {
	if n.more == nil {
		return nil
	}
	return n.more.srv
}

func (n *node) ptr() []string {
	if n.more == nil {
		return nil
	}
	return n.more.ptr
}

func (n *node) txt() string {
	if n.more == nil {
		return ""
	}
	return n.more.txt
}

// wireA and wireAAAA are the packed A and AAAA records.
func (n *node) wireA() []byte    { return n.wire[:16*int(n.nA)] }
func (n *node) wireAAAA() []byte { return n.wire[16*int(n.nA):] }

// zone is an immutable snapshot of the cluster's names, built by Update and
// read concurrently by every query.
type zone struct {
	origin     string // the cluster domain, lowercase FQDN
	ttl        uint32
	serial     uint32
	names      map[string]int32 // lowercase FQDN -> index in nodes
	nodes      []node
	nsName     string // ns.dns.<origin>
	hostmaster string // hostmaster.<origin>
	wireOrigin []byte // origin in wire form, for the fast path's SOA
}

// dnsVersion is the schema version of the Kubernetes DNS specification
// served at dns-version.<domain>, and its TTL, as CoreDNS serves them.
const (
	dnsVersion    = "1.1.0"
	dnsVersionTTL = 28800
)

// inZone reports whether the lowercase FQDN lname is the zone's origin or
// below it.
func (z *zone) inZone(lname string) bool {
	return inDomain(lname, z.origin)
}

// inDomain reports whether lowercase FQDN name is origin or a name below it.
func inDomain(name, origin string) bool {
	if len(name) == len(origin) {
		return name == origin
	}
	return len(name) > len(origin) && name[len(name)-len(origin)-1] == '.' && strings.HasSuffix(name, origin)
}

// zoneBuilder builds a zone from Records in O(names).
type zoneBuilder struct {
	z          *zone
	log        *slog.Logger
	skipped    int
	dedup      map[addrAt]struct{} // for nodes with many addresses
	namespaces map[string]bool     // namespace as given -> is a DNS label

	// Slabs for the many one-element lists and the nodeMores: one
	// allocation per chunk instead of one per name.
	addrSlab []netip.Addr
	strSlab  []string
	moreSlab []nodeMore
}

const slabChunk = 1024

// one returns a list holding only ip, with no room to grow in place.
func (b *zoneBuilder) one(ip netip.Addr) []netip.Addr {
	if len(b.addrSlab) == cap(b.addrSlab) {
		b.addrSlab = make([]netip.Addr, 0, slabChunk)
	}
	b.addrSlab = append(b.addrSlab, ip)
	n := len(b.addrSlab)
	return b.addrSlab[n-1 : n : n]
}

func (b *zoneBuilder) oneString(s string) []string {
	if len(b.strSlab) == cap(b.strSlab) {
		b.strSlab = make([]string, 0, slabChunk)
	}
	b.strSlab = append(b.strSlab, s)
	n := len(b.strSlab)
	return b.strSlab[n-1 : n : n]
}

// more returns node i's nodeMore, taking it from a slab.
func (b *zoneBuilder) more(i int32) *nodeMore {
	n := &b.z.nodes[i]
	if n.more == nil {
		if len(b.moreSlab) == cap(b.moreSlab) {
			b.moreSlab = make([]nodeMore, 0, slabChunk)
		}
		b.moreSlab = append(b.moreSlab, nodeMore{})
		n.more = &b.moreSlab[len(b.moreSlab)-1]
	}
	return n.more
}

type addrAt struct {
	node int32
	addr netip.Addr
}

func buildZone(origin string, ttl, serial uint32, dnsIP netip.Addr, r Records, log *slog.Logger) *zone {
	nNames := 8 + 2*len(r.Namespaces) + 2*len(r.Pods)
	for i := range r.Services {
		svc := &r.Services[i]
		nNames += 2 + len(svc.Ports) + len(svc.ClusterIPs) + 2*len(svc.Endpoints)
	}
	b := &zoneBuilder{
		z: &zone{
			origin:     origin,
			ttl:        ttl,
			serial:     serial,
			names:      make(map[string]int32, nNames),
			nodes:      make([]node, 0, nNames),
			nsName:     "ns.dns." + origin,
			hostmaster: "hostmaster." + origin,
			wireOrigin: wireName(origin),
		},
		log:        log,
		namespaces: map[string]bool{},
	}
	z := b.z
	z.nodes = append(z.nodes, node{flags: nodeApex})
	z.names[origin] = 0
	b.addAddr(b.ensure(z.nsName), dnsIP)
	b.more(b.ensure("dns-version." + origin)).txt = dnsVersion
	b.ensure("svc." + origin)
	b.ensure("pod." + origin)
	for _, ns := range r.Namespaces {
		b.namespace(ns)
	}

	// Headless Services by namespace and name, for pods' hostname.subdomain.
	var headless map[string]int
	for i := range r.Services {
		svc := &r.Services[i]
		if !b.namespace(svc.Namespace) {
			continue
		}
		name, ok := label(svc.Name)
		if !ok {
			b.skip("service", svc.Namespace+"/"+svc.Name, "name is not a DNS label")
			continue
		}
		base := name + "." + strings.ToLower(svc.Namespace) + ".svc." + origin
		switch {
		case svc.ExternalName != "":
			b.externalName(svc, base)
		case svc.Headless:
			b.headless(svc, base)
			if headless == nil {
				headless = map[string]int{}
			}
			headless[base] = i
		default:
			b.clusterIP(svc, base)
		}
	}

	// Pods: a-b-c-d.<ns>.pod.<domain>, hostname.subdomain names not covered
	// by an endpoint, and a PTR for pod IPs no Service names.
	type podPTR struct {
		addr netip.Addr
		name string
	}
	ptrs := make([]podPTR, 0, len(r.Pods))
	for i := range r.Pods {
		p := &r.Pods[i]
		if !p.IP.IsValid() || !b.namespace(p.Namespace) {
			continue
		}
		ip := p.IP.Unmap().WithZone("")
		podName := dashed(ip) + "." + strings.ToLower(p.Namespace) + ".pod." + origin
		b.addAddr(b.ensure(podName), ip)
		ptrs = append(ptrs, podPTR{ip, podName})
		if p.Hostname == "" || p.Subdomain == "" {
			continue
		}
		host, ok1 := label(p.Hostname)
		sub, ok2 := label(p.Subdomain)
		if !ok1 || !ok2 {
			continue
		}
		base := sub + "." + strings.ToLower(p.Namespace) + ".svc." + origin
		si, ok := headless[base]
		if !ok || isEndpoint(&r.Services[si], p, ip) {
			continue
		}
		b.addAddr(b.ensure(host+"."+base), ip)
	}
	for _, p := range ptrs {
		b.addPTR(p.addr, p.name, true)
	}
	b.pack()
	if b.skipped > 0 {
		log.Warn("clusterdns: skipped objects with names that are not DNS names", "count", b.skipped)
	}
	return z
}

// isEndpoint reports whether pod p (at ip) is among the endpoints of svc,
// ready or not: then the endpoint decides whether its name is answered.
func isEndpoint(svc *Service, p *Pod, ip netip.Addr) bool {
	for i := range svc.Endpoints {
		e := &svc.Endpoints[i]
		if e.PodName != "" {
			if e.PodName == p.Name && e.PodNamespace == p.Namespace {
				return true
			}
			continue
		}
		if e.Addr.Unmap().WithZone("") == ip {
			return true
		}
	}
	return false
}

func (b *zoneBuilder) skip(kind, name, why string) {
	b.skipped++
	b.log.Debug("clusterdns: skipped", "kind", kind, "name", name, "reason", why)
}

// namespace makes <ns>.svc and <ns>.pod exist; it reports false (and
// counts a skip) when ns is not a DNS label.
func (b *zoneBuilder) namespace(ns string) bool {
	if ok, seen := b.namespaces[ns]; seen {
		return ok
	}
	l, ok := label(ns)
	b.namespaces[ns] = ok
	if !ok {
		b.skip("namespace", ns, "not a DNS label")
		return false
	}
	b.ensure(l + ".svc." + b.z.origin)
	b.ensure(l + ".pod." + b.z.origin)
	return true
}

func (b *zoneBuilder) externalName(svc *Service, base string) {
	target := strings.ToLower(dns.Fqdn(svc.ExternalName))
	if _, ok := dns.IsDomainName(target); !ok || target == "." {
		b.skip("service", svc.Namespace+"/"+svc.Name, "externalName is not a DNS name")
		return
	}
	i := b.ensure(base)
	b.more(i).cname = target
	b.z.nodes[i].flags |= nodeCNAME
}

func (b *zoneBuilder) clusterIP(svc *Service, base string) {
	si := b.ensure(base)
	ips := svc.ClusterIPs
	all4 := true
	for _, ip := range ips {
		if !ip.Is4() {
			all4 = false
		}
	}
	if all4 {
		b.z.nodes[si].a = ips // shared with the caller's immutable Records
	} else {
		for _, ip := range ips {
			b.addAddr(si, ip)
		}
	}
	for _, ip := range ips {
		if ip.IsValid() {
			b.addPTR(ip.Unmap(), base, false)
		}
	}
	if len(svc.Ports) == 0 || len(ips) == 0 {
		return
	}
	srv := make([]srvTarget, len(svc.Ports))
	for i, p := range svc.Ports {
		srv[i] = srvTarget{port: p.Port, target: base, addrs: ips}
	}
	b.more(si).srv = srv
	for i, p := range svc.Ports {
		if pn := b.portName(p, base); pn != "" {
			b.more(b.ensure(pn)).srv = srv[i : i+1]
		}
	}
}

func (b *zoneBuilder) headless(svc *Service, base string) {
	si := b.ensure(base)
	// The answered endpoints, their names and addresses.
	var (
		names = make([]string, 0, len(svc.Endpoints))
		addrs = make([]netip.Addr, 0, len(svc.Endpoints))
		eps   = make([]*Endpoint, 0, len(svc.Endpoints))
	)
	for i := range svc.Endpoints {
		e := &svc.Endpoints[i]
		if !e.Addr.IsValid() || !(e.Ready || svc.PublishNotReady) {
			continue
		}
		ip := e.Addr.Unmap().WithZone("")
		host := dashed(ip)
		if e.Hostname != "" {
			h, ok := label(e.Hostname)
			if !ok {
				b.skip("endpoint", svc.Namespace+"/"+svc.Name+" "+e.Hostname, "hostname is not a DNS label")
				continue
			}
			host = h
		}
		name := host + "." + base
		names = append(names, name)
		addrs = append(addrs, ip)
		eps = append(eps, e)
		b.addAddr(si, ip)
		b.addAddr(b.ensure(name), ip)
		b.addPTR(ip, name, false)
	}
	if len(eps) == 0 || len(svc.Ports) == 0 {
		return
	}
	// SRV: for each Service port in order, one record per answered endpoint
	// that has the port; a named port's node takes its contiguous run.
	srv := make([]srvTarget, 0, len(eps)*len(svc.Ports))
	for _, p := range svc.Ports {
		start := len(srv)
		for j, e := range eps {
			ports := e.Ports
			if ports == nil {
				ports = svc.Ports
			}
			for _, q := range ports {
				if strings.EqualFold(q.Name, p.Name) && sameProtocol(q.Protocol, p.Protocol) {
					srv = append(srv, srvTarget{port: q.Port, target: names[j], addrs: addrs[j : j+1]})
					break
				}
			}
		}
		if pn := b.portName(p, base); pn != "" && len(srv) > start {
			b.more(b.ensure(pn)).srv = srv[start:len(srv):len(srv)]
		}
	}
	b.more(si).srv = srv
}

// portName is the SRV name _<port>._<proto>.<base> of a named port, or ""
// for an unnamed port or a name that is not a DNS label.
func (b *zoneBuilder) portName(p Port, base string) string {
	if p.Name == "" {
		return ""
	}
	name, ok := label(p.Name)
	if !ok {
		return ""
	}
	proto := "tcp"
	switch strings.ToLower(p.Protocol) {
	case "", "tcp":
	case "udp":
		proto = "udp"
	case "sctp":
		proto = "sctp"
	default:
		return ""
	}
	return "_" + name + "._" + proto + "." + base
}

func sameProtocol(a, b string) bool {
	if a == "" {
		a = "TCP"
	}
	if b == "" {
		b = "TCP"
	}
	return strings.EqualFold(a, b)
}

// ensure returns the index of the node named name, creating it and the
// empty non-terminals above it (up to the origin) as needed.
func (b *zoneBuilder) ensure(name string) int32 {
	z := b.z
	if i, ok := z.names[name]; ok {
		return i
	}
	i := int32(len(z.nodes))
	z.nodes = append(z.nodes, node{})
	z.names[name] = i
	if name != z.origin && inDomain(name, z.origin) {
		b.ensure(name[strings.IndexByte(name, '.')+1:])
	}
	return i
}

// addAddr adds ip to node i's A or AAAA records, once.
func (b *zoneBuilder) addAddr(i int32, ip netip.Addr) {
	if !ip.IsValid() {
		return
	}
	ip = ip.Unmap().WithZone("")
	n := &b.z.nodes[i]
	list := &n.aaaa
	if ip.Is4() {
		list = &n.a
	}
	if len(*list) < 16 {
		for _, a := range *list {
			if a == ip {
				return
			}
		}
	} else {
		if b.dedup == nil {
			b.dedup = map[addrAt]struct{}{}
		}
		if len(*list) == 16 { // switch to the map: enter what is there
			for _, a := range *list {
				b.dedup[addrAt{i, a}] = struct{}{}
			}
		}
		if _, ok := b.dedup[addrAt{i, ip}]; ok {
			return
		}
		b.dedup[addrAt{i, ip}] = struct{}{}
	}
	if *list == nil {
		*list = b.one(ip)
		return
	}
	*list = append(*list, ip)
}

// addPTR makes the reverse name of ip answer target. A pod's own name
// (fromPod) is added only where no Service or endpoint names the address.
func (b *zoneBuilder) addPTR(ip netip.Addr, target string, fromPod bool) {
	rev := reverseName(ip)
	z := b.z
	i, ok := z.names[rev]
	if !ok {
		i = int32(len(z.nodes))
		flags := nodeReverse4
		if !ip.Is4() {
			flags = nodeReverse6
		}
		z.nodes = append(z.nodes, node{flags: flags})
		z.names[rev] = i
	}
	n := &z.nodes[i]
	if fromPod && n.flags&nodeServicePTR != 0 {
		return
	}
	if !fromPod {
		n.flags |= nodeServicePTR
	}
	m := b.more(i)
	for _, p := range m.ptr {
		if p == target {
			return
		}
	}
	if m.ptr == nil {
		m.ptr = b.oneString(target)
		return
	}
	m.ptr = append(m.ptr, target)
}

// pack prepacks every node's A and AAAA records for the fast path, in one
// slab.
func (b *zoneBuilder) pack() {
	z := b.z
	size := 0
	for i := range z.nodes {
		size += 16*len(z.nodes[i].a) + 28*len(z.nodes[i].aaaa)
	}
	slab := make([]byte, 0, size)
	rr := func(t uint16, ip netip.Addr) {
		slab = append(slab, 0xC0, 12) // owner: the question's name
		slab = binary.BigEndian.AppendUint16(slab, t)
		slab = binary.BigEndian.AppendUint16(slab, dns.ClassINET)
		slab = binary.BigEndian.AppendUint32(slab, z.ttl)
		s := ip.AsSlice()
		slab = binary.BigEndian.AppendUint16(slab, uint16(len(s)))
		slab = append(slab, s...)
	}
	for i := range z.nodes {
		n := &z.nodes[i]
		if len(n.a) == 0 && len(n.aaaa) == 0 {
			continue
		}
		if 16*len(n.a)+28*len(n.aaaa) > MaxUDPSize {
			continue // never fits a datagram: the general path truncates
		}
		start := len(slab)
		for _, ip := range n.a {
			rr(dns.TypeA, ip)
		}
		for _, ip := range n.aaaa {
			rr(dns.TypeAAAA, ip)
		}
		n.wire, n.nA = slab[start:len(slab):len(slab)], uint16(len(n.a))
	}
}

// label returns s lowercased when it is a DNS label this zone can hold:
// 1 to 63 letters, digits, '-' or '_'.
func label(s string) (string, bool) {
	if len(s) == 0 || len(s) > 63 {
		return "", false
	}
	lower := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case 'A' <= c && c <= 'Z':
			lower = false
		default:
			return "", false
		}
	}
	if !lower {
		s = strings.ToLower(s)
	}
	return s, true
}

// dashed is the name CoreDNS gives an address: 10-244-1-5, or for IPv6 the
// compressed form with '-' for ':' (fd00--5).
func dashed(ip netip.Addr) string {
	if ip.Is4() {
		var buf [15]byte
		a := ip.As4()
		b := buf[:0]
		for i, v := range a {
			if i > 0 {
				b = append(b, '-')
			}
			b = appendUint8(b, v)
		}
		return string(b)
	}
	return strings.ReplaceAll(ip.String(), ":", "-")
}

// reverseName is the in-addr.arpa or ip6.arpa name of ip, lowercase FQDN.
func reverseName(ip netip.Addr) string {
	const hex = "0123456789abcdef"
	var buf [64 + len("ip6.arpa.")]byte
	b := buf[:0]
	if ip.Is4() {
		a := ip.As4()
		for i := 3; i >= 0; i-- {
			b = appendUint8(b, a[i])
			b = append(b, '.')
		}
		return string(append(b, "in-addr.arpa."...))
	}
	a := ip.As16()
	for i := 15; i >= 0; i-- {
		b = append(b, hex[a[i]&0xF], '.', hex[a[i]>>4], '.')
	}
	return string(append(b, "ip6.arpa."...))
}

func appendUint8(b []byte, v uint8) []byte {
	if v >= 100 {
		b = append(b, '0'+v/100)
	}
	if v >= 10 {
		b = append(b, '0'+v/10%10)
	}
	return append(b, '0'+v%10)
}

// wireName is the uncompressed wire form of a lowercase FQDN of plain
// labels.
func wireName(name string) []byte {
	b := make([]byte, len(name)+1)
	n, err := dns.PackDomainName(name, b, 0, nil, false)
	if err != nil {
		return nil
	}
	return b[:n]
}
