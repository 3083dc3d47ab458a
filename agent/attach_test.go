package agent_test

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/agent/agenttest"
	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/internal/leakcheck"
)

// TestAttachDetach builds an agent on an in-memory Source and attaches pod namespaces to it as a
// runtime does: addresses from the node's range, an earlier address kept, Attach idempotent for
// the same namespace and refused for another, Detach idempotent and the address free again.
func TestAttachDetach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: making a network namespace needs root here (the end-to-end suite attaches pods rootless)")
	}
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		t.Skipf("skipped: a pod interface needs /dev/net/tun: %v", err)
	} else {
		f.Close()
	}
	leakcheck.AtCleanup(t, leakcheck.Options{Match: []string{"podnet/podnet/agent.", "podnet/podnet/stack.", "podnet/podnet/overlay."}})
	src := &agenttest.Source{}
	a := newAgent(t, src, "127.77.0.1")
	a.Start()
	t.Cleanup(func() { a.Close() })
	ctx := context.Background()
	// Run publishes the node's WireGuard key first.
	for deadline := time.Now().Add(5 * time.Second); src.Annotations("node-a")[cluster.AnnotationWireGuardKey] == ""; {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not publish its WireGuard key")
		}
		time.Sleep(10 * time.Millisecond)
	}

	sb1, sb2 := newSandbox(t), newSandbox(t)
	req := attach.Request{ID: "pod-1", Namespace: "web", Name: "web-1", NetNS: sb1.Path()}
	res, err := a.Attach(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := attach.Result{
		Interface: "eth0",
		IP:        res.IP,
		Gateway:   netip.MustParseAddr("10.244.0.1"),
		MTU:       1400,
	}
	if !netip.MustParsePrefix("10.244.0.0/24").Contains(res.IP) || res.IP == want.Gateway {
		t.Errorf("pod address %v: want one of the node's range, not its gateway", res.IP)
	}
	if res.Interface != want.Interface || res.Gateway != want.Gateway || res.MTU != want.MTU || res.MAC == "" {
		t.Errorf("result %+v, want %+v with a MAC", res, want)
	}
	if len(res.DNS.Nameservers) != 1 || res.DNS.Nameservers[0] != "10.96.0.10" ||
		len(res.DNS.Search) != 3 || res.DNS.Search[0] != "web.svc.cluster.local" {
		t.Errorf("DNS %+v, want 10.96.0.10 with the search path of namespace web", res.DNS)
	}
	if again, err := a.Attach(ctx, req); err != nil || again.IP != res.IP {
		t.Errorf("attach again: %+v, %v; want the same attachment", again, err)
	}
	other := req
	other.NetNS = sb2.Path()
	if _, err := a.Attach(ctx, other); err == nil {
		t.Error("the same ID attached to another namespace: want an error")
	}

	// A second pod asks for the address it had before.
	prev := netip.MustParseAddr("10.244.0.77")
	res2, err := a.Attach(ctx, attach.Request{ID: "pod-2", Namespace: "web", Name: "web-2", NetNS: sb2.Path(), IP: prev})
	if err != nil {
		t.Fatal(err)
	}
	if res2.IP != prev {
		t.Errorf("pod-2 got %v, want its earlier address %v", res2.IP, prev)
	}
	// Its earlier address is taken now: a third pod asking for it gets another.
	sb3 := newSandbox(t)
	res3, err := a.Attach(ctx, attach.Request{ID: "pod-3", NetNS: sb3.Path(), IP: prev})
	if err != nil {
		t.Fatal(err)
	}
	if res3.IP == prev || res3.IP == res.IP {
		t.Errorf("pod-3 got %v, which is taken", res3.IP)
	}

	for _, id := range []string{"pod-2", "pod-2", "never-attached"} {
		if err := a.Detach(ctx, id); err != nil {
			t.Errorf("detach %s: %v", id, err)
		}
	}
	// pod-2's address and namespace are free again.
	res4, err := a.Attach(ctx, attach.Request{ID: "pod-4", NetNS: sb2.Path(), IP: prev})
	if err != nil || res4.IP != prev {
		t.Errorf("after detach: %+v, %v; want %v again, in the same namespace", res4, err, prev)
	}
	if _, err := a.Attach(ctx, attach.Request{ID: "bad"}); err == nil {
		t.Error("a request without a namespace: want an error")
	}
}

// newAgent makes an agent of node-a on an in-memory Source, with its WireGuard port on addr.
func newAgent(t *testing.T, src *agenttest.Source, addr string) *agent.Agent {
	t.Helper()
	a, err := agent.New(agenttest.Options(src, addr, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestStartClose: Close waits for every goroutine the agent started, started or not, and a
// second Close does nothing. No privileges needed.
func TestStartClose(t *testing.T) {
	leakcheck.AtCleanup(t, leakcheck.Options{Match: []string{"podnet/podnet/agent.", "podnet/podnet/stack.", "podnet/podnet/overlay.", "podnet/podnet/clusterdns."}})
	src := &agenttest.Source{}
	a := newAgent(t, src, "127.77.0.2")
	a.Start()
	for deadline := time.Now().Add(5 * time.Second); src.Annotations("node-a")[cluster.AnnotationWireGuardKey] == ""; {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not publish its WireGuard key")
		}
		time.Sleep(10 * time.Millisecond)
	}
	src.Set(agenttest.State{}) // a change to follow
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	never := newAgent(t, src, "127.77.0.3")
	if err := never.Close(); err != nil {
		t.Fatal(err)
	}
}
