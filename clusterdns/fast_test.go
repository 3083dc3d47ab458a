package clusterdns

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/clusterdns/clusterdnstest"
)

func newInternal(t testing.TB) *Server {
	t.Helper()
	s, err := New(Options{
		Domain:          "cluster.local",
		DNSIP:           netip.MustParseAddr("10.96.0.10"),
		Upstreams:       []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")},
		UpstreamTimeout: 100 * time.Millisecond,
		Now:             func() time.Time { return time.Unix(1767225600, 0) },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Update(Fixture())
	return s
}

// slowAnswer is the general path's answer to msg, packed as ServeDatagram
// packs it; nil if it would be forwarded or dropped.
func slowAnswer(s *Server, msg []byte) []byte {
	req, resp := s.unpack(msg)
	if req == nil && resp == nil {
		return nil
	}
	if resp == nil {
		var p *plan
		if resp, _, p = s.resolve(s.zone.Load(), req, false); p != nil {
			return nil
		}
	}
	out, err := resp.PackBuffer(make([]byte, MaxUDPSize))
	if err != nil {
		return nil
	}
	return out
}

// checkFast fails t when the fast path answers msg differently from the
// general path.
func checkFast(t *testing.T, s *Server, msg []byte) bool {
	t.Helper()
	out := make([]byte, MaxUDPSize)
	n, rcode := s.fastAnswer(s.zone.Load(), msg, out)
	if n == 0 {
		return false
	}
	slow := slowAnswer(s, msg)
	if bytes.Equal(out[:n], slow) {
		return true
	}
	// Compression may differ (the general path also compresses to other
	// names than the origin); the messages must not.
	fm, sm := new(dns.Msg), new(dns.Msg)
	ferr, serr := fm.Unpack(out[:n]), sm.Unpack(slow)
	if ferr != nil || serr != nil || fm.String() != sm.String() || fm.Rcode != rcode {
		t.Errorf("query %x:\nfast path %x (%v)\n%v\ngeneral path %x (%v)\n%v", msg, out[:n], ferr, fm, slow, serr, sm)
	}
	return true
}

// TestFastPathSameAnswer: the fast path takes the common queries and
// answers them byte for byte as the general path does.
func TestFastPathSameAnswer(t *testing.T) {
	s := newInternal(t)
	defer s.Close()
	for _, tt := range []struct {
		name  string
		qtype uint16
		opt   func(*dns.Msg)
		fast  bool
	}{
		{"web.default.svc.cluster.local.", dns.TypeA, nil, true},
		{"WEB.Default.svc.cluster.local.", dns.TypeA, nil, true},
		{"db.default.svc.cluster.local.", dns.TypeA, nil, true},
		{"dual.default.svc.cluster.local.", dns.TypeAAAA, nil, true},
		{"10-244-1-10.default.pod.cluster.local.", dns.TypeA, nil, true},
		{"_http._tcp.web.default.svc.cluster.local.", dns.TypeA, nil, true}, // NODATA
		{"cluster.local.", dns.TypeA, nil, true},                            // NODATA at the apex
		{"dns.cluster.local.", dns.TypeAAAA, nil, true},                     // NODATA, the SOA's names compress differently
		{"ns.dns.cluster.local.", dns.TypeAAAA, nil, true},
		{"example.org.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, true) }, true}, // NXDOMAIN
		{"Example.ORG.default.svc.cluster.local.", dns.TypeAAAA, nil, true},
		{"example.org.default.svc.Cluster.local.", dns.TypeA, nil, false}, // the origin not in lowercase
		{"xcluster.local.", dns.TypeA, nil, false},                        // not in the zone
		{"local.", dns.TypeA, nil, false},
		{"web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(4096, true) }, true},
		{"web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(512, false) }, true},
		{"web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}, true},
		{"web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.RecursionDesired, m.CheckingDisabled, m.AuthenticatedData = false, true, true }, true},
		{"web.default.svc.cluster.local.", dns.TypeAAAA, nil, true}, // NODATA
		{"nope.default.svc.cluster.local.", dns.TypeA, nil, true},   // NXDOMAIN
		{"nope.default.svc.cluster.local.", dns.TypeMX, nil, false},
		{"5.1.244.10.in-addr.arpa.", dns.TypeA, nil, false},
		{"ext.default.svc.cluster.local.", dns.TypeA, nil, false}, // CNAME
		{"web.default.svc.cluster.local.", dns.TypeSRV, nil, false},
		{"example.org.", dns.TypeA, nil, false},
	} {
		q := new(dns.Msg)
		q.SetQuestion(tt.name, tt.qtype)
		q.Id = 0xbeef
		if tt.opt != nil {
			tt.opt(q)
		}
		msg, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if got := checkFast(t, s, msg); got != tt.fast {
			t.Errorf("%s %s: fast path %v, want %v", tt.name, dns.TypeToString[tt.qtype], got, tt.fast)
		}
	}
	// A headless Service too big for 512 bytes takes the general path
	// (truncation).
	r := Fixture()
	svc := Service{Namespace: "default", Name: "big", Headless: true}
	for i := range 100 {
		svc.Endpoints = append(svc.Endpoints, Endpoint{Addr: netip.AddrFrom4([4]byte{10, 244, 9, byte(i)}), Ready: true})
	}
	r.Services = append(r.Services, svc)
	s.Update(r)
	q := new(dns.Msg)
	q.SetQuestion("big.default.svc.cluster.local.", dns.TypeA)
	msg, _ := q.Pack()
	if checkFast(t, s, msg) {
		t.Error("fast path answered a query whose answer does not fit")
	}
}

func fuzzSeeds() [][]byte {
	var seeds [][]byte
	add := func(name string, qtype uint16, opts ...func(*dns.Msg)) {
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		for _, o := range opts {
			o(q)
		}
		if b, err := q.Pack(); err == nil {
			seeds = append(seeds, b)
		}
	}
	edns := func(m *dns.Msg) { m.SetEdns0(1232, true) }
	add("web.default.svc.cluster.local.", dns.TypeA)
	add("web.default.svc.cluster.local.", dns.TypeA, edns)
	add("DB.default.svc.cluster.local.", dns.TypeA)
	add("_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV, edns)
	add("5.1.244.10.in-addr.arpa.", dns.TypePTR)
	add("ext.default.svc.cluster.local.", dns.TypeA)
	add("extout.default.svc.cluster.local.", dns.TypeA)
	add("cluster.local.", dns.TypeNS)
	add("cluster.local.", dns.TypeAXFR)
	add("example.org.", dns.TypeA)
	add("nope.svc.cluster.local.", dns.TypeANY)
	add("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate })
	add("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })
	add("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(4096, false); m.IsEdns0().SetVersion(1) })
	seeds = append(seeds,
		[]byte{},
		[]byte{0x12, 0x34},
		[]byte{0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
		// A compression pointer loop in the question.
		[]byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1},
		// A label longer than 63.
		append([]byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64}, make([]byte, 70)...),
	)
	return seeds
}

// FuzzServeDatagram: no input panics the Server; every answer parses,
// is a response and echoes the query's id, fits the UDP limit, and the fast
// path agrees with the general path.
func FuzzServeDatagram(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		s := newInternal(t)
		checkFast(t, s, msg)
		w := clusterdnstest.NewWriter(4)
		s.ServeDatagram(netip.MustParseAddrPort("10.244.1.10:5353"), netip.MustParseAddrPort("10.96.0.10:53"), msg, w)
		// Let a forwarded query fail (the upstream port is closed) and
		// answer, then stop.
		for deadline := time.Now().Add(5 * time.Second); s.inFlight.Load() != 0 && time.Now().Before(deadline); {
			time.Sleep(100 * time.Microsecond)
		}
		s.Close()
		if p := s.Stats().Panics; p != 0 {
			t.Fatalf("%d panics", p)
		}
		close(w.C)
		n := 0
		for d := range w.C {
			n++
			m := new(dns.Msg)
			if err := m.Unpack(d.Payload); err != nil {
				t.Fatalf("answer %x does not parse: %v", d.Payload, err)
			}
			if !m.Response || len(msg) < 2 || m.Id != uint16(msg[0])<<8|uint16(msg[1]) {
				t.Fatalf("answer %v to query %x: not a response with the query's id", m, msg)
			}
			if len(d.Payload) > MaxUDPSize || (len(d.Payload) > dns.MinMsgSize && m.IsEdns0() == nil) {
				t.Fatalf("answer of %d bytes", len(d.Payload))
			}
		}
		if n > 1 {
			t.Fatalf("%d answers to one query", n)
		}
	})
}
