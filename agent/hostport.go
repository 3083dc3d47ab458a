package agent

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/proxy"
)

// hostPorts are the pods' hostPorts (attach.Request.PortMappings), served as the NodePorts are:
// host sockets on the node's address, spliced to the pod through the data path with the client's
// address kept. Each pod's mappings go into the proxy's table as a Service of their own without a
// virtual address, so a hostPort and a NodePort cannot both take one port.

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
		if m.HostIP != "" {
			ip, err := netip.ParseAddr(m.HostIP)
			if err != nil || !(ip.IsUnspecified() || ip.Unmap() == a.opts.NodeAddress) {
				return fmt.Errorf("%s: hostIP %q: this node serves hostPorts on its address %v only", f, m.HostIP, a.opts.NodeAddress)
			}
		}
		k := fmt.Sprintf("%d/%s", m.HostPort, proto)
		if j, ok := seen[k]; ok {
			return fmt.Errorf("%s: hostPort %s is portMappings[%d]'s already", f, k, j)
		}
		seen[k] = i
	}
	return nil
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

// hostPortServices returns the proxy table entries of the attached pods' hostPorts, in the order
// of their attachment IDs.
func (a *Agent) hostPortServices() []proxy.Service {
	a.amu.Lock()
	var ats []*attachment
	for _, at := range a.attached {
		if len(at.req.PortMappings) > 0 {
			ats = append(ats, at)
		}
	}
	a.amu.Unlock()
	slices.SortFunc(ats, func(x, y *attachment) int { return strings.Compare(x.req.ID, y.req.ID) })
	out := make([]proxy.Service, 0, len(ats))
	for _, at := range ats {
		ps := proxy.Service{
			Namespace: at.req.Namespace,
			Name:      fmt.Sprintf("%s (hostPort)", at.req.Name),
			// The pod is on this node: the client's address is kept, as the portmap plugin's
			// DNAT keeps it.
			ExternalLocal: true,
		}
		for _, m := range at.req.PortMappings {
			proto, _ := mappingProtocol(m.Protocol) // checked at attach
			ps.Ports = append(ps.Ports, proxy.Port{
				Name: fmt.Sprintf("%d", m.ContainerPort), Protocol: proto, Port: m.ContainerPort, NodePort: m.HostPort,
				Endpoints: []proxy.Endpoint{{Addr: netip.AddrPortFrom(at.ip, m.ContainerPort), Node: a.opts.NodeName, Local: true, Ready: true}},
			})
		}
		out = append(out, ps)
	}
	return out
}

// hostPortsChanged tells the agent's loop that the hostPorts changed.
func (a *Agent) hostPortsChanged() {
	a.hostPortGen.Add(1)
	select {
	case a.kick <- struct{}{}:
	default:
	}
}
