package ingress

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The plain-HTTP listener has a server of its own for the requests an
// Ingress sees most: HTTP/1.1 requests without a body (GET, HEAD, DELETE…),
// neither upgrades nor Expect. It reads them with http.ReadRequest, sends
// them with upstream and writes the response itself, all on the
// connection's goroutine. net/http's server costs more per request: a
// goroutine that watches the connection while the handler runs, a response
// writer, ReverseProxy's copies of the request and the headers; on a node
// of two cores that was the difference between falling short of nginx and
// not.
//
// Every other request — one with a body, an upgrade, HTTP/1.0, a request
// line or header it does not take (or that does not parse), headers longer
// than its buffer — is handed, with the rest of its connection, to the
// net/http server and ReverseProxy that serve HTTPS: the bytes read so far
// are given back to it first. So errors (400, 431, 505) are net/http's, and
// the fast server only ever serves requests it fully understands.

// fastBufferSize is the read buffer of a connection: a request whose
// headers do not fit goes to net/http, whose limit is MaxHeaderBytes.
const fastBufferSize = 4 << 10

// handoffListener gives connections to the net/http server.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give hands conn over, or closes it once the server is closed.
func (l *handoffListener) give(conn net.Conn) {
	select {
	case l.ch <- conn:
	case <-l.done:
		conn.Close()
	}
}

// prefixConn is a connection whose first bytes were already read: Read
// returns them before reading on. Over TLS, Conn is the *tls.Conn and
// tlsState its state.
//
// A request whose headers did not fit the fast server's buffer is handed
// over before they are all in, part of its ReadHeaderTimeout spent: limit is
// that request's header deadline, which no read deadline net/http sets
// passes while the bytes given back are not all read (net/http sets its
// header deadline before it reads, and clears it once it has the headers,
// which are longer than prefix).
type prefixConn struct {
	net.Conn
	prefix   []byte
	tlsState *tls.ConnectionState
	limit    time.Time
}

func (p *prefixConn) SetReadDeadline(t time.Time) error {
	if !p.limit.IsZero() && len(p.prefix) > 0 && (t.IsZero() || t.After(p.limit)) {
		t = p.limit
	}
	return p.Conn.SetReadDeadline(t)
}

func (p *prefixConn) SetDeadline(t time.Time) error {
	if err := p.SetReadDeadline(t); err != nil {
		return err
	}
	return p.Conn.SetWriteDeadline(t)
}

// tlsStateKey is the context key of a handed-over TLS connection's state.
type tlsStateKey struct{}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// serveFast accepts connections on ln (a limitListener) and serves each on a
// goroutine of its own until ln is closed; over TLS with tlsConf if it is
// set.
func (c *Controller) serveFast(ln net.Listener, hand *handoffListener, tlsConf *tls.Config) error {
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of descriptors, say: wait a little, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				c.log.Debug("ingress accept", "err", err, "retry in", backoff)
				select {
				case <-time.After(backoff):
					continue
				case <-c.ctx.Done():
					return nil
				}
			}
			return err
		}
		backoff = 0
		c.busyAdd(1)
		go c.serveFastConn(conn, hand, tlsConf)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// fastConn is a client connection served by the fast server.
type fastConn struct {
	c        *Controller
	conn     net.Conn
	client   string               // the client's IP
	scheme   string               // "http" or "https", for X-Forwarded-Proto
	port     string               // the port the client connected to, for X-Forwarded-Port
	tlsState *tls.ConnectionState // over TLS
	br       *bufio.Reader
	bw       *bufio.Writer
	raw      []byte // the current request's line and headers, as read
	date     []byte
	cancel   context.CancelFunc // of the connection's context

	got1xx      func(int, http.Header) error // write1xx
	hdrDeadline time.Time                    // when the current request's headers must be in; zero: never
	hdrLimit    time.Time                    // given to a prefixConn: see there

	watch      *time.Timer // watchClient, armed for each request
	watchMu    sync.Mutex
	watchCond  *sync.Cond    // L is watchMu; signalled when watchFired is set
	watchFired bool          // watchClient has run for this request
	unwatched  bool          // the request was served: watchClient must not read
	watchDone  chan struct{} // closed when a reading watchClient returns
}

func (c *Controller) serveFastConn(conn net.Conn, hand *handoffListener, tlsConf *tls.Config) {
	defer c.busyAdd(-1)
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	fc := &fastConn{
		c:      c,
		client: remoteIP(conn.RemoteAddr()).String(),
		scheme: "http",
		port:   c.httpPort,
	}
	if c.hdrTO > 0 {
		fc.hdrDeadline = time.Now().Add(c.hdrTO)
		conn.SetReadDeadline(fc.hdrDeadline) // for the handshake too
	}
	if tlsConf != nil {
		tc := tls.Server(conn, tlsConf)
		if c.hdrTO > 0 {
			conn.SetWriteDeadline(time.Now().Add(c.hdrTO))
		}
		if err := tc.HandshakeContext(ctx); err != nil {
			c.log.Debug("ingress: TLS handshake", "client", conn.RemoteAddr(), "err", err)
			conn.Close()
			return
		}
		conn.SetWriteDeadline(time.Time{})
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			conn.SetReadDeadline(time.Time{})
			hand.give(tc) // HTTP/2 is net/http's
			return
		}
		st := tc.ConnectionState()
		conn, fc.tlsState, fc.scheme, fc.port = tc, &st, "https", c.httpsPort
	}
	fc.conn = conn
	fc.got1xx = fc.write1xx
	fc.watchCond = sync.NewCond(&fc.watchMu)
	fc.br = bufio.NewReaderSize(conn, fastBufferSize)
	fc.bw = bufio.NewWriterSize(conn, fastBufferSize)
	fc.cancel = cancel
	for first := true; ; first = false {
		if !first {
			if fc.br.Buffered() == 0 {
				// Between requests: IdleTimeout for the first byte of the next.
				if c.idleTO > 0 {
					conn.SetReadDeadline(time.Now().Add(c.idleTO))
				}
				if _, err := fc.br.Peek(1); err != nil {
					conn.Close()
					return
				}
			}
			if c.hdrTO > 0 {
				fc.hdrDeadline = time.Now().Add(c.hdrTO)
				conn.SetReadDeadline(fc.hdrDeadline)
			} else if c.idleTO > 0 {
				conn.SetReadDeadline(time.Time{})
			}
		}
		fc.raw = fc.raw[:0]
		end, err := fc.headerEnd()
		if err != nil {
			conn.Close() // the client left, or was too slow with its headers
			return
		}
		if end < 0 { // longer than the buffer
			fc.hdrLimit = fc.hdrDeadline // net/http must not start the headers' time again
			fc.handoff(hand)
			return
		}
		head, _ := fc.br.Peek(end)
		fc.raw = append(fc.raw[:0], head...)
		buffered := fc.br.Buffered()
		req, err := http.ReadRequest(fc.br)
		if err != nil || !fastRequest(req) {
			// ReadRequest stopped at the end of the headers, or before it
			// on an error: what it read of them is in raw, so skip the rest
			// of them (the buffer held them all, so nothing was read anew).
			if read := buffered - fc.br.Buffered(); read < end {
				fc.br.Discard(end - read)
			}
			fc.handoff(hand)
			return
		}
		if c.hdrTO > 0 {
			conn.SetReadDeadline(time.Time{}) // nothing is read until the next request
		}
		if fc.watch == nil {
			fc.watch = time.AfterFunc(watchDelay, fc.watchClient)
		} else {
			fc.watch.Reset(watchDelay)
		}
		ok := fc.serve(ctx, req)
		fc.unwatch()
		if !ok {
			conn.Close()
			return
		}
	}
}

// watchDelay is how long a request may take before its client connection
// is watched, so that a client that leaves is noticed while the backend is
// still working: its request is then ended and the connection to the
// backend closed (net/http watches every request, from its start; most
// answers come well before this).
const watchDelay = 500 * time.Millisecond

// watchClient runs, on the timer's goroutine, once a request has taken
// watchDelay: it reads the client connection until the client sends the
// next request (pipelining), leaves, or unwatch interrupts it. A client
// that left ends the connection's context.
func (fc *fastConn) watchClient() {
	fc.watchMu.Lock()
	fc.watchFired = true
	start := !fc.unwatched
	if start {
		fc.watchDone = make(chan struct{})
	}
	fc.watchCond.Broadcast()
	fc.watchMu.Unlock()
	if !start {
		return
	}
	defer close(fc.watchDone)
	_, err := fc.br.Peek(1)
	fc.watchMu.Lock()
	interrupted := fc.unwatched // unwatch set a past deadline: whatever error that gave, the client is there
	fc.watchMu.Unlock()
	if err != nil && !interrupted {
		fc.cancel()
	}
}

// unwatch stops the watch of the request just served. If the timer fired,
// watchClient has been started: unwatch waits until it has either seen
// that the request was served or, having started to read, been
// interrupted, so that only one goroutine ever reads the connection.
func (fc *fastConn) unwatch() {
	if fc.watch.Stop() {
		return
	}
	fc.watchMu.Lock()
	fc.unwatched = true
	for !fc.watchFired {
		fc.watchCond.Wait()
	}
	done := fc.watchDone
	fc.watchMu.Unlock()
	if done != nil {
		fc.conn.SetReadDeadline(aLongTimeAgo)
		<-done
		fc.conn.SetReadDeadline(time.Time{})
	}
	fc.watchMu.Lock()
	fc.unwatched, fc.watchFired, fc.watchDone = false, false, nil
	fc.watchMu.Unlock()
}

var aLongTimeAgo = time.Unix(1, 0)

// headerEnd reads until the buffer holds a request's line and headers and
// returns their length; -1 when they do not fit in the buffer.
func (fc *fastConn) headerEnd() (int, error) {
	from := 0
	for {
		buf, _ := fc.br.Peek(fc.br.Buffered())
		// The headers end with an empty line: "\n\r\n" or "\n\n" (a bare
		// LF ends a line too, as net/http reads them).
		for i := from; i < len(buf); i++ {
			if buf[i] != '\n' {
				continue
			}
			if i+1 < len(buf) && buf[i+1] == '\n' {
				return i + 2, nil
			}
			if i+2 < len(buf) && buf[i+1] == '\r' && buf[i+2] == '\n' {
				return i + 3, nil
			}
		}
		if len(buf) >= fc.br.Size() {
			return -1, nil
		}
		from = max(len(buf)-2, 0)
		if _, err := fc.br.Peek(len(buf) + 1); err != nil {
			return 0, err
		}
	}
}

// handoff gives the connection, with what was read of it and not served,
// to the net/http server.
func (fc *fastConn) handoff(hand *handoffListener) {
	rest, _ := fc.br.Peek(fc.br.Buffered())
	prefix := make([]byte, 0, len(fc.raw)+len(rest))
	prefix = append(append(prefix, fc.raw...), rest...)
	if fc.c.hdrTO > 0 || fc.c.idleTO > 0 {
		fc.conn.SetReadDeadline(time.Time{}) // net/http sets its own
	}
	hand.give(&prefixConn{Conn: fc.conn, prefix: prefix, tlsState: fc.tlsState, limit: fc.hdrLimit})
}

// fastRequest reports whether the fast server takes req: HTTP/1.1 in
// origin form, with a valid Host, without a body, neither an upgrade nor
// Expect, and with header names and values net/http's server would accept.
func fastRequest(req *http.Request) bool {
	if req.ProtoMajor != 1 || req.ProtoMinor != 1 || req.Method == http.MethodConnect ||
		req.Body != http.NoBody || len(req.TransferEncoding) > 0 ||
		req.Host == "" || !httpguts.ValidHostHeader(req.Host) ||
		!strings.HasPrefix(req.RequestURI, "/") ||
		req.Header["Upgrade"] != nil || req.Header["Expect"] != nil {
		return false
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// serve answers req and reports whether the connection stays open for the
// next request.
func (fc *fastConn) serve(ctx context.Context, req *http.Request) bool {
	c := fc.c
	be, code, msg := c.lookup(req.Host, req.URL.Path)
	if code != 0 {
		return fc.plain(be, req, code, msg)
	}

	clientClose := req.Close
	prior := req.Header["X-Forwarded-For"]
	removeHopByHop(req.Header)
	delete(req.Header, "Forwarded")
	forwarded(req.Header, prior, fc.client, req.Host, fc.scheme, fc.port)
	if req.Header["User-Agent"] == nil {
		req.Header["User-Agent"] = []string{""} // not net/http's own
	}
	req.Close = false
	req.URL.Scheme = "http"

	res, err := c.balance(ctx, be, req, func(r *http.Request) (*http.Response, error) {
		return c.up.roundTrip(ctx, r, r.URL.Host, fc.got1xx)
	})
	if err != nil {
		switch {
		case ctx.Err() != nil:
			c.aborted.Add(1)
			return false
		case isTimeout(err):
			c.upstreamErr.Add(1)
			return fc.plain(be, req, http.StatusGatewayTimeout, "504 Gateway Timeout: no answer in time from "+be.name)
		default:
			c.upstreamErr.Add(1)
			return fc.plain(be, req, http.StatusBadGateway, "502 Bad Gateway: no answer from "+be.name)
		}
	}
	c.count(be, res.StatusCode)
	ok := fc.writeResponse(req, res, clientClose)
	res.Body.Close()
	return ok && !clientClose
}

// hopByHop are the headers of one connection (RFC 9110 section 7.6.1, and
// those older proxies used), which a proxy does not pass on.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers of h and those its
// Connection header names, keeping "Te: trailers" (as ReverseProxy does: it
// tells the backend that the client takes trailers).
func removeHopByHop(h http.Header) {
	teTrailers := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
	if teTrailers {
		h["Te"] = []string{"trailers"}
	}
}

// writeResponse writes res to the client: status line, headers without the
// hop-by-hop ones, and the body framed by Content-Length when the backend
// gave it, else chunked and flushed as it arrives (a stream). It reports
// whether the whole response was written.
func (fc *fastConn) writeResponse(req *http.Request, res *http.Response, close bool) bool {
	bw, code, h := fc.bw, res.StatusCode, res.Header
	fc.statusLine(code)
	removeHopByHop(h)
	delete(h, "Content-Length")
	noBody := req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	chunked := false
	switch {
	case noBody:
		if req.Method == http.MethodHead && res.ContentLength >= 0 {
			h["Content-Length"] = []string{strconv.FormatInt(res.ContentLength, 10)}
		}
	case res.ContentLength >= 0:
		h["Content-Length"] = []string{strconv.FormatInt(res.ContentLength, 10)}
	default:
		chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
		if len(res.Trailer) > 0 {
			names := make([]string, 0, len(res.Trailer))
			for k := range res.Trailer {
				names = append(names, k)
			}
			h["Trailer"] = []string{strings.Join(names, ", ")}
		}
	}
	if h["Date"] == nil {
		fc.date = time.Now().UTC().AppendFormat(fc.date[:0], http.TimeFormat)
		bw.WriteString("Date: ")
		bw.Write(fc.date)
		bw.WriteString("\r\n")
	}
	if close {
		bw.WriteString("Connection: close\r\n")
	}
	if h.Write(bw) != nil {
		return false
	}
	bw.WriteString("\r\n")
	if noBody {
		return bw.Flush() == nil
	}

	bp := fc.c.bufPool.Get()
	defer fc.c.bufPool.Put(bp)
	var n int64
	for {
		m, err := res.Body.Read(bp)
		if m > 0 {
			n += int64(m)
			if chunked {
				bw.WriteString(strconv.FormatInt(int64(m), 16))
				bw.WriteString("\r\n")
				bw.Write(bp[:m])
				bw.WriteString("\r\n")
				if bw.Flush() != nil {
					return false
				}
			} else if _, werr := bw.Write(bp[:m]); werr != nil {
				return false
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			bw.Flush() // the backend failed mid-body: the client gets what came, then the end of the connection
			return false
		}
	}
	if chunked {
		bw.WriteString("0\r\n")
		if res.Trailer.Write(bw) != nil {
			return false
		}
		bw.WriteString("\r\n")
	} else if n != res.ContentLength {
		bw.Flush()
		return false
	}
	return bw.Flush() == nil
}

// write1xx passes an informational response of the backend (103 Early
// Hints…) on to the client at once, as ReverseProxy does.
func (fc *fastConn) write1xx(code int, h http.Header) error {
	fc.statusLine(code)
	removeHopByHop(h)
	if err := h.Write(fc.bw); err != nil {
		return err
	}
	fc.bw.WriteString("\r\n")
	return fc.bw.Flush()
}

func (fc *fastConn) statusLine(code int) {
	bw := fc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.WriteString(strconv.Itoa(code))
	}
	bw.WriteString("\r\n")
}

// plain answers with a short plain-text body of the Controller's own, as
// http.Error writes it, for a request routed to be (nil: none).
func (fc *fastConn) plain(be *backend, req *http.Request, code int, msg string) bool {
	fc.c.count(be, code)
	bw := fc.bw
	fc.statusLine(code)
	bw.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: ")
	fc.date = time.Now().UTC().AppendFormat(fc.date[:0], http.TimeFormat)
	bw.Write(fc.date)
	bw.WriteString("\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(msg) + 1))
	if req.Close {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	if req.Method != http.MethodHead {
		bw.WriteString(msg)
		bw.WriteByte('\n')
	}
	return bw.Flush() == nil && !req.Close
}
