package clusterdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// upstreamUDPSize is the EDNS0 size the Server advertises to its upstreams;
// upstreamReadSize is the buffer it reads their UDP answers into (an
// upstream may ignore what it was told).
const (
	upstreamUDPSize  = 1232
	upstreamReadSize = 4096
)

// flight is an upstream exchange under way; identical queries wait for it
// instead of asking again.
type flight struct {
	done chan struct{}
	msg  *dns.Msg // read-only once done is closed
	err  error
}

// forward completes a query with the upstreams: a plain forward, or the
// chase of an ExternalName's CNAME target.
func (s *Server) forward(ctx context.Context, qi *question, p *plan) *dns.Msg {
	up, err := s.upstream(ctx, p.name, p.qtype, p.qclass, qi.do)
	return s.forwarded(qi, p, up, err)
}

// fromCache completes a query from the upstream cache, without I/O; nil
// when the cache does not have the answer.
func (s *Server) fromCache(qi *question, p *plan) *dns.Msg {
	key := cacheKey{name: strings.ToLower(p.name), qtype: p.qtype, qclass: p.qclass, do: qi.do}
	up, ok := s.cache.get(key, s.now())
	if !ok {
		return nil
	}
	s.st.cacheHits.Add(1)
	return s.forwarded(qi, p, up, nil)
}

// forwarded builds the answer to qi from the upstreams' answer up (or their
// failure, err).
func (s *Server) forwarded(qi *question, p *plan, up *dns.Msg, err error) *dns.Msg {
	m := s.header(qi, dns.RcodeSuccess)
	if p.prefix == nil {
		if err != nil {
			m.Rcode = dns.RcodeServerFailure
			return s.finish(qi, m)
		}
		m.Rcode = up.Rcode
		m.AuthenticatedData = up.AuthenticatedData && (qi.do || qi.cd)
		m.Answer, m.Ns, m.Extra = up.Answer, up.Ns, up.Extra
		// The cache is shared by spellings: echo this client's.
		for _, rr := range m.Answer {
			if h := rr.Header(); h.Name != qi.q.Name && strings.EqualFold(h.Name, qi.q.Name) {
				h.Name = qi.q.Name
			}
		}
		return s.finish(qi, m)
	}
	// The CNAME chain is ours (authoritative); the target's records are
	// appended when the upstream has an answer, and its rcode kept
	// (RFC 6604); when it fails, the CNAME alone.
	m.Authoritative = true
	m.Answer = p.prefix
	if err == nil && (up.Rcode == dns.RcodeSuccess || up.Rcode == dns.RcodeNameError) {
		m.Rcode = up.Rcode
		m.Answer = append(m.Answer, up.Answer...)
		if len(up.Answer) == 0 {
			m.Ns = up.Ns
		}
	}
	return s.finish(qi, m)
}

// upstream returns the upstreams' answer for (name, qtype, qclass), from
// the cache or from one exchange shared by identical concurrent queries.
// The answer is the caller's to modify; it has no OPT record.
func (s *Server) upstream(ctx context.Context, name string, qtype, qclass uint16, do bool) (*dns.Msg, error) {
	key := cacheKey{name: strings.ToLower(name), qtype: qtype, qclass: qclass, do: do}
	if inDomain(key.name, s.origin) {
		// Never reached: resolve answers the whole cluster domain.
		return nil, errors.New("clusterdns: refusing to forward a cluster name")
	}
	if m, ok := s.cache.get(key, s.now()); ok {
		s.st.cacheHits.Add(1)
		return m, nil
	}
	s.flightMu.Lock()
	if f, ok := s.flights[key]; ok {
		s.flightMu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.err != nil {
			return nil, f.err
		}
		return f.msg.Copy(), nil
	}
	f := &flight{done: make(chan struct{})}
	s.flights[key] = f
	s.flightMu.Unlock()

	s.st.forwarded.Add(1)
	m, err := s.exchange(ctx, name, qtype, qclass, do)
	if err == nil {
		m = s.cache.put(key, m, s.now())
	}
	f.msg, f.err = m, err
	s.flightMu.Lock()
	delete(s.flights, key)
	s.flightMu.Unlock()
	close(f.done)
	if err != nil {
		return nil, err
	}
	return m.Copy(), nil
}

// exchange asks the upstreams in turn, starting with the last one that
// answered, until one answers: UDP first, TCP when the UDP answer is
// truncated. SERVFAIL and REFUSED count as failures.
func (s *Server) exchange(ctx context.Context, name string, qtype, qclass uint16, do bool) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.RecursionDesired = true
	q.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: qclass}}
	q.SetEdns0(upstreamUDPSize, do)
	n := len(s.upstreams)
	start := int(s.next.Load()) % n
	var errs []error
	for i := range n {
		k := (start + i) % n
		addr := s.upstreams[k]
		r, err := s.exchangeOne(ctx, "udp", addr, q)
		if err == nil && r.Truncated {
			r, err = s.exchangeOne(ctx, "tcp", addr, q)
		}
		if err == nil && (r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused) {
			err = fmt.Errorf("upstream %s answered %s", addr, dns.RcodeToString[r.Rcode])
		}
		if err == nil {
			if k != start {
				s.next.Store(uint32(k))
			}
			stripOPT(r)
			return r, nil
		}
		s.st.upstreamErrors.Add(1)
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// exchangeOne sends q to addr over network and waits for its answer, at
// most UpstreamTimeout and no longer than ctx lives.
func (s *Server) exchangeOne(ctx context.Context, network, addr string, q *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.upTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("upstream %s/%s: %w", addr, network, err)
	}
	defer nc.Close()
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	// Cancelling ctx (Close) unblocks the read at once.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	co := &dns.Conn{Conn: nc, UDPSize: upstreamReadSize}
	q.Id = dns.Id()
	if err := co.WriteMsg(q); err != nil {
		return nil, fmt.Errorf("upstream %s/%s: %w", addr, network, err)
	}
	for {
		r, err := co.ReadMsg()
		if err != nil {
			return nil, fmt.Errorf("upstream %s/%s: %w", addr, network, err)
		}
		if r.Id != q.Id || !r.Response || len(r.Question) != 1 ||
			!strings.EqualFold(r.Question[0].Name, q.Question[0].Name) || r.Question[0].Qtype != q.Question[0].Qtype {
			if network == "udp" {
				continue // a late answer to an earlier query, or spoofing
			}
			return nil, fmt.Errorf("upstream %s/%s: answer does not match the query", addr, network)
		}
		return r, nil
	}
}

// stripOPT removes the upstream's OPT record: the client gets the Server's.
func stripOPT(m *dns.Msg) {
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
}
