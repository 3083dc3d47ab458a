package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/podlink"
	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/tap"
)

// attachment is one pod's network, as Attach made it.
type attachment struct {
	req  attach.Request
	ip   netip.Addr
	devs []*tap.Device // the pod interface's queues, each a port of the stack
	res  attach.Result
}

var _ attach.Attacher = (*Agent)(nil)

// Attach implements attach.Attacher: it gives the pod an address from the node's pod range (the
// request's earlier address where it is free), makes its interface in its namespace
// (package podlink) and connects that to the node's data path.
func (a *Agent) Attach(ctx context.Context, req attach.Request) (attach.Result, error) {
	if req.ID == "" || req.NetNS == "" {
		return attach.Result{}, errors.New("attach: a request needs an ID and a NetNS")
	}
	if err := a.checkPortMappings(req); err != nil {
		return attach.Result{}, fmt.Errorf("attach %s (pod %s/%s): %w", req.ID, req.Namespace, req.Name, err)
	}
	a.amu.Lock()
	if a.closed {
		a.amu.Unlock()
		return attach.Result{}, fmt.Errorf("attach %s: the agent of node %s is shut down", req.ID, a.opts.NodeName)
	}
	if at, ok := a.attached[req.ID]; ok {
		a.amu.Unlock()
		if at.req.NetNS != req.NetNS || at.req.IfName != req.IfName {
			return attach.Result{}, fmt.Errorf("attach %s: attached already, as %s in network namespace %s", req.ID, at.res.Interface, at.req.NetNS)
		}
		return at.res, nil
	}
	if _, ok := a.attaching[req.ID]; ok {
		a.amu.Unlock()
		return attach.Result{}, fmt.Errorf("attach %s: another attach of it is under way", req.ID)
	}
	a.attaching[req.ID] = false
	a.inflight.Add(1)
	a.amu.Unlock()
	defer a.inflight.Done()

	start := time.Now()
	at, err := a.attach(req)
	a.amu.Lock()
	detached := a.attaching[req.ID] // a Detach came while it was under way
	delete(a.attaching, req.ID)
	if err == nil && !detached {
		a.attached[req.ID] = at
	}
	a.amu.Unlock()
	if err != nil {
		return attach.Result{}, fmt.Errorf("attach %s (pod %s/%s): %w", req.ID, req.Namespace, req.Name, err)
	}
	if detached {
		a.release(at)
		return attach.Result{}, fmt.Errorf("attach %s (pod %s/%s): detached while it was being attached", req.ID, req.Namespace, req.Name)
	}
	if len(req.PortMappings) > 0 {
		a.hostPortsChanged()
	}
	a.metrics.podSetup.Observe(time.Since(start).Seconds())
	return at.res, nil
}

// attach makes the attachment; on error it leaves nothing behind.
func (a *Agent) attach(req attach.Request) (*attachment, error) {
	owner := req.ID
	var ip netip.Addr
	if req.IP.IsValid() && a.opts.PodCIDR.Contains(req.IP) && a.pool.Reserve(owner, req.IP) == nil {
		ip = req.IP
	}
	if !ip.IsValid() {
		var err error
		if ip, err = a.pool.Allocate(owner); err != nil {
			return nil, fmt.Errorf("allocate address: %w", err)
		}
	}
	mac := stack.PodMAC(ip)
	devs, err := podlink.Attach(req.NetNS, podlink.Config{
		Name:    req.IfName,
		IP:      ip,
		Gateway: a.pool.Gateway(),
		MAC:     mac,
		MTU:     a.opts.Network.MTU,
		Persist: true, // the pod keeps it while the agent restarts
	})
	if err != nil {
		a.pool.Release(owner)
		return nil, err
	}
	// One port per TAP queue, each read by a goroutine of the stack's.
	ports := make([]stack.Port, len(devs))
	for i, d := range devs {
		ports[i] = d
	}
	if err := a.stack.AttachPodQueues(ip, ports); err != nil {
		podlink.Release(devs)
		a.pool.Release(owner)
		return nil, fmt.Errorf("attach to node stack: %w", err)
	}
	ifName := req.IfName
	if ifName == "" {
		ifName = "eth0"
	}
	mtu := a.opts.Network.MTU
	if mtu == 0 {
		mtu = 1500
	}
	domain := a.opts.Network.Domain
	search := []string{"svc." + domain, domain}
	if req.Namespace != "" {
		search = append([]string{req.Namespace + ".svc." + domain}, search...)
	}
	at := &attachment{
		req:  req,
		ip:   ip,
		devs: devs,
		res: attach.Result{
			Interface: ifName,
			MAC:       mac.String(),
			IP:        ip,
			Gateway:   a.pool.Gateway(),
			MTU:       mtu,
			DNS: attach.DNS{
				Nameservers: []string{a.opts.Network.DNSIP.String()},
				Search:      search,
				Options:     []string{"ndots:5"},
			},
		},
	}
	if err := a.writeRecord(at); err != nil {
		a.release(at)
		return nil, fmt.Errorf("record the attachment in %s: %w", a.podsDir(), err)
	}
	return at, nil
}

// Detach implements attach.Attacher. An attach of id still under way is undone when it ends.
func (a *Agent) Detach(_ context.Context, id string) error {
	start := time.Now()
	a.amu.Lock()
	if _, ok := a.attaching[id]; ok {
		a.attaching[id] = true
	}
	at, ok := a.attached[id]
	delete(a.attached, id)
	a.amu.Unlock()
	if !ok {
		return nil
	}
	a.release(at)
	if len(at.req.PortMappings) > 0 {
		a.hostPortsChanged()
	}
	a.metrics.podTeardown.Observe(time.Since(start).Seconds())
	return nil
}

// release takes an attachment out of the data path, removes its interface and frees its address.
func (a *Agent) release(at *attachment) {
	// Not persistent any more, so the interface goes when the stack closes its queues.
	if err := at.devs[0].SetPersist(false); err != nil {
		a.log.Warn("remove pod interface", "id", at.req.ID, "pod", at.req.Namespace+"/"+at.req.Name, "err", err)
	}
	if err := a.stack.DetachPod(at.ip); err != nil {
		a.log.Warn("detach pod from the node stack", "id", at.req.ID, "pod", at.req.Namespace+"/"+at.req.Name, "err", err)
	}
	for _, d := range at.devs {
		d.Close()
	}
	a.removeRecord(at.req.ID)
	a.pool.Release(at.req.ID)
}

// stopAttaching refuses new attachments and waits for those under way, at shutdown. The
// attached pods keep their interfaces and records for the next agent (restart.go); the stack
// closes the descriptors.
func (a *Agent) stopAttaching() {
	a.amu.Lock()
	a.closed = true
	a.amu.Unlock()
	a.inflight.Wait()
}

// Check implements attach.Attacher.
func (a *Agent) Check(_ context.Context, id, netns string) error {
	a.amu.Lock()
	at, ok := a.attached[id]
	a.amu.Unlock()
	switch {
	case !ok:
		return fmt.Errorf("check %s: not attached on node %s", id, a.opts.NodeName)
	case at.req.NetNS != netns:
		return fmt.Errorf("check %s: attached to network namespace %s, not %s", id, at.req.NetNS, netns)
	}
	if err := podlink.Check(netns, podlink.Config{Name: at.res.Interface, IP: at.ip}); err != nil {
		return fmt.Errorf("check %s: %w", id, err)
	}
	return nil
}

// GC implements attach.Attacher.
func (a *Agent) GC(ctx context.Context, keep []string) error {
	valid := make(map[string]bool, len(keep))
	for _, id := range keep {
		valid[id] = true
	}
	a.amu.Lock()
	var stale []string
	for id := range a.attached {
		if !valid[id] {
			stale = append(stale, id)
		}
	}
	a.amu.Unlock()
	for _, id := range stale {
		a.log.Info("garbage-collecting an attachment the runtime no longer knows", "id", id)
		a.Detach(ctx, id)
	}
	return nil
}

// Ready implements attach.Attacher: the agent attaches pods once started and until closed.
func (a *Agent) Ready(context.Context) error {
	if !a.ready.Load() {
		return fmt.Errorf("the podnet agent of node %s is not running", a.opts.NodeName)
	}
	return nil
}

// nodeLinkOwner holds the node interface's address in the pool.
const nodeLinkOwner = "node interface"

// attachNode makes the node's own interface (Options.NodeInterface) in the agent's network
// namespace: a TAP holding the last address the node's pod range hands out (NodeLinkAddress),
// with a link route to the gateway and routes for the cluster and service CIDRs via it, and
// connects it to the data path as a pod's is. Traffic from the node to pods and ClusterIPs thus
// takes the paths a pod's takes: the fast path to local pods, the overlay to other nodes' pods,
// Service NAT; replies come back to that address.
func (a *Agent) attachNode() error {
	ip := a.pool.Last()
	if err := a.pool.Reserve(nodeLinkOwner, ip); err != nil {
		return fmt.Errorf("node interface %s: %w", a.opts.NodeInterface, err)
	}
	devs, err := podlink.Attach("", podlink.Config{
		Name:    a.opts.NodeInterface,
		IP:      ip,
		Gateway: a.pool.Gateway(),
		Routes:  []netip.Prefix{a.opts.Network.ClusterCIDR, a.opts.Network.ServiceCIDR},
		MAC:     stack.PodMAC(ip),
		MTU:     a.opts.Network.MTU,
		Queues:  1,
	})
	if err != nil {
		a.pool.Release(nodeLinkOwner)
		return fmt.Errorf("node interface: %w", err)
	}
	if err := a.stack.AttachPodQueues(ip, []stack.Port{devs[0]}); err != nil {
		devs[0].Close()
		a.pool.Release(nodeLinkOwner)
		return fmt.Errorf("node interface %s: attach to node stack: %w", a.opts.NodeInterface, err)
	}
	a.nodeLink = &attachment{req: attach.Request{ID: nodeLinkOwner}, ip: ip, devs: devs}
	return nil
}

// NodeLinkAddress returns the address of the node's own interface; invalid when it has none.
func (a *Agent) NodeLinkAddress() netip.Addr {
	if a.nodeLink == nil {
		return netip.Addr{}
	}
	return a.nodeLink.ip
}
