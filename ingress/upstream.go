package ingress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
)

// upstream sends requests without a body to the backends over HTTP/1.1 on
// kept-alive connections, one pool per endpoint, reading and writing on the
// request's own goroutine. http.Transport hands every request to two
// goroutines of its connection (a writer and a reader) and back; on a node
// with two cores those hand-offs cost more than the parsing, and the
// requests a proxy sees most are GETs. Requests with a body (whose upload
// must overlap the response, as a backend may answer or stream before it has
// read it all), upgrades and Expect: 100-continue go to http.Transport.
type upstream struct {
	c        *Controller
	headerTO time.Duration // ResponseHeaderTimeout; 0: none

	mu     sync.Mutex
	idle   map[string][]*upConn // by endpoint "ip:port", the most recently used last
	nidle  int
	closed bool
}

// Bounds of the idle pool, as the http.Transport had them.
const (
	upMaxIdlePerEndpoint = 256
	upMaxIdle            = 4096
	upIdleTimeout        = 90 * time.Second
	upMaxHeaderBytes     = 1 << 20
	upBufferSize         = 32 << 10
	upMax1xx             = 5 // informational responses before the final one
)

// upConn is a connection to an endpoint with its buffers.
type upConn struct {
	conn   net.Conn
	src    limitedReader // conn, bounded while headers are read
	br     *bufio.Reader
	bw     *bufio.Writer
	addr   string
	idleAt time.Time
}

// limitedReader reads from r and fails once more than n bytes are asked of
// it; n is reset for every response's headers and lifted for its body.
type limitedReader struct {
	r io.Reader
	n int64
}

var errHeadersTooLarge = errors.New("response headers over 1 MiB")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeadersTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

const unlimited = 1 << 62

// lean reports whether out (the outgoing request) goes to upstream rather
// than to http.Transport.
func lean(out *http.Request) bool {
	return (out.Body == nil || out.Body == http.NoBody) && !out.Close &&
		out.Header["Upgrade"] == nil && out.Header["Expect"] == nil
}

// roundTrip sends req to addr. A reused connection that fails before any
// byte of an answer came back was most likely closed by the backend while
// idle; a replayable request is then sent once more on a new connection, as
// http.Transport does.
// The connection is closed, and the request fails with ctx's error, when
// ctx ends before the response's body has been read.
//
// Informational responses (103 Early Hints…) go to got1xx, or if it is nil
// to the Got1xxResponse of ctx's httptrace.ClientTrace (ReverseProxy's).
func (u *upstream) roundTrip(ctx context.Context, req *http.Request, addr string, got1xx func(int, http.Header) error) (*http.Response, error) {
	uc, reused, err := u.get(ctx, addr)
	if err != nil {
		return nil, err
	}
	if got1xx == nil {
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			got1xx = func(code int, h http.Header) error { return trace.Got1xxResponse(code, textproto.MIMEHeader(h)) }
		}
	}
	res, err, answered := u.exchange(ctx, uc, req, got1xx)
	if err != nil && reused && !answered && replayable(req) && ctx.Err() == nil {
		if uc, err = u.dial(ctx, addr); err != nil {
			return nil, err
		}
		res, err, _ = u.exchange(ctx, uc, req, got1xx)
	}
	return res, err
}

// get returns an idle connection to addr, or a new one.
func (u *upstream) get(ctx context.Context, addr string) (uc *upConn, reused bool, err error) {
	now := time.Now()
	u.mu.Lock()
	for list := u.idle[addr]; len(list) > 0; list = u.idle[addr] {
		uc = list[len(list)-1]
		list[len(list)-1] = nil
		if len(list) == 1 {
			delete(u.idle, addr)
		} else {
			u.idle[addr] = list[:len(list)-1]
		}
		u.nidle--
		if now.Sub(uc.idleAt) < upIdleTimeout && uc.br.Buffered() == 0 && !peerClosed(uc.conn) {
			u.mu.Unlock()
			return uc, true, nil
		}
		uc.conn.Close()
	}
	u.mu.Unlock()
	uc, err = u.dial(ctx, addr)
	return uc, false, err
}

func (u *upstream) dial(ctx context.Context, addr string) (*upConn, error) {
	conn, err := u.c.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	uc := &upConn{conn: conn, addr: addr}
	uc.src = limitedReader{r: conn, n: unlimited}
	uc.br = bufio.NewReaderSize(&uc.src, upBufferSize)
	uc.bw = bufio.NewWriterSize(conn, 4<<10)
	return uc, nil
}

// put returns a connection whose last response was read to its end.
func (u *upstream) put(uc *upConn) {
	uc.idleAt = time.Now()
	u.mu.Lock()
	list := u.idle[uc.addr]
	if u.closed || len(list) >= upMaxIdlePerEndpoint || u.nidle >= upMaxIdle {
		u.mu.Unlock()
		uc.conn.Close()
		return
	}
	if u.idle == nil {
		u.idle = map[string][]*upConn{}
	}
	u.idle[uc.addr] = append(list, uc)
	u.nidle++
	u.mu.Unlock()
}

// sweep closes the connections idle for upIdleTimeout, and with all set
// every idle one and refuses more.
func (u *upstream) sweep(all bool) {
	now := time.Now()
	var old []*upConn
	u.mu.Lock()
	if all {
		u.closed = true
	}
	for addr, list := range u.idle {
		keep := list[:0]
		for _, uc := range list {
			if all || now.Sub(uc.idleAt) >= upIdleTimeout {
				old = append(old, uc)
			} else {
				keep = append(keep, uc)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(u.idle, addr)
		} else {
			u.idle[addr] = keep
		}
	}
	u.nidle -= len(old)
	u.mu.Unlock()
	for _, uc := range old {
		uc.conn.Close()
	}
}

// sweepLoop sweeps every upIdleTimeout/3 until ctx ends.
func (u *upstream) sweepLoop(ctx context.Context) {
	t := time.NewTicker(upIdleTimeout / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			u.sweep(false)
		}
	}
}

// upTimeout is the error of a backend that sent no response headers within
// UpstreamHeaderTimeout.
type upTimeout struct{ addr string }

func (e upTimeout) Error() string {
	return fmt.Sprintf("backend %s: no response headers in time", e.addr)
}
func (upTimeout) Timeout() bool   { return true }
func (upTimeout) Temporary() bool { return true }

// exchange writes req on uc and reads the response headers. The connection
// is closed when ctx ends (until the body is read or closed) or the headers do not come in time; answered
// tells whether any byte of a response was read before an error.
func (u *upstream) exchange(ctx context.Context, uc *upConn, req *http.Request, got1xx func(int, http.Header) error) (res *http.Response, err error, answered bool) {
	stop := context.AfterFunc(ctx, func() { uc.conn.Close() })
	var timer *time.Timer
	var timedOut atomic.Bool
	if u.headerTO > 0 {
		timer = time.AfterFunc(u.headerTO, func() {
			timedOut.Store(true)
			uc.conn.Close()
		})
	}
	fail := func(err error) (*http.Response, error, bool) {
		stop()
		if timer != nil {
			timer.Stop()
		}
		uc.conn.Close()
		switch {
		case timedOut.Load():
			// The backend had the request all that time: it is not sent
			// again (answered stops roundTrip's retry).
			return nil, upTimeout{uc.addr}, true
		case ctx.Err() != nil:
			err = ctx.Err()
		}
		return nil, err, answered
	}

	if err := req.Write(uc.bw); err != nil {
		return fail(err)
	}
	if err := uc.bw.Flush(); err != nil {
		return fail(err)
	}
	for n1xx := 0; ; n1xx++ {
		answered = answered || uc.br.Buffered() > 0
		uc.src.n = upMaxHeaderBytes + int64(uc.br.Buffered())
		res, err = http.ReadResponse(uc.br, req)
		if err != nil {
			answered = answered || uc.src.n < upMaxHeaderBytes+int64(uc.br.Buffered())
			return fail(err)
		}
		answered = true
		code := res.StatusCode
		if code >= 200 {
			break
		}
		if code == http.StatusSwitchingProtocols {
			return fail(fmt.Errorf("backend %s switched protocols unasked", uc.addr))
		}
		if n1xx >= upMax1xx {
			return fail(fmt.Errorf("backend %s sent too many informational responses", uc.addr))
		}
		if got1xx != nil {
			if err := got1xx(code, res.Header); err != nil {
				return fail(err)
			}
		}
	}
	uc.src.n = unlimited
	if timer != nil && !timer.Stop() {
		return fail(upTimeout{uc.addr})
	}
	b := &upBody{rc: res.Body, u: u, uc: uc, stop: stop, reuse: !res.Close}
	if res.Body == http.NoBody {
		b.finish(true)
	} else {
		res.Body = b
	}
	return res, nil, true
}

// upBody is a response body: read to its end, it gives its connection back
// to the pool; closed before, it closes the connection (the rest of a body
// is not worth reading for a client gone).
type upBody struct {
	rc    io.ReadCloser
	u     *upstream
	uc    *upConn
	stop  func() bool // of the context.AfterFunc that closes the connection
	reuse bool
	done  atomic.Bool
}

func (b *upBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	}
	return n, err
}

func (b *upBody) Close() error {
	b.finish(false)
	return nil
}

func (b *upBody) finish(eof bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	// Bytes after the end of the response (a 204 or a HEAD answered with
	// a body, more than Content-Length) would be taken as the next
	// request's response, perhaps another client's: such a connection is
	// not reused, as http.Transport does not.
	if b.stop() && eof && b.reuse && b.uc.br.Buffered() == 0 {
		b.u.put(b.uc)
		return
	}
	b.uc.conn.Close()
}
