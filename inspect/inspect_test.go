package inspect_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/agent/agenttest"
	"github.com/podnet/podnet/capture"
	"github.com/podnet/podnet/inspect"
	"github.com/podnet/podnet/stack/stacktest"
)

// newServer runs one agent (node-a) with two in-process pods, a server listening on b:80, and
// the inspect API on a Unix socket. No privileges needed.
func newServer(t *testing.T) (c *inspect.Client, a, b *stacktest.Pod) {
	t.Helper()
	opts := agenttest.Options(&agenttest.Source{}, "127.77.2.1", t.TempDir())
	ag, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ag.Close() })
	ag.Start()
	pod := func(ip string) *stacktest.Pod {
		addr := netip.MustParseAddr(ip)
		p, err := stacktest.NewPod(stacktest.PodOptions{IP: addr, Gateway: ag.Gateway(), MTU: 1400})
		if err != nil {
			t.Fatal(err)
		}
		if err := ag.Stack().AttachPod(addr, p.Port()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ag.Stack().DetachPod(addr); p.Close() })
		return p
	}
	a, b = pod("10.244.0.10"), pod("10.244.0.20")
	ln, err := b.Greet(80, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sock := filepath.Join(t.TempDir(), "inspect.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: inspect.Handler(func() map[string]*agent.Agent { return map[string]*agent.Agent{"node-a": ag} })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return inspect.NewClient(sock), a, b
}

func dial(t *testing.T, a *stacktest.Pod) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.DialTCP(ctx, netip.MustParseAddrPort("10.244.0.20:80"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestFlows: a follower gets a new flow as it happens, and the list has it afterwards.
func TestFlows(t *testing.T) {
	c, a, _ := newServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if recs, err := c.Flows(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("flows before any traffic: %v, %v", recs, err)
	}
	got := make(chan agent.FlowRecord, 10)
	followed := make(chan error, 1)
	fctx, stop := context.WithCancel(ctx)
	go func() {
		followed <- c.FollowFlows(fctx, func(r agent.FlowRecord) error { got <- r; return nil })
	}()
	time.Sleep(200 * time.Millisecond) // let it subscribe
	dial(t, a)
	select {
	case r := <-got:
		if r.SourceIP != "10.244.0.10" || r.DestIP != "10.244.0.20" || r.Port != 80 || r.Protocol != "TCP" ||
			r.Verdict != "forwarded" || r.Node != "node-a" || r.Direction != agent.FlowEgress {
			t.Errorf("followed flow %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("the follower got no flow")
	}
	stop()
	if err := <-followed; err != nil {
		t.Errorf("FollowFlows after its context ended: %v", err)
	}
	recs, err := c.Flows(ctx)
	if err != nil || len(recs) != 1 || recs[0].DestIP != "10.244.0.20" {
		t.Errorf("flows: %+v, %v; want the one connection", recs, err)
	}
}

// TestCapture: a capture of the server pod, filtered to its port, is a pcap stream of its frames
// both ways; bad requests are refused with the reason.
func TestCapture(t *testing.T) {
	c, a, _ := newServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := c.Capture(ctx, inspect.CaptureRequest{Node: "node-a", PodIP: "10.244.0.20", Filter: "tcp port 80"})
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	r, err := capture.NewReader(body)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != capture.LinkTypeEthernet {
		t.Errorf("link type %d, want Ethernet", r.LinkType())
	}
	dial(t, a)
	var syn, synAck bool
	for !syn || !synAck {
		p, err := r.Next()
		if err != nil {
			t.Fatalf("after %v %v: %v", syn, synAck, err)
		}
		ip := header.IPv4(p.Data[header.EthernetMinimumSize:])
		tcp := header.TCP(ip.Payload())
		if tcp.DestinationPort() != 80 && tcp.SourcePort() != 80 {
			t.Errorf("the filter let through %v:%d > %v:%d", ip.SourceAddress(), tcp.SourcePort(), ip.DestinationAddress(), tcp.DestinationPort())
		}
		syn = syn || tcp.Flags() == header.TCPFlagSyn
		synAck = synAck || tcp.Flags() == header.TCPFlagSyn|header.TCPFlagAck
	}

	for _, tc := range []struct {
		req  inspect.CaptureRequest
		want string
	}{
		{inspect.CaptureRequest{Node: "node-z", PodIP: "10.244.0.20"}, `node "node-z": no such node`},
		{inspect.CaptureRequest{Node: "node-a", PodIP: "10.244.0.99"}, "no pod with address 10.244.0.99"},
		{inspect.CaptureRequest{Node: "node-a", PodIP: "web"}, `pod "web": want the pod's IP address`},
		{inspect.CaptureRequest{Node: "node-a", PodIP: "10.244.0.20", Filter: "tcp port x"}, `"x" is not a port number`},
	} {
		_, err := c.Capture(ctx, tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %s", tc.req, err, tc.want)
		}
	}
	unreachable := inspect.NewClient(filepath.Join(t.TempDir(), "none.sock"))
	if _, err := unreachable.Flows(ctx); !errors.Is(err, inspect.ErrUnreachable) {
		t.Errorf("flows from no server: %v, want ErrUnreachable", err)
	}
}
