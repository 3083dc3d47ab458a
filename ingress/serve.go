package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
)

// handler serves the requests of one listener.
type handler struct {
	c     *Controller
	https bool
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := h.c
	c.busyAdd(1) // an HTTP/2 handler runs on a goroutine of its own; a hijacked one outlives its connection's
	defer c.busyAdd(-1)
	if h.https && r.TLS == nil {
		r.TLS, _ = r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	}

	be, code, msg := c.lookup(r.Host, r.URL.Path)
	if code != 0 {
		c.plain(be, w, code, msg)
		return
	}
	if c.maxBody > 0 && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > c.maxBody {
			c.tooLarge.Add(1)
			c.plain(be, w, http.StatusRequestEntityTooLarge, "413 Request Entity Too Large: the body is over the limit of this Ingress controller")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, c.maxBody)
	}
	be.proxy.ServeHTTP(w, r)
}

// lookup finds the backend of a request for host and path, and, counted,
// the answer the Controller gives itself when it has one: 404 when no rule
// matches (be is nil), 503 when the backend has no ready endpoint. code is
// 0 when the request goes to the backend.
func (c *Controller) lookup(host, path string) (be *backend, code int, msg string) {
	host, path = normalizeHost(host), cleanPath(path)
	rt := c.table.Load().route(host, path)
	if rt == nil {
		c.noRoute.Add(1)
		if host == "" {
			host = "(none)"
		}
		return nil, http.StatusNotFound, "404 page not found: no Ingress rule for host " + host + " path " + path
	}
	if len(rt.backend.eps) == 0 {
		c.noEndpoint.Add(1)
		return rt.backend, http.StatusServiceUnavailable, "503 Service Unavailable: " + rt.backend.unavailable
	}
	return rt.backend, 0, ""
}

// plain answers with a short plain-text body of the Controller's own, for
// a request routed to be (nil: none).
func (c *Controller) plain(be *backend, w http.ResponseWriter, code int, msg string) {
	c.count(be, code)
	http.Error(w, msg, code)
}

// count counts a response with status code to a request routed to be (nil:
// no rule matched it).
func (c *Controller) count(be *backend, code int) {
	if class := code / 100; class >= 1 && class <= 5 {
		c.responses[class].Add(1)
		ctr := &c.unrouted
		if be != nil {
			ctr = be.ctr
		}
		ctr.responses[class].Add(1)
	}
}

// newReverseProxy makes the proxy of one backend: the Transport's pool
// of connections is shared by all, keyed by endpoint.
func (c *Controller) newReverseProxy(be *backend) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:   c.rewrite,
		Transport: &backendTransport{c: c, be: be},
		ModifyResponse: func(res *http.Response) error {
			c.count(be, res.StatusCode)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { c.proxyError(be, w, r, err) },
		BufferPool:   &c.bufPool,
		ErrorLog:     log.New(io.Discard, "", 0), // a broken stream or upgrade is counted, not logged
	}
}

// rewrite sets what the backend is told about the client. ReverseProxy has
// removed hop-by-hop headers and the client's Forwarded and
// X-Forwarded-{For,Host,Proto}; the Host header is passed through as is.
func (c *Controller) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	out.URL.Scheme = "http"
	proto, port := "http", c.httpPort
	if in.TLS != nil {
		proto, port = "https", c.httpsPort
	}
	forwarded(out.Header, in.Header["X-Forwarded-For"], remoteHost(in.RemoteAddr), in.Host, proto, port)
}

// forwarded sets the headers that tell the backend about the client: prior
// is the X-Forwarded-For the client sent, which the client's IP is appended
// to; host is the Host it asked for, proto and port what it connected to.
func forwarded(h http.Header, prior []string, client, host, proto, port string) {
	xff := client
	if len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + client
	}
	h["X-Forwarded-For"] = []string{xff}
	h["X-Forwarded-Host"] = []string{host}
	h["X-Forwarded-Proto"] = []string{proto}
	h["X-Forwarded-Port"] = []string{port}
	h["X-Real-Ip"] = []string{client}
}

// remoteHost is the IP of a RemoteAddr "ip:port" or "[ip]:port".
func remoteHost(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// backendTransport sends a request to the next endpoint of its backend, in
// turn, and once more to the following endpoint when the connection could
// not be made and the request may be repeated.
type backendTransport struct {
	c  *Controller
	be *backend
}

func (t *backendTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if len(t.be.eps) > 1 && replayable(req) && req.Body != nil {
		// The Transport closes the body when it fails, and ReverseProxy's
		// body refuses reads once closed: keep it open for the retry (a
		// failed dial has read none of it).
		req.Body = keepOpen{req.Body}
	}
	return t.c.balance(req.Context(), t.be, req, t.c.roundTrip)
}

// balance sends req to the next endpoint of be, in turn, and once more to
// the following one when the connection could not be made (a dialError:
// nothing was sent) and the request may be repeated.
func (c *Controller) balance(ctx context.Context, be *backend, req *http.Request, send func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	eps := be.eps
	i := be.next()
	req.URL.Host = eps[i%uint64(len(eps))]
	res, err := send(req)
	var de *dialError
	if err == nil || len(eps) < 2 || !replayable(req) || !errors.As(err, &de) || ctx.Err() != nil {
		return res, err
	}
	c.retries.Add(1)
	retry := *req
	u := *req.URL
	u.Host = eps[(i+1)%uint64(len(eps))]
	retry.URL = &u
	return send(&retry)
}

// roundTrip sends req to req.URL.Host.
func (c *Controller) roundTrip(req *http.Request) (*http.Response, error) {
	if lean(req) {
		return c.up.roundTrip(req.Context(), req, req.URL.Host, nil)
	}
	return c.transport.RoundTrip(req)
}

// keepOpen is a request body whose Close is left to its owner.
type keepOpen struct{ io.ReadCloser }

func (keepOpen) Close() error { return nil }

// replayable reports whether a request may be sent a second time (RFC 9110
// section 9.2.2): GET, HEAD, OPTIONS and TRACE, and PUT and DELETE, whose
// bodies are intact when the first try could not connect.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// proxyError answers a request whose backend failed before its response.
func (c *Controller) proxyError(be *backend, w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		c.tooLarge.Add(1)
		c.plain(be, w, http.StatusRequestEntityTooLarge, "413 Request Entity Too Large: the body is over the limit of this Ingress controller")
	case r.Context().Err() != nil:
		c.aborted.Add(1) // the client left, or Close: nobody reads an answer
	case isTimeout(err):
		c.upstreamErr.Add(1)
		c.plain(be, w, http.StatusGatewayTimeout, "504 Gateway Timeout: no answer in time from "+be.name)
	default:
		c.upstreamErr.Add(1)
		c.plain(be, w, http.StatusBadGateway, "502 Bad Gateway: no answer from "+be.name)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// next returns the turn of the next request for round-robin balancing.
func (be *backend) next() uint64 { return be.turn.Add(1) - 1 }

// bufferPool lends ReverseProxy its copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
