// Package serve is the workload behind `podnet serve`: a small server that
// answers with its pod's name over TCP, UDP and HTTP, so that a lab's
// connectivity, Services, load balancing and NetworkPolicies can be checked
// with ordinary clients (nc, curl, dig-less UDP probes) and the answer tells
// which pod replied.
//
//   - TCP: each connection gets the name and a newline; the server then reads
//     until the client closes its side or 2 seconds pass, and closes.
//   - UDP: each datagram is answered with the name and a newline, to its
//     sender.
//   - HTTP: /clientip answers the caller's address as it arrived (which
//     shows whether a Service or NodePort preserved the source address),
//     /echo?msg=X answers X, /headers the request's headers, /stream?n=N&ms=M
//     N lines flushed M ms apart, /ws is a WebSocket echo; every other path
//     answers the name (an Ingress passes paths to backends unchanged).
//
// Every port is served on all addresses, IPv4 and IPv6 where the host has it.
//
// The package is a leaf: it must never depend on the rest of podnet, so that
// the workload behaves the same whether run in a lab pod, a Kubernetes pod or
// a shell. It keeps no state outside Run and writes nothing but its answers
// and the logs it is given a logger for.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/net/websocket"
)

// Options configures Run.
type Options struct {
	// Name is what the server answers. If Name is empty, the POD_NAME
	// environment variable is used, and if that is empty too, the hostname.
	Name string
	// TCP, UDP and HTTP are the ports to serve each protocol on, on all
	// addresses. At least one port is required; a port may be both TCP
	// and UDP but not both TCP and HTTP.
	TCP, UDP, HTTP []int
	// Logger receives the server's logs. If Logger is nil, logs are
	// discarded.
	Logger *slog.Logger
	// Ready, if not nil, is called once, when every listener is bound and
	// being served.
	Ready func()
}

// Timeouts of the protocols.
const (
	// tcpLinger is how long a TCP connection is kept open, reading, after
	// the answer was written.
	tcpLinger = 2 * time.Second
	// shutdownGrace is how long HTTP requests in flight get to finish
	// once Run is cancelled.
	shutdownGrace = 2 * time.Second
	// maxAcceptBackoff caps the wait after a failing Accept or ReadFrom.
	maxAcceptBackoff = time.Second
)

// Run serves opts until ctx is cancelled, then closes every listener and
// connection and waits for the goroutines it started. It returns nil after a
// cancellation, and an error, naming the port at fault, if the options are
// invalid, a port cannot be bound, or an HTTP server fails.
func Run(ctx context.Context, opts Options) error {
	if err := validate(opts); err != nil {
		return err
	}
	s, err := listen(opts, "")
	if err != nil {
		return err
	}
	return s.serve(ctx, opts.Ready)
}

// validate checks the ports of opts.
func validate(opts Options) error {
	if len(opts.TCP)+len(opts.UDP)+len(opts.HTTP) == 0 {
		return errors.New("serve: no ports: give at least one TCP, UDP or HTTP port")
	}
	tcp := make(map[int]string) // port -> protocol, for TCP and HTTP
	for _, l := range []struct {
		proto string
		ports []int
	}{{"TCP", opts.TCP}, {"HTTP", opts.HTTP}, {"UDP", opts.UDP}} {
		udp := make(map[int]bool)
		for _, p := range l.ports {
			if p < 1 || p > 65535 {
				return fmt.Errorf("serve: %s port %d: out of range 1-65535", l.proto, p)
			}
			if l.proto == "UDP" {
				if udp[p] {
					return fmt.Errorf("serve: UDP port %d given twice", p)
				}
				udp[p] = true
				continue
			}
			switch prev := tcp[p]; prev {
			case "":
				tcp[p] = l.proto
			case l.proto:
				return fmt.Errorf("serve: %s port %d given twice", l.proto, p)
			default:
				return fmt.Errorf("serve: port %d given for both %s and %s", p, prev, l.proto)
			}
		}
	}
	return nil
}

// ParsePorts parses a list of ports separated by commas and/or spaces, such
// as "80,8080" or "80 8080". An empty list gives no ports and no error. The
// error for a bad entry names it.
func ParsePorts(s string) ([]int, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	var ports []int
	seen := make(map[int]bool, len(fields))
	for _, f := range fields {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, fmt.Errorf("invalid port %q: not a number", f)
		}
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("invalid port %q: out of range 1-65535", f)
		}
		p := int(n)
		if seen[p] {
			return nil, fmt.Errorf("invalid port %q: listed twice", f)
		}
		seen[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// podName returns the name to answer with, as Options.Name documents.
func podName(name string) (string, error) {
	if name != "" {
		return name, nil
	}
	if name := os.Getenv("POD_NAME"); name != "" {
		return name, nil
	}
	name, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("serve: no name given, POD_NAME unset, and no hostname: %w", err)
	}
	return name, nil
}

// server is a Run in progress: its bound sockets and what it answers.
type server struct {
	name   string
	answer []byte // name + "\n"
	log    *slog.Logger
	linger time.Duration // tcpLinger; shorter in tests

	tcp  []net.Listener // opts.TCP, in order
	udp  []net.PacketConn
	http []net.Listener

	conns connSet // open TCP connections
}

// listen binds every port of opts on host; host "" means all addresses
// (IPv4 and IPv6 where available). Ports are not validated: 0 binds an
// ephemeral port, which tests use. On error every socket already bound is
// closed.
func listen(opts Options, host string) (*server, error) {
	name, err := podName(opts.Name)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{name: name, answer: []byte(name + "\n"), log: log, linger: tcpLinger}
	if err := s.bind(opts, host); err != nil {
		s.closeTCPUDP()
		for _, l := range s.http {
			l.Close()
		}
		return nil, err
	}
	return s, nil
}

// bind binds the ports of opts on host, adding the sockets to s.
func (s *server) bind(opts Options, host string) error {
	addr := func(p int) string { return net.JoinHostPort(host, strconv.Itoa(p)) }
	for _, p := range opts.TCP {
		l, err := net.Listen("tcp", addr(p))
		if err != nil {
			return fmt.Errorf("serve: listen on TCP port %d: %w", p, err)
		}
		s.tcp = append(s.tcp, l)
	}
	for _, p := range opts.UDP {
		c, err := net.ListenPacket("udp", addr(p))
		if err != nil {
			return fmt.Errorf("serve: listen on UDP port %d: %w", p, err)
		}
		s.udp = append(s.udp, c)
	}
	for _, p := range opts.HTTP {
		l, err := net.Listen("tcp", addr(p))
		if err != nil {
			return fmt.Errorf("serve: listen on HTTP port %d: %w", p, err)
		}
		s.http = append(s.http, l)
	}
	return nil
}

// closeTCPUDP closes the TCP listeners and UDP sockets of s. The HTTP
// listeners belong to their http.Server once served.
func (s *server) closeTCPUDP() {
	for _, l := range s.tcp {
		l.Close()
	}
	for _, c := range s.udp {
		c.Close()
	}
}

// serve serves the bound sockets until ctx is cancelled or an HTTP server
// fails, calls ready (if not nil) once serving, and returns after every
// goroutine it started has returned.
func (s *server) serve(ctx context.Context, ready func()) error {
	var wg sync.WaitGroup
	failed := make(chan error, len(s.http))

	for _, l := range s.tcp {
		wg.Go(func() { s.serveTCP(ctx, l, &wg) })
	}
	for _, c := range s.udp {
		wg.Go(func() { s.serveUDP(ctx, c) })
	}
	servers := make([]*http.Server, len(s.http))
	for i, l := range s.http {
		srv := s.newHTTPServer()
		servers[i] = srv
		wg.Go(func() {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				failed <- fmt.Errorf("serve: HTTP on %s: %w", l.Addr(), err)
			}
		})
	}

	s.log.Info("serving", "name", s.name,
		"tcp", addrs(s.tcp), "udp", packetAddrs(s.udp), "http", addrs(s.http))
	if ready != nil {
		ready()
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-failed:
		s.log.Error("stopping", "err", err)
	}

	// Stop accepting, then end what is in flight: TCP connections at once
	// (their answer is written first thing), HTTP requests after a grace.
	s.closeTCPUDP()
	s.conns.closeAll()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			srv.Close() //nolint:errcheck // closing anyway
		}
	}
	wg.Wait()
	s.log.Info("stopped")
	return err
}

// serveTCP accepts connections on l until l is closed, answering each in a
// goroutine added to wg.
func (s *server) serveTCP(ctx context.Context, l net.Listener, wg *sync.WaitGroup) {
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = nextBackoff(backoff)
			s.log.Warn("accept failed", "addr", l.Addr(), "err", err, "retry", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			continue
		}
		backoff = 0
		if !s.conns.add(c) {
			c.Close() // shutting down
			return
		}
		wg.Go(func() {
			defer s.conns.remove(c)
			s.answerTCP(c)
		})
	}
}

// answerTCP writes the answer to c, reads until the client closes its side
// or s.linger passes, and closes c.
func (s *server) answerTCP(c net.Conn) {
	defer c.Close()
	s.log.Debug("tcp connection", "from", c.RemoteAddr(), "to", c.LocalAddr())
	c.SetDeadline(time.Now().Add(s.linger))
	if _, err := c.Write(s.answer); err != nil {
		s.log.Debug("tcp write failed", "from", c.RemoteAddr(), "err", err)
		return
	}
	// Reading to EOF before closing makes the close a FIN, not a reset
	// that could discard the answer before the client reads it.
	io.Copy(io.Discard, c) //nolint:errcheck // ends at EOF, deadline or close
}

// serveUDP answers every datagram on c until c is closed.
func (s *server) serveUDP(ctx context.Context, c net.PacketConn) {
	buf := make([]byte, 64<<10)
	var backoff time.Duration
	for {
		_, from, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = nextBackoff(backoff)
			s.log.Warn("udp read failed", "addr", c.LocalAddr(), "err", err, "retry", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			continue
		}
		backoff = 0
		if _, err := c.WriteTo(s.answer, from); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("udp write failed", "to", from, "err", err)
		}
	}
}

// newHTTPServer returns the HTTP server of s, with timeouts that keep a slow
// or idle client from holding a connection forever.
func (s *server) newHTTPServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, r, s.name) // every path not below: an Ingress passes paths on unchanged
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		lines := []string{"Host: " + r.Host}
		for k, v := range r.Header {
			lines = append(lines, k+": "+strings.Join(v, ", "))
		}
		slices.Sort(lines[1:])
		s.reply(w, r, strings.Join(lines, "\n"))
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		pause, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		n, pause = min(max(n, 1), 100), min(max(pause, 0), 1000)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		f, _ := w.(http.Flusher)
		for i := range n {
			fmt.Fprintf(w, "chunk %d %s\n", i, time.Now().Format(time.RFC3339Nano))
			if f != nil {
				f.Flush()
			}
			if i < n-1 {
				time.Sleep(time.Duration(pause) * time.Millisecond)
			}
		}
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		n = min(max(n, 0), 100<<20)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		buf := make([]byte, 32<<10)
		for n > 0 {
			k, err := w.Write(buf[:min(n, len(buf))])
			if err != nil {
				return
			}
			n -= k
		}
	})
	mux.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		io.Copy(c, c) //nolint:errcheck // an echo: ends when the client goes
	}))
	mux.HandleFunc("/clientip", func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		s.reply(w, r, host)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, r, r.URL.Query().Get("msg"))
	})
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// reply writes body and a newline as plain text.
func (s *server) reply(w http.ResponseWriter, r *http.Request, body string) {
	s.log.Debug("http request", "from", r.RemoteAddr, "method", r.Method, "uri", r.RequestURI)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff") // /echo reflects its input
	io.WriteString(w, body+"\n")               //nolint:errcheck // the client went away
}

// connSet tracks open TCP connections so that shutdown can close them.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu
	closed bool                  // guarded by mu; no more adds once set
}

// add adds c, or reports false if the set was closed.
func (cs *connSet) add(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	if cs.conns == nil {
		cs.conns = make(map[net.Conn]struct{})
	}
	cs.conns[c] = struct{}{}
	return true
}

func (cs *connSet) remove(c net.Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.conns, c)
}

// closeAll closes every connection and refuses further adds.
func (cs *connSet) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.closed = true
	for c := range cs.conns {
		c.Close()
	}
}

// nextBackoff doubles d, from 5ms up to maxAcceptBackoff, as net/http does
// for failing accepts (which are usually out of file descriptors).
func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	return min(2*d, maxAcceptBackoff)
}

// sleep waits for d or until ctx is done, and reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func addrs(ls []net.Listener) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Addr().String()
	}
	return out
}

func packetAddrs(cs []net.PacketConn) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.LocalAddr().String()
	}
	return out
}
