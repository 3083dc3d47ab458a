package attach_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/attach/attachtest"
)

// serve serves a on a unix socket in a temporary directory and returns its path.
func serve(t *testing.T, a attach.Attacher) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "attach.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: attach.Handler(a)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return path
}

// TestSocket carries every verb over the socket, and its errors back.
func TestSocket(t *testing.T) {
	fake := &attachtest.Fake{}
	c := attach.NewClient(serve(t, fake), 5*time.Second)
	ctx := context.Background()
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}
	req := attach.Request{ID: "c1", Namespace: "web", Name: "web-1", NetNS: "/proc/1/ns/net"}
	res, err := c.Attach(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.IP != netipAddr("10.244.0.2") || res.Interface != "eth0" || res.DNS.Search[0] != "web.svc.cluster.local" {
		t.Errorf("result %+v", res)
	}
	if err := c.Check(ctx, "c1", "/proc/1/ns/net"); err != nil {
		t.Errorf("check: %v", err)
	}
	if err := c.Check(ctx, "c1", "/proc/2/ns/net"); err == nil || !contains(err.Error(), "not /proc/2/ns/net") {
		t.Errorf("check of another namespace: %v, want the agent's reason", err)
	}
	if _, err := c.Attach(ctx, attach.Request{ID: "c2"}); err == nil || !contains(err.Error(), "needs an ID and a NetNS") {
		t.Errorf("bad attach: %v, want the agent's reason", err)
	}
	c.Attach(ctx, attach.Request{ID: "c3", NetNS: "/proc/3/ns/net"})
	if err := c.GC(ctx, []string{"c3"}); err != nil {
		t.Fatal(err)
	}
	if got := fake.Attached(); !slices.Equal(got, []string{"c3"}) {
		t.Errorf("after GC keeping c3: %v attached", got)
	}
	if err := c.Detach(ctx, "c3"); err != nil {
		t.Fatal(err)
	}
	fake.SetReady(errors.New("the data path is not up yet"))
	if err := c.Ready(ctx); err == nil || !contains(err.Error(), "not up yet") {
		t.Errorf("not ready: %v", err)
	}
	if errors.Is(c.Ready(ctx), attach.ErrUnavailable) {
		t.Error("an agent that answers is not unavailable")
	}
}

// TestClientUnavailable: no agent behind the socket is ErrUnavailable, for every verb.
func TestClientUnavailable(t *testing.T) {
	c := attach.NewClient(filepath.Join(t.TempDir(), "nobody.sock"), time.Second)
	ctx := context.Background()
	_, attachErr := c.Attach(ctx, attach.Request{ID: "x", NetNS: "/x"})
	for name, err := range map[string]error{
		"attach": attachErr,
		"detach": c.Detach(ctx, "x"),
		"check":  c.Check(ctx, "x", "/x"),
		"gc":     c.GC(ctx, nil),
		"ready":  c.Ready(ctx),
	} {
		if !errors.Is(err, attach.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func netipAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
