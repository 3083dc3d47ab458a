package agent

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/proxy"
)

// hostPorts are the pods' hostPorts (attach.Request.PortMappings), served as the NodePorts are:
// host sockets in the node's network namespace, spliced to the pod through the data path with
// the client's address kept. A mapping's hostIP says where: empty or 0.0.0.0 is every address of
// the node, another address of the node only that one (the upstream HostPort test gives three
// pods one port on 127.0.0.1, on the node's address over TCP and over UDP). Each listening
// address has a table and listeners of its own (hostPortServer); each pod's mappings there are a
// Service without a virtual address.

// hostPortServer serves the hostPorts of one listening address.
type hostPortServer struct {
	proxy *proxy.Proxy
	ports *proxy.NodePorts
}

// checkPortMappings validates a request's hostPorts against the node and against each other.
func (a *Agent) checkPortMappings(req attach.Request) error {
	seen := map[string]int{}
	for i, m := range req.PortMappings {
		f := fmt.Sprintf("portMappings[%d]", i)
		if m.HostPort == 0 || m.ContainerPort == 0 {
			return fmt.Errorf("%s: hostPort %d and containerPort %d must be 1-65535", f, m.HostPort, m.ContainerPort)
		}
		proto, err := mappingProtocol(m.Protocol)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		addr, err := a.mappingAddr(m.HostIP)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		k := fmt.Sprintf("%v:%d/%s", addr, m.HostPort, proto)
		if j, ok := seen[k]; ok {
			return fmt.Errorf("%s: hostPort %s is portMappings[%d]'s already", f, k, j)
		}
		seen[k] = i
	}
	return nil
}

// mappingAddr is where a mapping with hostIP listens: 0.0.0.0 for none, else hostIP, which must
// be an IPv4 address of the node (of its network namespace, such as 127.0.0.1 or its own).
func (a *Agent) mappingAddr(hostIP string) (netip.Addr, error) {
	if hostIP == "" {
		return netip.IPv4Unspecified(), nil
	}
	ip, err := netip.ParseAddr(hostIP)
	if err != nil || !ip.Unmap().Is4() {
		return netip.Addr{}, fmt.Errorf("hostIP %q: want an IPv4 address", hostIP)
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() || ip == a.opts.NodeAddress {
		return ip, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("hostIP %q: list the node's addresses: %w", hostIP, err)
	}
	for _, na := range addrs {
		if p, err := netip.ParsePrefix(na.String()); err == nil && p.Addr().Unmap() == ip {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("hostIP %q is not an address of node %s", hostIP, a.opts.NodeName)
}

// mappingProtocol is a portMapping's protocol; CNI writes it in lower case, the kubelet's API in
// upper case. Empty means TCP.
func mappingProtocol(p string) (proxy.Protocol, error) {
	switch strings.ToLower(p) {
	case "tcp", "":
		return proxy.TCP, nil
	case "udp":
		return proxy.UDP, nil
	}
	return 0, fmt.Errorf("protocol %q: hostPorts are served for tcp and udp", p)
}

// hostPortTables returns the attached pods' hostPorts by listening address: for each, one
// Service per pod, in the order of the attachment IDs.
func (a *Agent) hostPortTables() map[netip.Addr][]proxy.Service {
	a.amu.Lock()
	var ats []*attachment
	for _, at := range a.attached {
		if len(at.req.PortMappings) > 0 {
			ats = append(ats, at)
		}
	}
	a.amu.Unlock()
	slices.SortFunc(ats, func(x, y *attachment) int { return strings.Compare(x.req.ID, y.req.ID) })
	out := map[netip.Addr][]proxy.Service{}
	for _, at := range ats {
		byAddr := map[netip.Addr]*proxy.Service{}
		var order []netip.Addr
		for _, m := range at.req.PortMappings {
			proto, _ := mappingProtocol(m.Protocol) // checked at attach
			addr, err := a.mappingAddr(m.HostIP)
			if err != nil {
				continue // checked at attach; the address has gone since
			}
			ps := byAddr[addr]
			if ps == nil {
				// The pod is on this node: the client's address is kept, as the portmap
				// plugin's DNAT keeps it.
				ps = &proxy.Service{Namespace: at.req.Namespace, Name: fmt.Sprintf("%s (hostPort)", at.req.Name), ExternalLocal: true}
				byAddr[addr] = ps
				order = append(order, addr)
			}
			ps.Ports = append(ps.Ports, proxy.Port{
				Name: fmt.Sprintf("%d/%s", m.HostPort, proto), Protocol: proto, Port: m.ContainerPort, NodePort: m.HostPort,
				Endpoints: []proxy.Endpoint{{Addr: netip.AddrPortFrom(at.ip, m.ContainerPort), Node: a.opts.NodeName, Local: true, Ready: true}},
			})
		}
		for _, addr := range order {
			out[addr] = append(out[addr], *byAddr[addr])
		}
	}
	return out
}

// syncHostPorts opens and closes the hostPort listeners to match the attached pods. Called by
// the goroutine of Run only.
func (a *Agent) syncHostPorts() error {
	tables := a.hostPortTables()
	var errs []error
	for addr, srv := range a.hostPortServers {
		if _, ok := tables[addr]; !ok {
			if err := srv.ports.Close(); err != nil {
				errs = append(errs, err)
			}
			delete(a.hostPortServers, addr)
		}
	}
	addrs := make([]netip.Addr, 0, len(tables))
	for addr := range tables {
		addrs = append(addrs, addr)
	}
	slices.SortFunc(addrs, func(x, y netip.Addr) int { return cmp.Compare(x.String(), y.String()) })
	for _, addr := range addrs {
		srv := a.hostPortServers[addr]
		if srv == nil {
			px := proxy.New(proxy.Options{Logger: a.log.With("component", "hostports", "address", addr)})
			srv = &hostPortServer{proxy: px, ports: proxy.NewNodePorts(proxy.NodePortOptions{
				Address: addr, Proxy: px, Dialer: a.stack, Logger: a.log.With("component", "hostports", "address", addr),
			})}
			a.hostPortServers[addr] = srv
		}
		removed := srv.proxy.Update(tables[addr])
		srv.ports.FlushUDP(removed)
		if err := srv.ports.Sync(tables[addr]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// closeHostPorts closes every hostPort listener, at shutdown.
func (a *Agent) closeHostPorts() {
	for addr, srv := range a.hostPortServers {
		if err := srv.ports.Close(); err != nil {
			a.log.Warn("close hostPorts", "address", addr, "err", err)
		}
		delete(a.hostPortServers, addr)
	}
}

// hostPortsChanged tells the agent's loop that the hostPorts changed.
func (a *Agent) hostPortsChanged() {
	a.hostPortGen.Add(1)
	select {
	case a.kick <- struct{}{}:
	default:
	}
}
