package proxy

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// key is a lookup key of the table: an IPv4 address (zero for NodePorts),
// a port and a protocol. pad is always zero: with it the struct is eight
// bytes with no padding, so the map hashes it as plain memory.
type key struct {
	vip   [4]byte
	port  uint16
	proto uint8
	pad   uint8
}

// table is an immutable snapshot of the Services: Update builds a new one and
// swaps it in.
type table struct {
	svcs     []Service             // a clone of Update's slice: entries point into it
	cluster  map[key]*portEntry    // ClusterIP, port, protocol
	lb       map[key]*portEntry    // load-balancer IP, port, protocol
	nodePort map[key]*portEntry    // nodePort, protocol (vip zero)
	byID     map[uint32]*portEntry // Service ports with affinity, by affinity id
	udpReady []netip.AddrPort      // every ready UDP backend, sorted, no duplicates

	ports, endpoints int // counts, for the log
}

// portEntry is one Service port in the table.
type portEntry struct {
	svc      *Service
	ready    backends // every ready endpoint
	cluster  target   // for ClusterIP traffic
	external target   // for NodePort and load-balancer traffic
}

// allowed reports whether client may use e's load-balancer IPs.
func (e *portEntry) allowed(client netip.Addr) bool {
	if len(e.svc.SourceRanges) == 0 {
		return true
	}
	for _, r := range e.svc.SourceRanges {
		if r.Contains(client) {
			return true
		}
	}
	return false
}

// target is what one kind of traffic to a Service port may use.
type target struct {
	eps      backends
	affinity time.Duration // 0: none
	id       uint32        // affinity identity of the Service port
}

// backends is a list of backends, with an index for membership tests when
// the list is long and affinity needs them.
type backends struct {
	list  []netip.AddrPort
	index map[netip.AddrPort]struct{} // nil: search list
}

// linearMax is the longest list searched linearly (for duplicates at build,
// for membership under affinity).
const linearMax = 16

func (b *backends) has(a netip.AddrPort) bool {
	if b.index != nil {
		_, ok := b.index[a]
		return ok
	}
	return slices.Contains(b.list, a)
}

func (b *backends) indexIfLong() {
	if len(b.list) <= linearMax || b.index != nil {
		return
	}
	b.index = make(map[netip.AddrPort]struct{}, len(b.list))
	for _, a := range b.list {
		b.index[a] = struct{}{}
	}
}

// spName names a Service port for affinity across Updates.
type spName struct {
	ns, name string
	proto    Protocol
	port     uint16
}

// buildLocked builds the table of svcs in O(total endpoints): a few
// allocations sized up front, no per-endpoint allocation.
func (p *Proxy) buildLocked(svcs []Service) *table {
	t := &table{svcs: slices.Clone(svcs)}
	var nPorts, nCluster, nLB, nNodePort, nSlab, nUDP int
	for i := range t.svcs {
		s := &t.svcs[i]
		local := s.InternalLocal || s.ExternalLocal
		hasVIP := s.ClusterIP.Unmap().Is4()
		for j := range s.Ports {
			sp := &s.Ports[j]
			nPorts++
			if hasVIP {
				nCluster++
			}
			if sp.NodePort != 0 {
				nNodePort++
			}
			nLB += len(s.LoadBalancerIPs)
			for k := range sp.Endpoints {
				ep := &sp.Endpoints[k]
				t.endpoints++
				if !ep.Ready {
					continue
				}
				nSlab++
				if local && ep.Local {
					nSlab++
				}
				if sp.Protocol == UDP {
					nUDP++
				}
			}
		}
	}
	t.ports = nPorts
	entries := make([]portEntry, nPorts)
	slab := make([]netip.AddrPort, 0, nSlab)
	t.cluster = make(map[key]*portEntry, nCluster)
	t.lb = make(map[key]*portEntry, nLB)
	t.nodePort = make(map[key]*portEntry, nNodePort)
	if nUDP > 0 {
		t.udpReady = make([]netip.AddrPort, 0, nUDP)
	}
	ids := map[spName]uint32{}
	t.byID = map[uint32]*portEntry{}
	var seen map[netip.AddrPort]struct{} // for duplicates in long lists
	var skipped []string
	var conflicts int
	var firstConflict string
	noteConflict := func(s *Service, sp *Port, what string, other *portEntry) {
		if conflicts++; conflicts == 1 {
			firstConflict = conflict(s, sp, what, other)
		}
	}

	n := 0
	for i := range t.svcs {
		s := &t.svcs[i]
		vip := s.ClusterIP.Unmap()
		if s.ClusterIP.IsValid() && !vip.Is4() {
			skipped = append(skipped, fmt.Sprintf("%s/%s clusterIP %s", s.Namespace, s.Name, s.ClusterIP))
		}
		for j := range s.Ports {
			sp := &s.Ports[j]
			e := &entries[n]
			n++
			e.svc = s

			// Ready endpoints, without duplicates, then the local ones.
			start := len(slab)
			for k := range sp.Endpoints {
				ep := &sp.Endpoints[k]
				if !ep.Ready || dup(slab[start:], ep.Addr, &seen) {
					continue
				}
				slab = append(slab, ep.Addr)
			}
			e.ready.list = slab[start:len(slab):len(slab)]
			if sp.Protocol == UDP {
				t.udpReady = append(t.udpReady, e.ready.list...)
			}
			affinity := s.AffinityTimeout > 0
			if affinity {
				e.ready.indexIfLong()
			}
			local := e.ready
			if s.InternalLocal || s.ExternalLocal {
				start = len(slab)
				for k := range sp.Endpoints {
					ep := &sp.Endpoints[k]
					if ep.Ready && ep.Local && !dup(slab[start:], ep.Addr, &seen) {
						slab = append(slab, ep.Addr)
					}
				}
				local = backends{list: slab[start:len(slab):len(slab)]}
				if affinity {
					local.indexIfLong()
				}
			}
			e.cluster.eps, e.external.eps = e.ready, e.ready
			if s.InternalLocal {
				e.cluster.eps = local
			}
			if s.ExternalLocal {
				e.external.eps = local
			}
			if affinity {
				name := spName{s.Namespace, s.Name, sp.Protocol, sp.Port}
				id, ok := p.ids[name]
				if !ok {
					p.nextID++
					id = p.nextID
				}
				ids[name] = id
				t.byID[id] = e
				e.cluster.affinity, e.cluster.id = s.AffinityTimeout, id
				e.external.affinity, e.external.id = s.AffinityTimeout, id
			}

			proto := uint8(sp.Protocol)
			if vip.Is4() {
				k := key{vip: vip.As4(), port: sp.Port, proto: proto}
				if other := t.cluster[k]; other != nil {
					noteConflict(s, sp, "clusterIP", other)
				} else {
					t.cluster[k] = e
				}
			}
			if sp.NodePort != 0 {
				k := key{port: sp.NodePort, proto: proto}
				if other := t.nodePort[k]; other != nil {
					noteConflict(s, sp, "nodePort", other)
				} else {
					t.nodePort[k] = e
				}
			}
			for _, ip := range s.LoadBalancerIPs {
				ip = ip.Unmap()
				if !ip.Is4() {
					skipped = append(skipped, fmt.Sprintf("%s/%s loadBalancer IP %s", s.Namespace, s.Name, ip))
					continue
				}
				k := key{vip: ip.As4(), port: sp.Port, proto: proto}
				if other := t.lb[k]; other != nil {
					if other.svc != s {
						noteConflict(s, sp, "loadBalancer IP "+ip.String(), other)
					}
				} else {
					t.lb[k] = e
				}
			}
		}
	}
	p.ids = ids
	if len(t.udpReady) > 0 {
		slices.SortFunc(t.udpReady, netip.AddrPort.Compare)
		t.udpReady = slices.Compact(t.udpReady)
	}
	if len(skipped) > 0 {
		p.log.Warn("service table: IPv6 virtual addresses are not served", "count", len(skipped), "first", skipped[0])
	}
	if conflicts > 0 {
		p.log.Warn("service table: address conflicts, the first Service keeps it", "count", conflicts, "first", firstConflict)
	}
	return t
}

// dup reports whether a is in list; seen is scratch space for long lists.
func dup(list []netip.AddrPort, a netip.AddrPort, seen *map[netip.AddrPort]struct{}) bool {
	if len(list) < linearMax {
		return slices.Contains(list, a)
	}
	if len(list) == linearMax { // switch to the map once the list gets long
		if *seen == nil {
			*seen = map[netip.AddrPort]struct{}{}
		}
		clear(*seen)
		for _, x := range list {
			(*seen)[x] = struct{}{}
		}
	}
	if _, ok := (*seen)[a]; ok {
		return true
	}
	(*seen)[a] = struct{}{}
	return false
}

func conflict(s *Service, sp *Port, what string, other *portEntry) string {
	return fmt.Sprintf("service %s/%s port %d/%s: %s already used by service %s/%s",
		s.Namespace, s.Name, sp.Port, sp.Protocol, what, other.svc.Namespace, other.svc.Name)
}
