package ingress

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// ClassName is the IngressClass this controller serves.
const ClassName = "podnet"

// Dialer opens TCP connections into the cluster through the node's data path
// (the node agent wraps its stack).
type Dialer interface {
	// DialContext connects to addr, a pod's "IP:port"; network is "tcp".
	// It returns once the connection is established, or with an error when
	// the backend refuses it or ctx ends first. An error means that nothing
	// was sent, so the Controller may retry the request elsewhere.
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Endpoint is a ready endpoint of a Service port.
type Endpoint struct {
	Addr netip.AddrPort // pod IP and the target port for that Service port
}

// ServicePort is one port of a Service and its ready endpoints.
type ServicePort struct {
	Name      string // the Service port's name, which an Ingress backend may use
	Port      int32  // the Service port's number
	Endpoints []Endpoint
}

// Service is what the controller needs of a Service: its ports and their
// ready endpoints. Only ready endpoints may be given.
type Service struct {
	Namespace, Name string
	Ports           []ServicePort
}

// Config is the desired state given to Update. The Controller copies what
// it routes on, and keeps the Secrets' data to compare with the next
// Update's: do not modify objects once given (informer caches never do).
type Config struct {
	// Ingresses are all the cluster's Ingresses; the Controller serves
	// those of class "podnet": the annotation kubernetes.io/ingress.class
	// when present decides, else spec.ingressClassName, else DefaultClass.
	Ingresses []*networkingv1.Ingress
	// Secrets hold the certificates of spec.tls: type kubernetes.io/tls,
	// data tls.crt (PEM chain) and tls.key (PEM key).
	Secrets []*corev1.Secret
	// Services are the Services with their ready endpoints.
	Services []Service
	// DefaultClass is true when the IngressClass "podnet" is the cluster's
	// default: Ingresses with neither class field nor annotation are ours.
	DefaultClass bool
}

// Defaults of Options.
const (
	DefaultMaxHeaderBytes        = 32 << 10
	DefaultMaxBodyBytes          = 64 << 20
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultIdleTimeout           = 60 * time.Second
	DefaultUpstreamDialTimeout   = 5 * time.Second
	DefaultUpstreamHeaderTimeout = 60 * time.Second
	DefaultMaxConnsPerClient     = 256
	DefaultMaxConns              = 10000
)

// Options configure a Controller.
type Options struct {
	// Address is the node's address, on which HTTPPort and HTTPSPort are
	// opened. Required when either port is set.
	Address netip.Addr
	// HTTPPort and HTTPSPort are the ports for plain HTTP and for HTTPS. If
	// zero, that one is not opened (unless its Listener below is given).
	HTTPPort, HTTPSPort uint16
	// HTTPListener and HTTPSListener, if set, are served instead of opening
	// HTTPPort and HTTPSPort (tests, socket activation, a listener on the
	// node's stack). The Controller owns them and closes them at Close.
	HTTPListener, HTTPSListener net.Listener
	// Dialer opens the connections to the backends. Required when anything
	// is served.
	Dialer Dialer
	// Logger gets the problems of Ingresses (once each, when they appear)
	// and the HTTP servers' own errors at debug level. Requests are counted
	// (Stats), never logged. If nil, nothing is logged.
	Logger *slog.Logger
	// DefaultCertificate is served when no Ingress has a certificate for the
	// name a TLS client asks for (or it asks for none). If nil, a
	// self-signed certificate with CN "podnet-ingress-default" is made at New.
	DefaultCertificate *tls.Certificate

	// MaxHeaderBytes bounds a request's line and headers (HTTP/1) or its
	// header list (HTTP/2); beyond it the answer is 431 (net/http allows
	// 4 KiB of slack, a little more on a kept-alive connection). If zero or
	// negative, DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxBodyBytes bounds a request's body; beyond it the answer is 413
	// (before the backend is asked when Content-Length says so, else as
	// soon as the body passes the limit). If zero, DefaultMaxBodyBytes;
	// negative: no limit.
	MaxBodyBytes int64
	// ReadHeaderTimeout bounds the TLS handshake and the reading of each
	// request's headers, so a client dribbling them (slowloris) is closed.
	// If zero, DefaultReadHeaderTimeout; negative: none.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a client connection that waits that long for its
	// next request. If zero, DefaultIdleTimeout; negative: none.
	IdleTimeout time.Duration
	// UpstreamDialTimeout bounds each connection to a backend. If zero,
	// DefaultUpstreamDialTimeout; negative: none.
	UpstreamDialTimeout time.Duration
	// UpstreamHeaderTimeout bounds the wait for a backend's response headers
	// once the request is sent; beyond it the answer is 504. If zero,
	// DefaultUpstreamHeaderTimeout; negative: none.
	UpstreamHeaderTimeout time.Duration
	// MaxConnsPerClient bounds the open connections of one client IP over
	// both ports; one more is closed as soon as it is accepted. If zero,
	// DefaultMaxConnsPerClient; negative: no bound.
	MaxConnsPerClient int
	// MaxConns bounds all open client connections; one more is closed as
	// soon as it is accepted. If zero, DefaultMaxConns; negative: no bound.
	MaxConns int
}

// Problem is what is wrong with an Ingress: the part named by Field is not
// served (a TLS entry, a rule, a path or the default backend); the rest of
// the Ingress and every other Ingress still are.
type Problem struct {
	Namespace, Name string // the Ingress
	Field           string // e.g. "spec.tls[0].secretName"
	Message         string // e.g. "Secret default/foo not found"
}

func (p Problem) String() string {
	return fmt.Sprintf("ingress %s/%s: %s: %s", p.Namespace, p.Name, p.Field, p.Message)
}

// Stats are counters of a Controller since New.
type Stats struct {
	// Responses counts the responses sent by status class: Responses[2]
	// is 2xx, Responses[5] 5xx (index 0 is unused). Backends' answers and
	// the Controller's own (404, 413, 502, 503, 504) both count.
	Responses      [6]uint64
	NoRoute        uint64 // 404: no rule and no default backend matched
	NoEndpoint     uint64 // 503: the Service, its port or a ready endpoint is missing
	TooLarge       uint64 // 413: body over MaxBodyBytes
	UpstreamErrors uint64 // backend requests failed before a response (502, 504)
	Retries        uint64 // requests retried on another endpoint after a failed dial
	Aborted        uint64 // requests whose client went away before the response
	ActiveConns    int64  // client connections open now
	AcceptedConns  uint64 // client connections accepted and served
	RejectedConns  uint64 // closed at accept: over MaxConns or MaxConnsPerClient

	// Backends counts the responses by backend: one entry for each backend
	// of the routing table in use, sorted by name, and one with an empty
	// Backend for the requests that no rule matched. A backend's counters
	// start at zero when an Update brings it into the table, and go when
	// an Update leaves it out.
	Backends []BackendStats
}

// BackendStats counts the responses to the requests routed to one backend.
type BackendStats struct {
	// Backend is the Service port, "namespace/service:port" as the
	// Ingress names the port (by number or by name); empty for the
	// requests that no rule matched.
	Backend string
	// Responses counts the responses by status class, as
	// Stats.Responses: the backend's own answers and the Controller's
	// (413, 502, 503, 504).
	Responses [6]uint64
}

// Controller serves the Ingresses of class "podnet" on a node (see the
// package doc). Its methods are safe for concurrent use.
type Controller struct {
	log       *slog.Logger
	dialer    Dialer
	defCert   *tls.Certificate
	maxBody   int64
	dialTO    time.Duration
	hdrTO     time.Duration // ReadHeaderTimeout; 0: none
	idleTO    time.Duration // IdleTimeout; 0: none
	fastLns   []net.Listener
	transport *http.Transport // requests with a body, upgrades
	up        upstream        // the others
	httpPort  string          // X-Forwarded-Port of each listener
	httpsPort string
	httpAddr  netip.AddrPort
	httpsAddr netip.AddrPort

	table       atomic.Pointer[table]                       // the routing table, swapped by Update
	backendCtrs atomic.Pointer[map[string]*backendCounters] // the table's backends' counters, by name
	unrouted    backendCounters                             // the responses to requests no rule matched

	ctx    context.Context // ends at Close: request contexts derive from it
	cancel context.CancelFunc
	srvs   []*http.Server
	serves sync.WaitGroup // the Serve loops

	updateMu sync.Mutex // serializes Update; guards certs, reported
	certs    map[string]*certEntry
	reported map[Problem]bool // problems already logged

	connMu      sync.Mutex // guards conns, perClient, closing, busy
	conns       map[*trackedConn]struct{}
	perClient   map[netip.Addr]int
	closing     bool
	busy        int        // connection goroutines and handlers running
	idle        *sync.Cond // signalled when busy drops to zero (L is connMu)
	maxPerCl    int
	maxConns    int
	closeOnce   sync.Once
	closeErr    error
	bufPool     bufferPool
	responses   [6]atomic.Uint64
	noRoute     atomic.Uint64
	noEndpoint  atomic.Uint64
	tooLarge    atomic.Uint64
	upstreamErr atomic.Uint64
	retries     atomic.Uint64
	aborted     atomic.Uint64
	accepted    atomic.Uint64
	rejected    atomic.Uint64
}

// New opens the listeners and starts serving an empty routing table (every
// request gets 404 until Update). It fails, naming the address and port,
// when a listener cannot be opened.
func New(opts Options) (*Controller, error) {
	c := &Controller{
		log:       opts.Logger,
		dialer:    opts.Dialer,
		defCert:   opts.DefaultCertificate,
		maxBody:   orDefault(opts.MaxBodyBytes, DefaultMaxBodyBytes),
		dialTO:    orDefault(opts.UpstreamDialTimeout, DefaultUpstreamDialTimeout),
		certs:     map[string]*certEntry{},
		reported:  map[Problem]bool{},
		conns:     map[*trackedConn]struct{}{},
		perClient: map[netip.Addr]int{},
		maxPerCl:  orDefault(opts.MaxConnsPerClient, DefaultMaxConnsPerClient),
		maxConns:  orDefault(opts.MaxConns, DefaultMaxConns),
	}
	c.idle = sync.NewCond(&c.connMu)
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.table.Store(&table{})
	c.ctx, c.cancel = context.WithCancel(context.Background())

	httpLn, httpsLn := opts.HTTPListener, opts.HTTPSListener
	closeAll := func() {
		for _, l := range []net.Listener{httpLn, httpsLn} {
			if l != nil {
				l.Close()
			}
		}
	}
	var err error
	if httpLn == nil && opts.HTTPPort != 0 {
		if httpLn, err = listen(opts.Address, opts.HTTPPort, "HTTP"); err != nil {
			closeAll()
			return nil, err
		}
	}
	if httpsLn == nil && opts.HTTPSPort != 0 {
		if httpsLn, err = listen(opts.Address, opts.HTTPSPort, "HTTPS"); err != nil {
			closeAll()
			return nil, err
		}
	}
	if (httpLn != nil || httpsLn != nil) && c.dialer == nil {
		closeAll()
		return nil, errors.New("ingress: Options.Dialer is required")
	}
	if httpsLn != nil && c.defCert == nil {
		if c.defCert, err = selfSigned(DefaultCertificateName); err != nil {
			closeAll()
			return nil, fmt.Errorf("ingress: make the default certificate: %w", err)
		}
	}

	c.transport = &http.Transport{
		Proxy:                  nil, // never the environment's proxy: backends are pods
		DialContext:            c.dial,
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  max(orDefault(opts.UpstreamHeaderTimeout, DefaultUpstreamHeaderTimeout), 0),
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true, // pass Accept-Encoding and bodies through untouched
		MaxResponseHeaderBytes: 1 << 20,
		ReadBufferSize:         32 << 10,
		WriteBufferSize:        32 << 10,
	}

	c.up = upstream{c: c, headerTO: c.transport.ResponseHeaderTimeout}
	c.serves.Go(func() { c.up.sweepLoop(c.ctx) })

	c.hdrTO = max(orDefault(opts.ReadHeaderTimeout, DefaultReadHeaderTimeout), 0)
	c.idleTO = max(orDefault(opts.IdleTimeout, DefaultIdleTimeout), 0)
	newServer := func(ln net.Listener, https bool) (*http.Server, net.Listener) {
		port := listenerPort(ln)
		h := &handler{c: c, https: https}
		if https {
			c.httpsPort, c.httpsAddr = strconv.Itoa(int(port.Port())), port
		} else {
			c.httpPort, c.httpAddr = strconv.Itoa(int(port.Port())), port
		}
		srv := &http.Server{
			Handler:           h,
			MaxHeaderBytes:    cmp.Or(max(opts.MaxHeaderBytes, 0), DefaultMaxHeaderBytes),
			ReadHeaderTimeout: c.hdrTO,
			IdleTimeout:       c.idleTO,
			BaseContext:       func(net.Listener) context.Context { return c.ctx },
			ConnState:         c.connState,
			ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
		}
		if https {
			srv.TLSConfig = &tls.Config{
				MinVersion:     tls.VersionTLS12,
				GetCertificate: c.certificate,
				NextProtos:     []string{"h2", "http/1.1"},
			}
			// A connection the fast server hands over after reading from it
			// is no *tls.Conn any more: its requests get their TLS state
			// from here (handler.ServeHTTP).
			srv.ConnContext = func(ctx context.Context, conn net.Conn) context.Context {
				if pc, ok := conn.(*prefixConn); ok && pc.tlsState != nil {
					return context.WithValue(ctx, tlsStateKey{}, pc.tlsState)
				}
				return ctx
			}
		}
		c.srvs = append(c.srvs, srv)
		return srv, &limitListener{Listener: ln, c: c}
	}
	// The fast server takes the connections (after the TLS handshake on
	// HTTPS), and hands to srv those it does not serve (fast.go).
	for _, l := range []struct {
		ln    net.Listener
		https bool
	}{{httpLn, false}, {httpsLn, true}} {
		if l.ln == nil {
			continue
		}
		srv, ln := newServer(l.ln, l.https)
		hand := newHandoffListener(l.ln.Addr())
		c.fastLns = append(c.fastLns, ln)
		var tlsConf *tls.Config // the handshakes' own: Serve may change srv's
		if l.https {
			tlsConf = srv.TLSConfig.Clone()
		}
		c.serves.Go(func() { c.serveDone(srv.Serve(hand)) })
		c.serves.Go(func() { c.serveDone(c.serveFast(ln, hand, tlsConf)) })
	}
	return c, nil
}

// DefaultCertificateName is the common name of the generated default
// certificate.
const DefaultCertificateName = "podnet-ingress-default"

func listen(addr netip.Addr, port uint16, what string) (net.Listener, error) {
	ap := netip.AddrPortFrom(addr, port)
	if !addr.IsValid() {
		return nil, fmt.Errorf("ingress: listen for %s on port %d: no address (Options.Address)", what, port)
	}
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err
		}
		return nil, fmt.Errorf("ingress: listen for %s on %s: %w", what, ap, err)
	}
	return ln, nil
}

func listenerPort(ln net.Listener) netip.AddrPort {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(ln.Addr().String())
	return ap
}

func (c *Controller) serveDone(err error) {
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		c.log.Error("ingress listener stopped", "err", err)
	}
}

// HTTPAddr is the address plain HTTP is served on; zero if none.
func (c *Controller) HTTPAddr() netip.AddrPort { return c.httpAddr }

// HTTPSAddr is the address HTTPS is served on; zero if none.
func (c *Controller) HTTPSAddr() netip.AddrPort { return c.httpsAddr }

// Stats returns the counters.
func (c *Controller) Stats() Stats {
	s := Stats{
		NoRoute:        c.noRoute.Load(),
		NoEndpoint:     c.noEndpoint.Load(),
		TooLarge:       c.tooLarge.Load(),
		UpstreamErrors: c.upstreamErr.Load(),
		Retries:        c.retries.Load(),
		Aborted:        c.aborted.Load(),
		AcceptedConns:  c.accepted.Load(),
		RejectedConns:  c.rejected.Load(),
	}
	for i := range s.Responses {
		s.Responses[i] = c.responses[i].Load()
	}
	s.Backends = append(s.Backends, c.unrouted.stats(""))
	if m := c.backendCtrs.Load(); m != nil {
		for name, ctr := range *m {
			s.Backends = append(s.Backends, ctr.stats(name))
		}
	}
	slices.SortFunc(s.Backends, func(a, b BackendStats) int { return strings.Compare(a.Backend, b.Backend) })
	c.connMu.Lock()
	s.ActiveConns = int64(len(c.conns))
	c.connMu.Unlock()
	return s
}

func (b *backendCounters) stats(name string) BackendStats {
	s := BackendStats{Backend: name}
	for i := range s.Responses {
		s.Responses[i] = b.responses[i].Load()
	}
	return s
}

// Close stops the listeners, ends every request in flight and closes every
// client connection (WebSockets included) and every backend connection, and
// waits for the goroutines serving them. It returns nil after the first call.
func (c *Controller) Close() error {
	c.closeOnce.Do(func() {
		c.connMu.Lock()
		c.closing = true
		c.connMu.Unlock()
		c.cancel()
		for _, ln := range c.fastLns {
			if err := ln.Close(); err != nil && c.closeErr == nil {
				c.closeErr = fmt.Errorf("ingress: close: %w", err)
			}
		}
		for _, srv := range c.srvs {
			if err := srv.Close(); err != nil && c.closeErr == nil {
				c.closeErr = fmt.Errorf("ingress: close: %w", err)
			}
		}
		c.serves.Wait() // no connection is accepted after this
		c.connMu.Lock()
		for tc := range c.conns {
			tc.Conn.Close() // hijacked ones (WebSockets) too; tc.Close unregisters
		}
		for c.busy > 0 {
			c.idle.Wait()
		}
		c.connMu.Unlock()
		if c.transport != nil {
			c.transport.CloseIdleConnections()
		}
		c.up.sweep(true)
	})
	return c.closeErr
}

// connState counts the connection goroutines of the servers: one starts
// with StateNew and ends with StateClosed, or with StateHijacked, after
// which its handler (counted by the handler) owns it.
func (c *Controller) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		c.busyAdd(1)
	case http.StateClosed, http.StateHijacked:
		c.busyAdd(-1)
	}
}

func (c *Controller) busyAdd(d int) {
	c.connMu.Lock()
	c.busy += d
	if c.busy == 0 {
		c.idle.Broadcast()
	}
	c.connMu.Unlock()
}

// dial connects to a backend for the Transport; its errors are dialErrors,
// which tell the retry that nothing was sent.
func (c *Controller) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.dialTO > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.dialTO)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel) // Close ends dials in flight
	defer stop()
	conn, err := c.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &dialError{addr: addr, err: err}
	}
	return conn, nil
}

// dialError is a failed connection to a backend: nothing was sent.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return fmt.Sprintf("dial backend %s: %v", e.addr, e.err) }
func (e *dialError) Unwrap() error { return e.err }

func orDefault[T int | int64 | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return -1
	}
	return v
}
