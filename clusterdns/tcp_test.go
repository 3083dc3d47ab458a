package clusterdns_test

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/clusterdns"
)

// bigHeadless is a headless Service with n ready endpoints.
func bigHeadless(n int) clusterdns.Records {
	r := fixture()
	svc := clusterdns.Service{Namespace: "default", Name: "big", Headless: true, Ports: []clusterdns.Port{{Name: "http", Protocol: "TCP", Port: 80}}}
	for i := range n {
		svc.Endpoints = append(svc.Endpoints, clusterdns.Endpoint{
			Addr:  netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(1 + i%250)}),
			Ready: true,
		})
	}
	r.Services = append(r.Services, svc)
	return r
}

func TestTruncation(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{})
	s.Update(bigHeadless(200))
	const name = "big.default.svc.cluster.local."

	// UDP without EDNS0: at most 512 bytes, TC set.
	m := exchange(t, s, query(name, dns.TypeA))
	if !m.Truncated || len(m.Answer) == 0 || len(m.Answer) >= 200 {
		t.Errorf("UDP without EDNS0: TC %v with %d answers; want TC and some", m.Truncated, len(m.Answer))
	}
	// UDP with EDNS0 4096: bounded by the server's 1232, TC set, OPT kept.
	m = exchange(t, s, query(name, dns.TypeA, withEDNS(4096, false)))
	m.Compress = true
	if wire, _ := m.Pack(); !m.Truncated || len(wire) > 1232 || m.IsEdns0() == nil {
		t.Errorf("UDP with EDNS0: TC %v, %d bytes, OPT %v; want TC, at most 1232 bytes, OPT", m.Truncated, len(wire), m.IsEdns0() != nil)
	}
	// A small answer with a small EDNS0 size: the floor is 512.
	m = exchange(t, s, query("web.default.svc.cluster.local.", dns.TypeA, withEDNS(100, false)))
	if m.Truncated || len(m.Answer) != 1 {
		t.Errorf("EDNS0 size 100: TC %v, %d answers", m.Truncated, len(m.Answer))
	}
	// TCP: everything.
	m = exchangeTCP(t, s, query(name, dns.TypeA))
	if m.Truncated || len(m.Answer) != 200 {
		t.Errorf("TCP: TC %v with %d answers; want all 200", m.Truncated, len(m.Answer))
	}
	m = exchangeTCP(t, s, query("_http._tcp."+name, dns.TypeSRV))
	if m.Truncated || len(m.Answer) != 200 || len(m.Extra) != 200 {
		t.Errorf("TCP SRV: TC %v, %d answers, %d additional; want 200, 200", m.Truncated, len(m.Answer), len(m.Extra))
	}
	if w := m.Answer[0].(*dns.SRV).Weight; w != 1 {
		t.Errorf("SRV weight of 1 in 200: %d, want 1 (at least 1)", w)
	}
	if st := s.Stats(); st.Truncated != 2 {
		t.Errorf("%d truncated, want 2", st.Truncated)
	}
}

// TestServeConn: several queries on one connection, in order; a forwarded
// one answered in place.
func TestServeConn(t *testing.T) {
	up := exampleUpstream(t)
	s, _ := newServer(t, clusterdns.Options{Upstreams: []netip.AddrPort{up.Addr}})
	s.Update(fixture())
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() { s.ServeConn(server); close(done) }()
	co := &dns.Conn{Conn: client}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	for i, name := range []string{"web.default.svc.cluster.local.", "www.example.org.", "nope.svc.cluster.local.", "_pg._tcp.db.default.svc.cluster.local."} {
		q := query(name, dns.TypeA)
		if i == 3 {
			q = query(name, dns.TypeSRV)
		}
		q.Id = uint16(i)
		if err := co.WriteMsg(q); err != nil {
			t.Fatalf("write: %v", err)
		}
		m, err := co.ReadMsg()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if m.Id != uint16(i) || m.Question[0].Name != name {
			t.Errorf("answer %d: id %d, question %s", i, m.Id, m.Question[0].Name)
		}
		wantAnswers := map[int]int{0: 1, 1: 1, 2: 0, 3: 2}[i]
		if len(m.Answer) != wantAnswers {
			t.Errorf("%s: %d answers, want %d:\n%s", name, len(m.Answer), wantAnswers, render(m))
		}
	}
	client.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after the peer closed")
	}
}

// TestServeConnBadFrames: a frame too short for a header or longer than
// MaxTCPQuery ends the connection; garbage of a valid length is FORMERR.
func TestServeConnBadFrames(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{})
	s.Update(fixture())
	for _, tt := range []struct {
		name   string
		frame  []byte
		answer bool
	}{
		{"short", []byte{0, 3, 1, 2, 3}, false},
		{"too long", binary.BigEndian.AppendUint16(nil, clusterdns.MaxTCPQuery+1), false},
		{"garbage", append([]byte{0, 14, 0xab, 0xcd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, 0xff, 0xff), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			done := make(chan struct{})
			go func() { s.ServeConn(server); close(done) }()
			defer func() { client.Close(); <-done }()
			client.SetDeadline(time.Now().Add(5 * time.Second))
			go client.Write(tt.frame)
			var hdr [2]byte
			_, err := io.ReadFull(client, hdr[:])
			if !tt.answer {
				if err == nil {
					t.Errorf("got an answer, want the connection closed")
				}
				return
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			buf := make([]byte, binary.BigEndian.Uint16(hdr[:]))
			io.ReadFull(client, buf)
			m := new(dns.Msg)
			if err := m.Unpack(buf); err != nil || m.Rcode != dns.RcodeFormatError || m.Id != 0xabcd {
				t.Errorf("answer %v (%v): want FORMERR with id 0xabcd", m, err)
			}
		})
	}
}

// TestCloseEndsServeConn: Close closes idle connections and waits for
// their ServeConn.
func TestCloseEndsServeConn(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{})
	s.Update(fixture())
	var done []chan struct{}
	for range 3 {
		client, server := net.Pipe()
		t.Cleanup(func() { client.Close() })
		d := make(chan struct{})
		go func() { s.ServeConn(server); close(d) }()
		done = append(done, d)
	}
	time.Sleep(10 * time.Millisecond)
	start := time.Now()
	s.Close()
	for i, d := range done {
		select {
		case <-d:
		default:
			t.Errorf("ServeConn %d still running after Close", i)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	// After Close, ServeConn closes the connection at once.
	client, server := net.Pipe()
	s.ServeConn(server)
	client.SetDeadline(time.Now().Add(time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("connection open after ServeConn returned")
	}
}

// TestManyQueriesOneConnection checks that the loop reuses its buffers
// correctly across queries of different sizes.
func TestManyQueriesOneConnection(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{})
	s.Update(bigHeadless(200))
	var qs []*dns.Msg
	for i := range 20 {
		name := "web.default.svc.cluster.local."
		if i%3 == 0 {
			name = "big.default.svc.cluster.local."
		}
		q := query(name, dns.TypeA)
		q.Id = uint16(i)
		qs = append(qs, q)
	}
	m := exchangeTCP(t, s, qs...)
	if len(m.Answer) != 1 {
		t.Errorf("last answer: %d records", len(m.Answer))
	}
}
