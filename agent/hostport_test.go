package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/agent/agenttest"
	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/sandbox"
)

// listenIn opens a TCP listener on port in the network namespace of sb: the socket stays in that
// namespace whatever thread uses it later.
func listenIn(t *testing.T, sb *sandbox.Sandbox, port int) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(sb.NetNS(), func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestHostPort: a pod's portMappings are served at their hostIP while it is attached, with
// the client's address kept (a loopback client shows as the gateway, which the pod's kernel
// accepts); bad mappings are refused at attach, naming the entry.
func TestHostPort(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: making a network namespace needs root here (the end-to-end suite covers hostPorts)")
	}
	src := &agenttest.Source{}
	a := newAgent(t, src, "127.77.0.4")
	a.Start()
	t.Cleanup(func() { a.Close() })
	ctx := context.Background()
	sb := newSandbox(t)
	ln := listenIn(t, sb, 8080)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
	hostPort := 18080
	for _, bad := range []struct {
		m    attach.PortMapping
		want string
	}{
		{attach.PortMapping{HostPort: 1, ContainerPort: 2, Protocol: "sctp"}, `portMappings[0]: protocol "sctp"`},
		{attach.PortMapping{HostPort: 1, ContainerPort: 2, HostIP: "192.0.2.1"}, `portMappings[0]: hostIP "192.0.2.1" is not an address of node node-a`},
		{attach.PortMapping{HostPort: 1, ContainerPort: 2, HostIP: "x"}, `portMappings[0]: hostIP "x": want an IPv4 address`},
		{attach.PortMapping{HostPort: 0, ContainerPort: 2}, `portMappings[0]: hostPort 0`},
	} {
		_, err := a.Attach(ctx, attach.Request{ID: "bad", NetNS: sb.Path(), PortMappings: []attach.PortMapping{bad.m}})
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("attach with %+v: %v, want an error with %q", bad.m, err, bad.want)
		}
	}
	res, err := a.Attach(ctx, attach.Request{ID: "pod-1", Namespace: "web", Name: "web-1", NetNS: sb.Path(),
		PortMappings: []attach.PortMapping{{HostPort: uint16(hostPort), ContainerPort: 8080, Protocol: "tcp", HostIP: "127.77.0.4"}}})
	if err != nil {
		t.Fatal(err)
	}
	get := func() (string, error) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.77.0.4:%d", hostPort), time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		return string(b), err
	}
	var got string
	waitUntil(t, "the hostPort to answer", func() bool { got, err = get(); return err == nil && got != "" })
	if got != res.Gateway.String() {
		t.Errorf("the pod saw the client as %q, want the gateway %v (a loopback client)", got, res.Gateway)
	}
	if err := a.Detach(ctx, "pod-1"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the hostPort to close", func() bool { _, err := get(); return err != nil })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
