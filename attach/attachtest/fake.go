// Package attachtest has a fake attach.Attacher: an in-memory agent that hands out addresses
// from 10.244.0.0/24 and checks nothing of the namespaces it is given.
package attachtest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/podnet/podnet/attach"
)

var _ attach.Attacher = (*Fake)(nil)

// Fake is an in-memory Attacher. Its zero value is ready, with nothing attached.
type Fake struct {
	mu       sync.Mutex // guards the fields below
	attached map[string]attach.Request
	ips      map[string]netip.Addr
	next     int
	notReady error
	calls    []string
}

// SetReady makes Ready (and Attach) fail with err; nil makes them work again.
func (f *Fake) SetReady(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notReady = err
}

// Attached returns the IDs attached now, sorted.
func (f *Fake) Attached() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.attached {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Request returns the request id is attached with.
func (f *Fake) Request(id string) (attach.Request, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.attached[id]
	return r, ok
}

// Calls returns every call made so far, as "VERB id".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Attach implements attach.Attacher.
func (f *Fake) Attach(_ context.Context, req attach.Request) (attach.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "attach "+req.ID)
	if f.notReady != nil {
		return attach.Result{}, f.notReady
	}
	if req.ID == "" || req.NetNS == "" {
		return attach.Result{}, errors.New("attach: a request needs an ID and a NetNS")
	}
	if f.attached == nil {
		f.attached, f.ips = map[string]attach.Request{}, map[string]netip.Addr{}
	}
	if old, ok := f.attached[req.ID]; ok && old.NetNS != req.NetNS {
		return attach.Result{}, fmt.Errorf("attach %s: attached already, to network namespace %s", req.ID, old.NetNS)
	}
	if _, ok := f.ips[req.ID]; !ok {
		f.next++
		f.ips[req.ID] = netip.AddrFrom4([4]byte{10, 244, 0, byte(1 + f.next)})
	}
	f.attached[req.ID] = req
	ifName := req.IfName
	if ifName == "" {
		ifName = "eth0"
	}
	return attach.Result{
		Interface: ifName,
		MAC:       "02:00:0a:f4:00:02",
		IP:        f.ips[req.ID],
		Gateway:   netip.MustParseAddr("10.244.0.1"),
		MTU:       1500,
		DNS: attach.DNS{
			Nameservers: []string{"10.96.0.10"},
			Search:      []string{req.Namespace + ".svc.cluster.local", "svc.cluster.local", "cluster.local"},
			Options:     []string{"ndots:5"},
		},
	}, nil
}

// Detach implements attach.Attacher.
func (f *Fake) Detach(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "detach "+id)
	delete(f.attached, id)
	delete(f.ips, id)
	return nil
}

// Check implements attach.Attacher.
func (f *Fake) Check(_ context.Context, id, netns string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "check "+id)
	req, ok := f.attached[id]
	switch {
	case !ok:
		return fmt.Errorf("check %s: not attached", id)
	case req.NetNS != netns:
		return fmt.Errorf("check %s: attached to network namespace %s, not %s", id, req.NetNS, netns)
	}
	return nil
}

// GC implements attach.Attacher.
func (f *Fake) GC(_ context.Context, keep []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "gc")
	for id := range f.attached {
		if !slices.Contains(keep, id) {
			delete(f.attached, id)
			delete(f.ips, id)
		}
	}
	return nil
}

// Ready implements attach.Attacher.
func (f *Fake) Ready(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notReady
}
