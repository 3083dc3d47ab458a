package clusterdns_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/clusterdns"
	"github.com/podnet/podnet/clusterdns/clusterdnstest"
	"github.com/podnet/podnet/internal/leakcheck"
)

var (
	podAddr = netip.MustParseAddrPort("10.244.1.10:40000")
	dnsAddr = netip.MustParseAddrPort("10.96.0.10:53")
	// epoch is the fake clock's start: SOA serials are its Unix time.
	epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// clock is a fake clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// fixture is the cluster of the golden tests (fixture_test.go).
func fixture() clusterdns.Records { return clusterdns.Fixture() }

// newServer starts a Server for cluster.local with a fake clock, checks for
// leaked goroutines after the test, and closes it at the end.
func newServer(t testing.TB, opts clusterdns.Options) (*clusterdns.Server, *clock) {
	t.Helper()
	// The fake upstreams stop in their own cleanups, which run after this
	// check when they were started first.
	leakcheck.AtCleanup(t, leakcheck.Options{Match: []string{"podnet/podnet/clusterdns"}, Ignore: []string{"clusterdnstest.StartUpstream"}})
	clk := &clock{t: epoch}
	if opts.Domain == "" {
		opts.Domain = "cluster.local"
	}
	if !opts.DNSIP.IsValid() {
		opts.DNSIP = dnsAddr.Addr()
	}
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if len(opts.Upstreams) == 0 {
		// A closed port: any forward fails fast.
		opts.Upstreams = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}
	}
	s, err := clusterdns.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if p := s.Stats().Panics; p != 0 {
			t.Errorf("%d panics recovered", p)
		}
	})
	return s, clk
}

// query builds a query with RD set and the given options applied.
func query(name string, qtype uint16, opts ...func(*dns.Msg)) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.Id = 0x4242
	for _, o := range opts {
		o(q)
	}
	return q
}

func withEDNS(size uint16, do bool) func(*dns.Msg) {
	return func(m *dns.Msg) { m.SetEdns0(size, do) }
}

// exchange sends q through ServeDatagram and returns the answer, waiting
// for a forwarded one.
func exchange(t testing.TB, s *clusterdns.Server, q *dns.Msg) *dns.Msg {
	t.Helper()
	wire, err := q.Pack()
	if err != nil {
		t.Fatalf("pack query: %v", err)
	}
	return exchangeWire(t, s, wire)
}

func exchangeWire(t testing.TB, s *clusterdns.Server, wire []byte) *dns.Msg {
	t.Helper()
	w := clusterdnstest.NewWriter(1)
	s.ServeDatagram(podAddr, dnsAddr, wire, w)
	select {
	case d := <-w.C:
		if d.To != podAddr || d.From != dnsAddr {
			t.Errorf("answer sent from %v to %v, want from %v to %v", d.From, d.To, dnsAddr, podAddr)
		}
		if len(d.Payload) > 512 && !hasOPT(wire) {
			t.Errorf("answer of %d bytes to a query without EDNS0", len(d.Payload))
		}
		m := new(dns.Msg)
		if err := m.Unpack(d.Payload); err != nil {
			t.Fatalf("unpack answer: %v", err)
		}
		if m.Id != uint16(wire[0])<<8|uint16(wire[1]) {
			t.Errorf("answer id %#x, query id %#x", m.Id, wire[:2])
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer")
		return nil
	}
}

func hasOPT(wire []byte) bool {
	m := new(dns.Msg)
	return m.Unpack(wire) == nil && m.IsEdns0() != nil
}

// render prints a message for golden comparison: the rcode and flags, then
// one line per record, each prefixed with its section, fields separated by
// single spaces.
func render(m *dns.Msg) string {
	var b strings.Builder
	if m.Rcode == dns.RcodeBadVers {
		b.WriteString("BADVERS") // miekg/dns names 16 BADSIG, its TSIG meaning
	} else {
		b.WriteString(dns.RcodeToString[m.Rcode])
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{m.Response, "qr"}, {m.Authoritative, "aa"}, {m.Truncated, "tc"}, {m.RecursionDesired, "rd"}, {m.RecursionAvailable, "ra"}, {m.AuthenticatedData, "ad"}, {m.CheckingDisabled, "cd"}} {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	b.WriteString("\n")
	for _, q := range m.Question {
		fmt.Fprintf(&b, "Q %s %s %s\n", q.Name, dns.ClassToString[q.Qclass], dns.TypeToString[q.Qtype])
	}
	for _, sec := range []struct {
		name string
		rrs  []dns.RR
	}{{"AN", m.Answer}, {"NS", m.Ns}, {"AR", m.Extra}} {
		for _, rr := range sec.rrs {
			if o, ok := rr.(*dns.OPT); ok {
				fmt.Fprintf(&b, "%s OPT udp=%d do=%v version=%d\n", sec.name, o.UDPSize(), o.Do(), o.Version())
				continue
			}
			fmt.Fprintf(&b, "%s %s\n", sec.name, strings.Join(strings.Fields(rr.String()), " "))
		}
	}
	return b.String()
}

// golden trims the common indentation of a raw-string expectation.
func golden(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return l == "" }), "\n") + "\n"
}
