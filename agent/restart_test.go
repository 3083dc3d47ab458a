package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/agent/agenttest"
	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/sandbox"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// newSandbox makes a pod network namespace that goes when the test ends.
func newSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	sb, err := sandbox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

// dialIn connects to addr from the network namespace of sb.
func dialIn(t *testing.T, sb *sandbox.Sandbox, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := netns.Do(sb.NetNS(), func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRestartKeepsConnections: an agent is closed while two of its pods hold a direct TCP
// connection and one through a ClusterIP, and a new agent starts with the same directories: the
// pods keep their interfaces and addresses, both connections carry data again, byte for byte,
// and the new agent knows the pods (Check passes, Detach removes the interface).
func TestRestartKeepsConnections(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: making a network namespace needs root here (the end-to-end suite restarts agents rootless)")
	}
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		t.Skipf("skipped: a pod interface needs /dev/net/tun: %v", err)
	} else {
		f.Close()
	}
	ctx := context.Background()
	src := &agenttest.Source{}
	opts := agenttest.Options(src, "127.77.0.5", t.TempDir())
	a1, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	a1.Start()
	client, server := newSandbox(t), newSandbox(t)
	if _, err := a1.Attach(ctx, attach.Request{ID: "client", Namespace: "default", Name: "client", NetNS: client.Path()}); err != nil {
		t.Fatal(err)
	}
	sres, err := a1.Attach(ctx, attach.Request{ID: "server", Namespace: "default", Name: "server", NetNS: server.Path()})
	if err != nil {
		t.Fatal(err)
	}
	tcp := corev1.ProtocolTCP
	src.Set(agenttest.State{
		Services: []*corev1.Service{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "echo"},
			Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.30", Ports: []corev1.ServicePort{{Name: "e", Protocol: tcp, Port: 80}}},
		}},
		EndpointSlices: []*discoveryv1.EndpointSlice{{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "echo-1", Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: new("e"), Protocol: &tcp, Port: new(int32(7000))}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{sres.IP.String()}, NodeName: new("node-a")}},
		}},
	})
	// An echo server in the server pod.
	ln := listenIn(t, server, 7000)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	direct := dialIn(t, client, fmt.Sprintf("%v:7000", sres.IP))
	var viaService net.Conn
	waitUntil(t, "the ClusterIP to answer", func() bool {
		var err error
		if err = netns.Do(client.NetNS(), func() (err error) {
			viaService, err = net.DialTimeout("tcp4", "10.96.0.30:80", time.Second)
			return err
		}); err != nil {
			return false
		}
		t.Cleanup(func() { viaService.Close() })
		return true
	})
	echo := func(what string, c net.Conn, n int) {
		t.Helper()
		msg := make([]byte, n)
		rand.Read(msg)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go c.Write(msg)
		got := make([]byte, n)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("%s: the echo differs from what was sent", what)
		}
	}
	echo("direct, before the restart", direct, 1<<20)
	echo("through the ClusterIP, before the restart", viaService, 1<<20)

	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}
	a2, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	a2.Start()
	t.Cleanup(func() { a2.Close() })
	echo("direct, after the restart", direct, 4<<20)
	echo("through the ClusterIP, after the restart", viaService, 4<<20)
	if err := a2.Check(ctx, "server", server.Path()); err != nil {
		t.Errorf("the new agent's Check of a pod the old one attached: %v", err)
	}
	if err := a2.Detach(ctx, "server"); err != nil {
		t.Fatal(err)
	}
	if err := a2.Check(ctx, "server", server.Path()); err == nil {
		t.Error("Check after Detach passed")
	}
	if res, err := a2.Attach(ctx, attach.Request{ID: "again", NetNS: server.Path()}); err != nil {
		t.Errorf("attach in the namespace whose interface Detach removed: %v", err)
	} else if res.IP != sres.IP {
		t.Logf("new address %v (the old one, %v, was free again)", res.IP, sres.IP)
	}
}
