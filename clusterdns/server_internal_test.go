package clusterdns

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestNewOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without Domain: no error")
	}
	if _, err := New(Options{Domain: "bad..domain"}); err == nil {
		t.Error("New with a bad Domain: no error")
	}
	if _, err := New(Options{Domain: "cluster.local", Upstreams: []netip.AddrPort{{}}}); err == nil {
		t.Error("New with an invalid upstream: no error")
	}
	s, err := New(Options{Domain: "Cluster.Local", Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:0"), netip.MustParseAddrPort("[2001:db8::1]:5353")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.origin != "cluster.local." || s.ttl != DefaultTTL || s.udpSize != DefaultUDPSize || s.maxInFlight != DefaultMaxInFlight || s.upTimeout != DefaultUpstreamTimeout || s.cache.max != DefaultCacheSize {
		t.Errorf("defaults: origin %q ttl %d udp %d inflight %d timeout %v cache %d", s.origin, s.ttl, s.udpSize, s.maxInFlight, s.upTimeout, s.cache.max)
	}
	if want := []string{"192.0.2.1:53", "[2001:db8::1]:5353"}; !slices.Equal(s.upstreams, want) {
		t.Errorf("upstreams %q, want %q", s.upstreams, want)
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "resolv.conf")
	os.WriteFile(file, []byte("# test\nsearch example.org\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2\n"), 0o644)
	for _, tt := range []struct {
		file string
		want []string
	}{
		{file, []string{"192.0.2.53:53", "[2001:db8::53]:53"}},
		{filepath.Join(dir, "missing"), []string{"127.0.0.1:53"}}, // as glibc
	} {
		s, err := New(Options{Domain: "cluster.local", ResolvConf: tt.file})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s.upstreams, tt.want) {
			t.Errorf("%s: upstreams %q, want %q", tt.file, s.upstreams, tt.want)
		}
		s.Close()
	}
}

// TestServeConnIdle: a connection that sends nothing is closed after the
// idle timeout.
func TestServeConnIdle(t *testing.T) {
	s := newInternal(t)
	defer s.Close()
	s.idle = 50 * time.Millisecond
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan struct{})
	go func() { s.ServeConn(server); close(done) }()
	// One query answered, then silence.
	co := &dns.Conn{Conn: client}
	q := new(dns.Msg)
	q.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
	co.WriteMsg(q)
	if m, err := co.ReadMsg(); err != nil || len(m.Answer) != 1 {
		t.Fatalf("answer %v, %v", m, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("idle connection not closed")
	}
}
