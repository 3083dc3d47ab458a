package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/attach"
)

// agentRef is a node's current agent, as its pod runtime sees it: an agent that restarts
// (`podnet lab restart-agent`) is replaced under the runtime, which keeps running its pods, as a
// kubelet keeps running while the podnet DaemonSet's pod is replaced.
type agentRef struct {
	node string
	cur  atomic.Pointer[agent.Agent] // nil while the agent restarts
}

var errRestarting = errors.New("the node's agent is restarting")

func (r *agentRef) get() (*agent.Agent, error) {
	if a := r.cur.Load(); a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("node %s: %w", r.node, errRestarting)
}

func (r *agentRef) Attach(ctx context.Context, req attach.Request) (attach.Result, error) {
	a, err := r.get()
	if err != nil {
		return attach.Result{}, err
	}
	return a.Attach(ctx, req)
}

func (r *agentRef) Detach(ctx context.Context, id string) error {
	a, err := r.get()
	if err != nil {
		return err
	}
	return a.Detach(ctx, id)
}

func (r *agentRef) Check(ctx context.Context, id, netns string) error {
	a, err := r.get()
	if err != nil {
		return err
	}
	return a.Check(ctx, id, netns)
}

func (r *agentRef) GC(ctx context.Context, keep []string) error {
	a, err := r.get()
	if err != nil {
		return err
	}
	return a.GC(ctx, keep)
}

func (r *agentRef) Ready(ctx context.Context) error {
	a, err := r.get()
	if err != nil {
		return err
	}
	return a.Ready(ctx)
}

// DialContextTCP implements podruntime.Dialer (the runtime's probes).
func (r *agentRef) DialContextTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	a, err := r.get()
	if err != nil {
		return nil, err
	}
	return a.Stack().DialContextTCP(ctx, addr)
}
