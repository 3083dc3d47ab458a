// Package clusterdnstest has fakes for tests of clusterdns and of its
// users: a DatagramWriter that records what the server sends, and an
// upstream DNS server on the host's loopback.
package clusterdnstest

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Datagram is one UDP answer written by a clusterdns.Server.
type Datagram struct {
	To, From netip.AddrPort
	Payload  []byte // a copy
}

// Writer is a clusterdns.DatagramWriter that queues every datagram on C.
type Writer struct {
	C chan Datagram
	// Err, if set, is returned by every WriteDatagram (the datagram is
	// still queued).
	Err error
}

// NewWriter returns a Writer whose channel holds up to n datagrams; more
// block the writer.
func NewWriter(n int) *Writer { return &Writer{C: make(chan Datagram, n)} }

// WriteDatagram implements clusterdns.DatagramWriter.
func (w *Writer) WriteDatagram(to, from netip.AddrPort, payload []byte) error {
	w.C <- Datagram{To: to, From: from, Payload: append([]byte(nil), payload...)}
	return w.Err
}

// Upstream is a DNS server on 127.0.0.1 (UDP and TCP on the same port)
// that answers with Handler and counts the queries it gets.
type Upstream struct {
	Addr    netip.AddrPort
	Handler dns.HandlerFunc

	udp, tcp *dns.Server
	queries  atomic.Int64
	mu       sync.Mutex // guards names
	names    []string
}

// StartUpstream starts an Upstream answering with h; it stops at the end of
// the test.
func StartUpstream(t testing.TB, h dns.HandlerFunc) *Upstream {
	t.Helper()
	pc, l, err := listenBoth()
	if err != nil {
		t.Fatalf("upstream: %v", err)
	}
	u := &Upstream{Addr: netip.MustParseAddrPort(pc.LocalAddr().String()), Handler: h}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.queries.Add(1)
		if len(r.Question) > 0 {
			u.mu.Lock()
			u.names = append(u.names, r.Question[0].Name)
			u.mu.Unlock()
		}
		u.Handler(w, r)
	})
	started := make(chan struct{}, 2)
	u.udp = &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: func() { started <- struct{}{} }}
	u.tcp = &dns.Server{Listener: l, Handler: handler, NotifyStartedFunc: func() { started <- struct{}{} }}
	done := make(chan struct{}, 2)
	go func() { u.udp.ActivateAndServe(); done <- struct{}{} }()
	go func() { u.tcp.ActivateAndServe(); done <- struct{}{} }()
	<-started
	<-started
	t.Cleanup(func() {
		u.udp.Shutdown()
		u.tcp.Shutdown()
		<-done
		<-done
	})
	return u
}

// listenBoth opens UDP and TCP on one free port of 127.0.0.1. The UDP
// port the kernel picks may be taken for TCP (by another test binary,
// running alongside): then it tries another.
func listenBoth() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp: %w", err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("no port of 127.0.0.1 free for both UDP and TCP in 20 tries: %w", lastErr)
}

// Queries is how many queries the upstream has received.
func (u *Upstream) Queries() int { return int(u.queries.Load()) }

// Names are the question names received, in order.
func (u *Upstream) Names() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.names...)
}

// Answer returns a handler that answers every question with the records
// rrs (in zone-file syntax, owner names included) whose owner and type
// match, NXDOMAIN with an SOA of the given negative TTL when no record
// has the name, and NODATA with that SOA when the name has only other
// types.
func Answer(negTTL uint32, rrs ...string) dns.HandlerFunc {
	var parsed []dns.RR
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic("clusterdnstest.Answer: " + err.Error())
		}
		parsed = append(parsed, rr)
	}
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		q := r.Question[0]
		found := false
		for _, rr := range parsed {
			if !equalFold(rr.Header().Name, q.Name) {
				continue
			}
			found = true
			if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				c := dns.Copy(rr)
				c.Header().Name = q.Name
				m.Answer = append(m.Answer, c)
			}
		}
		if len(m.Answer) == 0 {
			if !found {
				m.Rcode = dns.RcodeNameError
			}
			m.Ns = []dns.RR{&dns.SOA{
				Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: negTTL},
				Ns:  "a.root-servers.net.", Mbox: "nstld.verisign-grs.com.", Serial: 1,
				Refresh: 1800, Retry: 900, Expire: 604800, Minttl: negTTL,
			}}
		}
		if o := r.IsEdns0(); o != nil {
			m.SetEdns0(o.UDPSize(), o.Do())
		}
		w.WriteMsg(m)
	}
}

func equalFold(a, b string) bool {
	return len(a) == len(b) && dns.CanonicalName(a) == dns.CanonicalName(b)
}
