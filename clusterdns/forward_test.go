package clusterdns_test

import (
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/clusterdns"
	"github.com/podnet/podnet/clusterdns/clusterdnstest"
)

// closedPort is an upstream address where nothing listens: a UDP query to
// it fails at once with "connection refused".
var closedPort = netip.MustParseAddrPort("127.0.0.1:1")

func exampleUpstream(t *testing.T) *clusterdnstest.Upstream {
	return clusterdnstest.StartUpstream(t, clusterdnstest.Answer(60,
		"www.example.org. 300 IN A 93.184.216.34",
		"short.example.org. 7 IN A 192.0.2.7",
		"alias.example.org. 300 IN CNAME www.example.org.",
		"txt.example.org. 300 IN TXT \"hello\"",
	))
}

func TestForward(t *testing.T) {
	up := exampleUpstream(t)
	s, clk := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{up.Addr}})
	s.Update(fixture())

	want := golden(`
		NOERROR qr rd ra
		Q WWW.example.org. IN A
		AN WWW.example.org. 30 IN A 93.184.216.34`)
	if got := render(exchange(t, s, query("WWW.example.org.", dns.TypeA))); got != want {
		t.Errorf("forwarded answer:\n%s\nwant:\n%s", got, want)
	}
	// From the cache, TTL counted down, the upstream not asked again; the
	// owner spelled as this client asked.
	clk.Advance(10 * time.Second)
	want = golden(`
		NOERROR qr rd ra
		Q www.example.org. IN A
		AN www.example.org. 20 IN A 93.184.216.34`)
	if got := render(exchange(t, s, query("www.example.org.", dns.TypeA))); got != want {
		t.Errorf("cached answer:\n%s\nwant:\n%s", got, want)
	}
	if n := up.Queries(); n != 1 {
		t.Errorf("upstream got %d queries, want 1", n)
	}
	// Expired after 30 s (the cap): asked again.
	clk.Advance(21 * time.Second)
	exchange(t, s, query("www.example.org.", dns.TypeA))
	if n := up.Queries(); n != 2 {
		t.Errorf("upstream got %d queries after expiry, want 2", n)
	}
	// A short TTL is the cache lifetime.
	exchange(t, s, query("short.example.org.", dns.TypeA))
	clk.Advance(6 * time.Second)
	m := exchange(t, s, query("short.example.org.", dns.TypeA))
	if len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 1 {
		t.Errorf("short TTL after 6 s:\n%s", render(m))
	}
	clk.Advance(time.Second)
	exchange(t, s, query("short.example.org.", dns.TypeA))
	if n := up.Queries(); n != 4 {
		t.Errorf("upstream got %d queries, want 4 (short.example.org twice)", n)
	}
	// The DO bit is part of the key.
	exchange(t, s, query("www.example.org.", dns.TypeA, withEDNS(1232, true)))
	if n := up.Queries(); n != 5 {
		t.Errorf("upstream got %d queries, want 5 (a DO query is cached apart)", n)
	}
	st := s.Stats()
	if st.CacheHits != 2 || st.Forwarded != 5 {
		t.Errorf("stats %+v: want 2 cache hits, 5 forwarded", st)
	}
}

func TestForwardNegativeCache(t *testing.T) {
	up := exampleUpstream(t)
	s, clk := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{up.Addr}})
	s.Update(fixture())
	want := golden(`
		NXDOMAIN qr rd ra
		Q nope.example.org. IN A
		NS . 30 IN SOA a.root-servers.net. nstld.verisign-grs.com. 1 1800 900 604800 60`)
	if got := render(exchange(t, s, query("nope.example.org.", dns.TypeA))); got != want {
		t.Errorf("NXDOMAIN:\n%s\nwant:\n%s", got, want)
	}
	clk.Advance(29 * time.Second)
	if m := exchange(t, s, query("nope.example.org.", dns.TypeA)); m.Rcode != dns.RcodeNameError || m.Ns[0].Header().Ttl != 1 {
		t.Errorf("cached NXDOMAIN:\n%s", render(m))
	}
	// NODATA is cached too.
	exchange(t, s, query("www.example.org.", dns.TypeAAAA))
	exchange(t, s, query("www.example.org.", dns.TypeAAAA))
	if n := up.Queries(); n != 2 {
		t.Errorf("upstream got %d queries, want 2", n)
	}
	clk.Advance(time.Second)
	exchange(t, s, query("nope.example.org.", dns.TypeA))
	if n := up.Queries(); n != 3 {
		t.Errorf("upstream got %d queries after the negative entry expired, want 3", n)
	}
}

func TestForwardAllUpstreamsDown(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{closedPort, netip.MustParseAddrPort("127.0.0.1:2")}})
	s.Update(fixture())
	start := time.Now()
	m := exchange(t, s, query("www.example.org.", dns.TypeA))
	if m.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("SERVFAIL after %v, want at once (refused ports)", d)
	}
	if st := s.Stats(); st.UpstreamErrors != 2 || st.ByRcode["SERVFAIL"] != 1 {
		t.Errorf("stats %+v: want 2 upstream errors, 1 SERVFAIL", st)
	}
	// A failure is not cached.
	exchange(t, s, query("www.example.org.", dns.TypeA))
	if st := s.Stats(); st.UpstreamErrors != 4 {
		t.Errorf("stats %+v: want 4 upstream errors", st)
	}
}

// TestForwardRotation: a dead first upstream is skipped, and the one that
// answered is asked first afterwards.
func TestForwardRotation(t *testing.T) {
	up := exampleUpstream(t)
	s, _ := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{closedPort, up.Addr}})
	s.Update(fixture())
	for _, name := range []string{"www.example.org.", "short.example.org."} {
		if m := exchange(t, s, query(name, dns.TypeA)); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			t.Errorf("%s:\n%s", name, render(m))
		}
	}
	if st := s.Stats(); st.UpstreamErrors != 1 {
		t.Errorf("%d upstream errors, want 1 (the dead one tried once)", st.UpstreamErrors)
	}
}

// TestForwardServfailNext: an upstream's SERVFAIL sends the query to the
// next one.
func TestForwardServfailNext(t *testing.T) {
	bad := clusterdnstest.StartUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		w.WriteMsg(m)
	})
	good := exampleUpstream(t)
	s, _ := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{bad.Addr, good.Addr}})
	s.Update(fixture())
	if m := exchange(t, s, query("www.example.org.", dns.TypeA)); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("answer:\n%s", render(m))
	}
	if bad.Queries() != 1 || good.Queries() != 1 {
		t.Errorf("queries: bad %d, good %d; want 1 each", bad.Queries(), good.Queries())
	}
}

// TestForwardTruncatedRetriesTCP: a truncated UDP answer from the upstream
// is asked again over TCP, and the client gets the full answer (over TCP) or
// a truncated one (over UDP).
func TestForwardTruncatedRetriesTCP(t *testing.T) {
	var udp, tcp atomic.Int64
	up := clusterdnstest.StartUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if w.RemoteAddr().Network() == "udp" {
			udp.Add(1)
			m.Truncated = true
			w.WriteMsg(m)
			return
		}
		tcp.Add(1)
		for i := range 100 {
			rr, _ := dns.NewRR("big.example.org. 60 IN A 192.0.2." + strconv.Itoa(i))
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	s, _ := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{up.Addr}})
	s.Update(fixture())
	m := exchange(t, s, query("big.example.org.", dns.TypeA))
	if !m.Truncated || udp.Load() != 1 || tcp.Load() != 1 {
		t.Errorf("UDP client: TC %v (want true); upstream UDP %d TCP %d queries (want 1, 1)", m.Truncated, udp.Load(), tcp.Load())
	}
	m = exchangeTCP(t, s, query("big.example.org.", dns.TypeA))
	if m.Truncated || len(m.Answer) != 100 {
		t.Errorf("TCP client: TC %v, %d answers; want the 100 (from the cache)", m.Truncated, len(m.Answer))
	}
	if udp.Load() != 1 {
		t.Errorf("upstream asked again: %d", udp.Load())
	}
}

func TestForwardExternalName(t *testing.T) {
	up := exampleUpstream(t)
	s, _ := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{up.Addr}})
	s.Update(fixture())
	want := golden(`
		NOERROR qr aa rd ra
		Q extout.default.svc.cluster.local. IN A
		AN extout.default.svc.cluster.local. 5 IN CNAME www.example.org.
		AN www.example.org. 30 IN A 93.184.216.34`)
	if got := render(exchange(t, s, query("extout.default.svc.cluster.local.", dns.TypeA))); got != want {
		t.Errorf("ExternalName A:\n%s\nwant:\n%s", got, want)
	}
	if names := up.Names(); len(names) != 1 || names[0] != "www.example.org." {
		t.Errorf("upstream asked %q, want only the CNAME target", names)
	}
	// The target's negative answer keeps its rcode, with the target's SOA.
	r := fixture()
	r.Services = append(r.Services, clusterdns.Service{Namespace: "default", Name: "gone", ExternalName: "nope.example.org"})
	s.Update(r)
	want = golden(`
		NXDOMAIN qr aa rd ra
		Q gone.default.svc.cluster.local. IN A
		AN gone.default.svc.cluster.local. 5 IN CNAME nope.example.org.
		NS . 30 IN SOA a.root-servers.net. nstld.verisign-grs.com. 1 1800 900 604800 60`)
	if got := render(exchange(t, s, query("gone.default.svc.cluster.local.", dns.TypeA))); got != want {
		t.Errorf("ExternalName to a missing name:\n%s\nwant:\n%s", got, want)
	}
}

func TestForwardExternalNameUpstreamDown(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{closedPort}})
	s.Update(fixture())
	want := golden(`
		NOERROR qr aa rd ra
		Q extout.default.svc.cluster.local. IN A
		AN extout.default.svc.cluster.local. 5 IN CNAME www.example.org.`)
	if got := render(exchange(t, s, query("extout.default.svc.cluster.local.", dns.TypeA))); got != want {
		t.Errorf("ExternalName A with the upstream down:\n%s\nwant:\n%s", got, want)
	}
}

// TestClusterNamesNeverForwarded: nothing of the cluster domain reaches an
// upstream, whatever the type.
func TestClusterNamesNeverForwarded(t *testing.T) {
	up := exampleUpstream(t)
	s, _ := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{up.Addr}})
	s.Update(fixture())
	for _, name := range []string{"cluster.local.", "x.cluster.local.", "web.default.svc.cluster.local.", "a.b.c.d.e.f.cluster.local."} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeMX, dns.TypeDS, dns.TypeANY, dns.TypeHTTPS} {
			exchange(t, s, query(name, qt))
		}
	}
	if n := up.Queries(); n != 0 {
		t.Errorf("upstream got %d queries for cluster names: %q", n, up.Names())
	}
}

// TestMaxInFlight: beyond MaxInFlight waiting queries, SERVFAIL at once;
// Close ends the waiting ones without waiting for the upstream.
func TestMaxInFlight(t *testing.T) {
	release := make(chan struct{})
	up := clusterdnstest.StartUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		<-release
	})
	t.Cleanup(func() { close(release) }) // before the upstream stops
	s, _ := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{up.Addr}, MaxInFlight: 1, UpstreamTimeout: time.Minute})
	s.Update(fixture())
	w := clusterdnstest.NewWriter(2)
	wire, _ := query("slow.example.org.", dns.TypeA).Pack()
	s.ServeDatagram(podAddr, dnsAddr, wire, w)
	// Wait until the upstream holds the first query.
	for deadline := time.Now().Add(5 * time.Second); up.Queries() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("upstream never got the query")
		}
	}
	m := exchange(t, s, query("other.example.org.", dns.TypeA))
	if m.Rcode != dns.RcodeServerFailure || s.Stats().Overloaded != 1 {
		t.Errorf("second query: %s, overloaded %d; want SERVFAIL, 1", dns.RcodeToString[m.Rcode], s.Stats().Overloaded)
	}
	// Cluster names are still answered.
	if m := exchange(t, s, query("web.default.svc.cluster.local.", dns.TypeA)); m.Rcode != dns.RcodeSuccess {
		t.Errorf("cluster name while overloaded: %s", dns.RcodeToString[m.Rcode])
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v with a query waiting for an upstream", d)
	}
	select {
	case d := <-w.C:
		t.Errorf("answer written after Close: %d bytes", len(d.Payload))
	default:
	}
	if n := s.Stats().Dropped; n != 1 {
		t.Errorf("%d dropped, want 1 (the query Close cut off)", n)
	}
	s.ServeDatagram(podAddr, dnsAddr, wire, w)
	if n := s.Stats().Dropped; n != 2 {
		t.Errorf("%d dropped, want 2 (a query after Close)", n)
	}
}

// TestConcurrentIdenticalQueries share one upstream exchange.
func TestConcurrentIdenticalQueries(t *testing.T) {
	release := make(chan struct{})
	inner := clusterdnstest.Answer(60, "www.example.org. 300 IN A 93.184.216.34")
	up := clusterdnstest.StartUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		<-release
		inner(w, r)
	})
	s, _ := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{up.Addr}})
	s.Update(fixture())
	w := clusterdnstest.NewWriter(10)
	for i := range 10 {
		q := query("www.example.org.", dns.TypeA)
		q.Id = uint16(i)
		wire, _ := q.Pack()
		s.ServeDatagram(podAddr, dnsAddr, wire, w)
	}
	for deadline := time.Now().Add(5 * time.Second); up.Queries() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("upstream never got the query")
		}
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	ids := map[uint16]bool{}
	for range 10 {
		d := <-w.C
		m := new(dns.Msg)
		if err := m.Unpack(d.Payload); err != nil || len(m.Answer) != 1 {
			t.Fatalf("answer %v: %v", m, err)
		}
		ids[m.Id] = true
	}
	if len(ids) != 10 || up.Queries() != 1 {
		t.Errorf("%d distinct ids (want 10), upstream got %d queries (want 1)", len(ids), up.Queries())
	}
}

func exchangeTCP(t testing.TB, s *clusterdns.Server, qs ...*dns.Msg) *dns.Msg {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() { s.ServeConn(server); close(done) }()
	defer func() { client.Close(); <-done }()
	co := &dns.Conn{Conn: client}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	var last *dns.Msg
	for _, q := range qs {
		if err := co.WriteMsg(q); err != nil {
			t.Fatalf("write query over TCP: %v", err)
		}
		m, err := co.ReadMsg()
		if err != nil {
			t.Fatalf("read answer over TCP: %v", err)
		}
		if m.Id != q.Id {
			t.Errorf("TCP answer id %#x, query %#x", m.Id, q.Id)
		}
		last = m
	}
	return last
}
