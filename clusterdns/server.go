package clusterdns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults of Options.
const (
	DefaultTTL             = 5     // seconds, as CoreDNS's kubernetes plugin
	DefaultCacheSize       = 10000 // upstream answers
	DefaultMaxInFlight     = 256   // queries waiting for an upstream
	DefaultUpstreamTimeout = 2 * time.Second
	DefaultUDPSize         = 1232 // bytes: the DNS flag day 2020 size
	// MaxUDPSize is the largest Options.UDPSize.
	MaxUDPSize = 4096
	// TCPIdleTimeout ends a ServeConn whose peer sends no complete query
	// for this long.
	TCPIdleTimeout = 10 * time.Second
	// MaxTCPQuery is the largest query ServeConn reads; a longer length
	// prefix ends the connection. Real queries are a few hundred bytes.
	MaxTCPQuery = 16 << 10
	// MaxCacheTTL caps how long an upstream answer is cached, positive or
	// negative, as the kubeadm Corefile's `cache 30` does.
	MaxCacheTTL = 30 * time.Second
)

// Options configure a Server.
type Options struct {
	// Domain is the cluster domain, such as "cluster.local". Required.
	Domain string
	// DNSIP is the server's own address: ns.dns.<domain> answers it. If
	// invalid, ns.dns.<domain> has no address.
	DNSIP netip.Addr
	// Upstreams receive every name outside the cluster domain, tried in
	// order (the last one that answered first). A port of 0 means 53. If
	// empty, the nameservers of ResolvConf.
	Upstreams []netip.AddrPort
	// ResolvConf is read at New when Upstreams is empty. If "",
	// /etc/resolv.conf. A missing file or one without nameservers means
	// 127.0.0.1:53, as in glibc.
	ResolvConf string
	// TTL of every cluster record, and the SOA minimum. If 0, DefaultTTL.
	TTL uint32
	// CacheSize bounds the upstream answers cached. If 0, DefaultCacheSize;
	// negative: no cache.
	CacheSize int
	// MaxInFlight bounds the queries waiting for an upstream at once;
	// beyond it a query is answered SERVFAIL at once. If 0,
	// DefaultMaxInFlight.
	MaxInFlight int
	// UpstreamTimeout bounds each try of an upstream. If 0,
	// DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// UDPSize is the EDNS0 payload size advertised in answers and the
	// largest UDP answer sent to an EDNS0 client (which gets the smaller of
	// its own size and this one). If 0, DefaultUDPSize; at most MaxUDPSize.
	UDPSize uint16
	// Logger gets control-plane messages (Update, configuration); queries
	// are counted in Stats, never logged. If nil, nothing is logged.
	Logger *slog.Logger
	// Now is the clock of the upstream cache and the SOA serial. If nil,
	// time.Now. Socket deadlines always use the real clock.
	Now func() time.Time
}

// DatagramWriter sends a UDP answer back to the pod that asked; the node's
// data path implements it.
type DatagramWriter interface {
	// WriteDatagram sends payload from the address from (the DNS IP and
	// port the query was sent to) to the address to (the querier). It must
	// not keep payload after it returns, and may be called from any
	// goroutine, concurrently.
	WriteDatagram(to, from netip.AddrPort, payload []byte) error
}

// Stats are the Server's counters since New.
type Stats struct {
	Queries        uint64            // messages received: datagrams and TCP frames
	ByRcode        map[string]uint64 // answers sent, by RCODE name ("NOERROR", "NXDOMAIN", ...)
	Forwarded      uint64            // upstream exchanges started (cache misses)
	CacheHits      uint64            // queries answered from the upstream cache
	Truncated      uint64            // answers sent with TC set
	Dropped        uint64            // queries not answered: unparsable header, a response, after Close, or the answer could not be sent
	Overloaded     uint64            // queries answered SERVFAIL because MaxInFlight queries were waiting
	UpstreamErrors uint64            // failed upstream tries (timeouts, network errors, SERVFAIL or REFUSED)
	Panics         uint64            // panics recovered while answering (a bug: the query is dropped)
}

type counters struct {
	queries, forwarded, cacheHits, truncated, dropped atomic.Uint64
	overloaded, upstreamErrors, panics                atomic.Uint64
	rcodes                                            [24]atomic.Uint64 // the last one counts the rest
}

// Server is the cluster DNS of one node agent. Its methods are safe for
// concurrent use.
type Server struct {
	log         *slog.Logger
	now         func() time.Time
	origin      string // lowercase FQDN
	ttl         uint32
	dnsIP       netip.Addr
	udpSize     uint16
	maxInFlight int64
	upTimeout   time.Duration
	upstreams   []string      // host:port
	idle        time.Duration // TCPIdleTimeout; shorter in tests

	zone  atomic.Pointer[zone]
	cache *cache
	next  atomic.Uint32 // index of the upstream tried first
	st    counters

	inFlight atomic.Int64
	flightMu sync.Mutex           // guards flights
	flights  map[cacheKey]*flight // upstream exchanges under way
	ctx      context.Context      // cancelled by Close
	cancel   context.CancelFunc

	closing atomic.Bool // Close has begun: new work is dropped
	mu      sync.Mutex  // guards closed, conns; taken to add to wg
	closed  bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup // forwarding goroutines and ServeConn calls

	updateMu sync.Mutex // serializes Update; guards serial
	serial   uint32

	bufs sync.Pool // *[]byte of bufSize
}

// bufSize is the size of pooled answer buffers: a length prefix and the
// largest UDP answer.
const bufSize = 2 + MaxUDPSize

// New returns a Server for opts. Until the first Update, names in the
// cluster domain are answered SERVFAIL (not NXDOMAIN, which clients would
// cache); other names are forwarded at once.
func New(opts Options) (*Server, error) {
	origin := strings.ToLower(dns.Fqdn(strings.TrimSpace(opts.Domain)))
	if opts.Domain == "" || origin == "." {
		return nil, errors.New("clusterdns: Options.Domain is required")
	}
	if _, ok := dns.IsDomainName(origin); !ok {
		return nil, fmt.Errorf("clusterdns: Options.Domain %q is not a domain name", opts.Domain)
	}
	s := &Server{
		log:         opts.Logger,
		now:         opts.Now,
		origin:      origin,
		ttl:         opts.TTL,
		dnsIP:       opts.DNSIP,
		udpSize:     opts.UDPSize,
		maxInFlight: int64(opts.MaxInFlight),
		upTimeout:   opts.UpstreamTimeout,
		idle:        TCPIdleTimeout,
		flights:     map[cacheKey]*flight{},
		conns:       map[net.Conn]struct{}{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.ttl == 0 {
		s.ttl = DefaultTTL
	}
	if s.udpSize == 0 {
		s.udpSize = DefaultUDPSize
	}
	s.udpSize = min(max(s.udpSize, dns.MinMsgSize), MaxUDPSize)
	if s.maxInFlight <= 0 {
		s.maxInFlight = DefaultMaxInFlight
	}
	if s.upTimeout <= 0 {
		s.upTimeout = DefaultUpstreamTimeout
	}
	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	s.cache = newCache(size)
	ups, err := upstreams(opts.Upstreams, opts.ResolvConf, s.log)
	if err != nil {
		return nil, err
	}
	s.upstreams = ups
	s.bufs.New = func() any { b := make([]byte, bufSize); return &b }
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// upstreams returns the host:port strings of the upstream servers.
func upstreams(list []netip.AddrPort, resolvConf string, log *slog.Logger) ([]string, error) {
	var out []string
	for _, ap := range list {
		if !ap.Addr().IsValid() {
			return nil, fmt.Errorf("clusterdns: Options.Upstreams: invalid address %v", ap)
		}
		port := ap.Port()
		if port == 0 {
			port = 53
		}
		out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), port).String())
	}
	if len(out) > 0 {
		return out, nil
	}
	if resolvConf == "" {
		resolvConf = "/etc/resolv.conf"
	}
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil || len(cc.Servers) == 0 {
		log.Warn("clusterdns: no nameservers in resolv.conf; forwarding to 127.0.0.1:53", "file", resolvConf, "err", err)
		return []string{"127.0.0.1:53"}, nil
	}
	for _, srv := range cc.Servers {
		out = append(out, net.JoinHostPort(srv, cc.Port))
	}
	return out, nil
}

// Update replaces the cluster's records: it builds an immutable index and
// swaps it in atomically, so queries see either the old or the new records,
// never a mix. Each Update gives the SOA a higher serial.
func (s *Server) Update(r Records) {
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	serial := uint32(s.now().Unix())
	if serial <= s.serial {
		serial = s.serial + 1
	}
	s.serial = serial
	z := buildZone(s.origin, s.ttl, serial, s.dnsIP, r, s.log)
	s.zone.Store(z)
	s.log.Debug("clusterdns: records updated", "services", len(r.Services), "pods", len(r.Pods), "names", len(z.names), "serial", serial)
}

// Handle answers query from the cluster zone (and the reverse names of
// cluster addresses), or with an error for a query that is not one the
// server serves. It returns nil when the query must be forwarded upstream.
// An ExternalName whose target lies outside the cluster domain is answered
// with its CNAME alone: completing it needs upstream I/O, which
// ServeDatagram and ServeConn do. A response (QR set) gets nil too. src is
// the querier (unused so far); tcp lifts the UDP size limit. Handle does
// not count in Stats.
func (s *Server) Handle(query *dns.Msg, src netip.AddrPort, tcp bool) *dns.Msg {
	if query == nil || query.Response {
		return nil
	}
	m, qi, p := s.resolve(s.zone.Load(), query, tcp)
	if p == nil {
		return m
	}
	if p.prefix == nil {
		return nil
	}
	m = s.header(qi, dns.RcodeSuccess)
	m.Authoritative = true
	m.Answer = p.prefix
	return s.finish(qi, m)
}

// ServeDatagram answers one UDP query, msg, that src sent to dst (the DNS
// IP, port 53). Cluster names are answered before it returns, through w;
// names for the upstreams are forwarded from a goroutine the Server owns,
// which writes the answer through w later. It never blocks on I/O except
// w's, keeps nothing of msg after it returns, and never panics.
func (s *Server) ServeDatagram(src, dst netip.AddrPort, msg []byte, w DatagramWriter) {
	s.st.queries.Add(1)
	if s.closing.Load() {
		s.st.dropped.Add(1)
		return
	}
	defer s.recoverQuery()
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	if z := s.zone.Load(); z != nil {
		if n, rcode := s.fastAnswer(z, msg, buf[:MaxUDPSize]); n > 0 {
			s.st.rcodes[rcode].Add(1)
			if err := w.WriteDatagram(src, dst, buf[:n]); err != nil {
				s.st.dropped.Add(1)
			}
			return
		}
	}
	req, resp := s.unpack(msg)
	if req == nil && resp == nil {
		s.st.dropped.Add(1)
		return
	}
	var (
		qi *question
		p  *plan
	)
	if resp == nil {
		resp, qi, p = s.resolve(s.zone.Load(), req, false)
	}
	if p == nil {
		s.sendDatagram(src, dst, resp, w, buf[:MaxUDPSize])
		return
	}
	if resp := s.fromCache(qi, p); resp != nil {
		s.sendDatagram(src, dst, resp, w, buf[:MaxUDPSize])
		return
	}
	if !s.acquire() {
		s.sendDatagram(src, dst, s.errorReply(qi, true, dns.RcodeServerFailure), w, buf[:MaxUDPSize])
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.release()
		s.st.dropped.Add(1)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.release()
		defer s.recoverQuery()
		resp := s.forward(s.ctx, qi, p)
		if s.ctx.Err() != nil {
			s.st.dropped.Add(1)
			return
		}
		bp := s.bufs.Get().(*[]byte)
		defer s.bufs.Put(bp)
		s.sendDatagram(src, dst, resp, w, (*bp)[:MaxUDPSize])
	}()
}

// unpack parses a query. It returns the request, or an answer to send
// instead (FORMERR for a message whose header is readable but the rest not),
// or neither: drop it (no header, or a response).
func (s *Server) unpack(msg []byte) (*dns.Msg, *dns.Msg) {
	if len(msg) < 12 || msg[2]&0x80 != 0 {
		return nil, nil
	}
	req := new(dns.Msg)
	if err := req.Unpack(msg); err != nil {
		var h dns.Msg
		h.Id = binary.BigEndian.Uint16(msg)
		h.Opcode = int(msg[2]>>3) & 0xF
		qi := &question{id: h.Id, opcode: h.Opcode, rd: msg[2]&1 != 0, limit: dns.MinMsgSize}
		return nil, s.errorReply(qi, false, dns.RcodeFormatError)
	}
	return req, nil
}

func (s *Server) recoverQuery() {
	if r := recover(); r != nil {
		s.st.panics.Add(1)
		s.st.dropped.Add(1)
	}
}

func (s *Server) acquire() bool {
	if s.inFlight.Add(1) > s.maxInFlight {
		s.inFlight.Add(-1)
		s.st.overloaded.Add(1)
		return false
	}
	return true
}

func (s *Server) release() { s.inFlight.Add(-1) }

// sendDatagram packs resp into buf and writes it to src.
func (s *Server) sendDatagram(src, dst netip.AddrPort, resp *dns.Msg, w DatagramWriter, buf []byte) {
	out, err := resp.PackBuffer(buf)
	if err != nil {
		s.st.dropped.Add(1)
		return
	}
	s.count(resp)
	if err := w.WriteDatagram(src, dst, out); err != nil {
		s.st.dropped.Add(1)
	}
}

func (s *Server) count(resp *dns.Msg) {
	rc := resp.Rcode
	if rc < 0 || rc >= len(s.st.rcodes) {
		rc = len(s.st.rcodes) - 1
	}
	s.st.rcodes[rc].Add(1)
	if resp.Truncated {
		s.st.truncated.Add(1)
	}
}

// ServeConn serves DNS over one TCP connection (RFC 7766: a 2-byte length
// before each message) until the peer closes it, sends nothing for
// TCPIdleTimeout, sends a malformed frame, or Close. It answers the queries
// of the connection in order, forwarding in place, and closes c before it
// returns.
func (s *Server) ServeConn(c net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
		s.wg.Done()
	}()
	var (
		hdr [2]byte
		in  []byte
	)
	for {
		if err := c.SetReadDeadline(time.Now().Add(s.idle)); err != nil {
			return
		}
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if n < 12 || n > MaxTCPQuery {
			return
		}
		if cap(in) < n {
			in = make([]byte, n)
		}
		in = in[:n]
		if _, err := io.ReadFull(c, in); err != nil {
			return
		}
		s.st.queries.Add(1)
		if !s.serveFrame(c, in) {
			return
		}
	}
}

// serveFrame answers one query of a TCP connection; false ends the
// connection.
func (s *Server) serveFrame(c net.Conn, in []byte) (ok bool) {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	ok = true
	defer func() {
		if r := recover(); r != nil {
			s.st.panics.Add(1)
			s.st.dropped.Add(1)
			ok = false
		}
	}()
	if z := s.zone.Load(); z != nil {
		if n, rcode := s.fastAnswer(z, in, buf[2:]); n > 0 {
			s.st.rcodes[rcode].Add(1)
			binary.BigEndian.PutUint16(buf, uint16(n))
			return s.writeFrame(c, buf[:2+n])
		}
	}
	req, resp := s.unpack(in)
	if req == nil && resp == nil {
		s.st.dropped.Add(1)
		return true
	}
	if resp == nil {
		var (
			qi *question
			p  *plan
		)
		resp, qi, p = s.resolve(s.zone.Load(), req, true)
		if p != nil {
			if s.acquire() {
				resp = s.forward(s.ctx, qi, p)
				s.release()
			} else {
				resp = s.errorReply(qi, true, dns.RcodeServerFailure)
			}
			if s.ctx.Err() != nil {
				return false
			}
		}
	}
	out, err := resp.PackBuffer(buf[2:])
	if err != nil {
		s.st.dropped.Add(1)
		return true
	}
	s.count(resp)
	if &out[0] == &buf[2] {
		out = buf[:2+len(out)]
	} else {
		out = append([]byte{0, 0}, out...)
	}
	binary.BigEndian.PutUint16(out, uint16(len(out)-2))
	return s.writeFrame(c, out)
}

func (s *Server) writeFrame(c net.Conn, frame []byte) bool {
	if err := c.SetWriteDeadline(time.Now().Add(s.idle)); err != nil {
		return false
	}
	if _, err := c.Write(frame); err != nil {
		s.st.dropped.Add(1)
		return false
	}
	return true
}

// Close stops the Server: it cancels upstream exchanges, closes the
// connections of running ServeConn calls, and waits for every goroutine
// the Server started and every ServeConn to return. Queries after Close
// are dropped.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.Close()
	}
	s.wg.Wait()
	return nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Queries:        s.st.queries.Load(),
		ByRcode:        map[string]uint64{},
		Forwarded:      s.st.forwarded.Load(),
		CacheHits:      s.st.cacheHits.Load(),
		Truncated:      s.st.truncated.Load(),
		Dropped:        s.st.dropped.Load(),
		Overloaded:     s.st.overloaded.Load(),
		UpstreamErrors: s.st.upstreamErrors.Load(),
		Panics:         s.st.panics.Load(),
	}
	for rc := range s.st.rcodes {
		n := s.st.rcodes[rc].Load()
		if n == 0 {
			continue
		}
		name, ok := dns.RcodeToString[rc]
		switch {
		case rc == dns.RcodeBadVers:
			name = "BADVERS" // miekg/dns names 16 by its TSIG meaning, BADSIG
		case !ok || rc == len(s.st.rcodes)-1:
			name = "OTHER"
		}
		st.ByRcode[name] += n
	}
	return st
}
