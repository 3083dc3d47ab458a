// Package ipam hands out pod addresses from one node's pod CIDR.
//
// A node owns one prefix (in the lab, the /24 that cluster.NodePodCIDR or
// cluster.AssignPodCIDRs gives it; in Kubernetes mode, node.spec.podCIDR)
// and a [Pool] gives each pod on the node one address of it. The owner of an
// address is an opaque string chosen by the caller, normally the pod's
// "namespace/name" or its UID.
//
// Three addresses of a prefix are never handed out: the network address, the
// gateway (the first host address, which the node's data path answers on)
// and the last address (IPv4's broadcast address; kept free for IPv6 too so
// that both families behave alike).
//
// Addresses are handed out round-robin: the lowest free address after the
// one handed out last, wrapping around at the end of the prefix. A pod that
// is deleted and re-created therefore gets a fresh address, and a stale
// connection, DNS answer or conntrack entry for the old address does not
// reach the new pod.
//
// The package keeps no state outside a Pool and persists nothing: after a
// restart the caller restores each owner's address with [Pool.Reserve]. It
// must never know about Kubernetes objects, network stacks or the host's
// network configuration; it is arithmetic on [netip.Addr].
package ipam

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
)

// Pool hands out the addresses of one prefix. It is safe for concurrent use.
type Pool struct {
	prefix  netip.Prefix
	gateway netip.Addr
	first   netip.Addr // lowest address that may be handed out
	last    netip.Addr // highest address that may be handed out
	size    int        // number of addresses that may be handed out, saturated at math.MaxInt

	mu      sync.Mutex            // guards byOwner, byAddr, cursor
	byOwner map[string]netip.Addr // owner -> address
	byAddr  map[netip.Addr]string // address -> owner
	cursor  netip.Addr            // address handed out last; invalid before the first
}

// NewPool returns an empty pool for prefix, which must be a network address
// (host bits zero) leaving at least one address to hand out: an IPv4 prefix
// of /30 or shorter, an IPv6 prefix of /126 or shorter.
func NewPool(prefix netip.Prefix) (*Pool, error) {
	if !prefix.IsValid() {
		return nil, errors.New("ipam: invalid prefix")
	}
	if prefix.Addr().Is4In6() {
		return nil, fmt.Errorf("ipam: prefix %s: an IPv4-mapped IPv6 prefix is not supported; use the IPv4 form", prefix)
	}
	if prefix.Masked() != prefix {
		return nil, fmt.Errorf("ipam: prefix %s is not a network address; did you mean %s?", prefix, prefix.Masked())
	}
	hostBits := prefix.Addr().BitLen() - prefix.Bits()
	if hostBits < 2 {
		return nil, fmt.Errorf("ipam: prefix %s is too small: it needs room for a network address, a gateway, a last address and at least one pod", prefix)
	}
	network := prefix.Addr()
	p := &Pool{
		prefix:  prefix,
		gateway: network.Next(),
		first:   network.Next().Next(),
		last:    lastAddr(prefix).Prev(),
		byOwner: make(map[string]netip.Addr),
		byAddr:  make(map[netip.Addr]string),
	}
	if hostBits >= 62 {
		p.size = math.MaxInt
	} else {
		p.size = 1<<hostBits - 3
	}
	return p, nil
}

// lastAddr returns the highest address of prefix.
func lastAddr(prefix netip.Prefix) netip.Addr {
	b := prefix.Addr().AsSlice()
	for i := range b {
		hostBits := prefix.Bits() - 8*i // bits of this byte that belong to the network
		switch {
		case hostBits <= 0:
			b[i] = 0xff
		case hostBits < 8:
			b[i] |= 0xff >> hostBits
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Prefix returns the prefix the pool hands out addresses of.
func (p *Pool) Prefix() netip.Prefix { return p.prefix }

// Gateway returns the first host address of the prefix: the pods' default
// gateway, which is never handed out.
func (p *Pool) Gateway() netip.Addr { return p.gateway }

// Last returns the highest address the pool hands out (the one before the
// prefix's last address).
func (p *Pool) Last() netip.Addr { return p.last }

// Allocate returns owner's address, handing out a new one if owner has none:
// the lowest free address after the one handed out last, wrapping around. It
// fails when every address is taken.
func (p *Pool) Allocate(owner string) (netip.Addr, error) {
	if owner == "" {
		return netip.Addr{}, errors.New("ipam: allocate: empty owner")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.byOwner[owner]; ok {
		return a, nil
	}
	if len(p.byOwner) >= p.size {
		return netip.Addr{}, fmt.Errorf("ipam: allocate for %s: no free address left in %s (%d in use)", owner, p.prefix, len(p.byOwner))
	}
	// There is a free address, so this loop ends within len(p.byOwner)+1 steps.
	a := p.cursor
	for {
		if !a.IsValid() || a == p.last {
			a = p.first
		} else {
			a = a.Next()
		}
		if _, taken := p.byAddr[a]; !taken {
			break
		}
	}
	p.holdLocked(owner, a)
	p.cursor = a
	return a, nil
}

// Reserve gives owner the address a, as when an owner's address is restored
// after a restart. It fails if a is outside the prefix or one of the
// addresses that are never handed out, if another owner holds a, or if owner
// holds a different address. Reserving an owner's own address again does
// nothing.
//
// If a lies after the address handed out last, it becomes the address handed
// out last: after restoring every owner, Allocate continues after the highest
// restored address instead of reusing an address just freed before a restart.
func (p *Pool) Reserve(owner string, a netip.Addr) error {
	if owner == "" {
		return errors.New("ipam: reserve: empty owner")
	}
	if !p.prefix.Contains(a) {
		return fmt.Errorf("ipam: reserve %s for %s: address is outside %s", a, owner, p.prefix)
	}
	switch {
	case a == p.prefix.Addr():
		return fmt.Errorf("ipam: reserve %s for %s: it is the network address of %s", a, owner, p.prefix)
	case a == p.gateway:
		return fmt.Errorf("ipam: reserve %s for %s: it is the gateway of %s", a, owner, p.prefix)
	case a == p.last.Next():
		return fmt.Errorf("ipam: reserve %s for %s: it is the last address of %s", a, owner, p.prefix)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if other, ok := p.byAddr[a]; ok {
		if other == owner {
			return nil
		}
		return fmt.Errorf("ipam: reserve %s for %s: already held by %s", a, owner, other)
	}
	if held, ok := p.byOwner[owner]; ok {
		return fmt.Errorf("ipam: reserve %s for %s: %s already holds %s", a, owner, owner, held)
	}
	p.holdLocked(owner, a)
	if !p.cursor.IsValid() || p.cursor.Less(a) {
		p.cursor = a
	}
	return nil
}

// holdLocked records that owner holds a. p.mu must be held.
func (p *Pool) holdLocked(owner string, a netip.Addr) {
	p.byOwner[owner] = a
	p.byAddr[a] = owner
}

// Release frees owner's address, if it holds one. The address is handed out
// again only after every other free address has been.
func (p *Pool) Release(owner string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.byOwner[owner]; ok {
		delete(p.byOwner, owner)
		delete(p.byAddr, a)
	}
}

// Lookup returns owner's address and whether it holds one.
func (p *Pool) Lookup(owner string) (netip.Addr, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.byOwner[owner]
	return a, ok
}

// Len returns the number of addresses held.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byOwner)
}

// Cap returns the number of addresses the pool can hand out, saturated at
// math.MaxInt for very large IPv6 prefixes.
func (p *Pool) Cap() int { return p.size }

// Allocations returns a copy of the addresses held, by owner: what a caller
// persists so that it can Reserve them again after a restart.
func (p *Pool) Allocations() map[string]netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]netip.Addr, len(p.byOwner))
	for o, a := range p.byOwner {
		m[o] = a
	}
	return m
}
