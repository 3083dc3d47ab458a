package kubenode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultMetricsPort is the port `podnet node` serves its metrics on, on the node's address.
const DefaultMetricsPort = 9962

// newRegistry returns the node's Prometheus registry: the Go runtime's and the process's
// collectors; the agent adds its own metrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// metricsHandler serves GET /metrics, what g gathers in Prometheus's text format, and GET
// /healthz: 200 while ready returns nil, else 503 with its error.
func metricsHandler(g prometheus.Gatherer, ready func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// metricsListenAddr resolves Options.MetricsAddr: "" or "0" is none (ok false); a host left
// empty (":9962") is node's address.
func metricsListenAddr(addr string, node netip.Addr) (_ string, ok bool, err error) {
	if addr == "" || addr == "0" {
		return "", false, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false, fmt.Errorf("--metrics-addr %q: want host:port, :port (the node's address), or 0 for none: %w", addr, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", false, fmt.Errorf("--metrics-addr %q: port %q: want 1 to 65535", addr, port)
	}
	if host == "" {
		host = node.String()
	}
	return net.JoinHostPort(host, port), true, nil
}

// metricsServer is the node's HTTP server of its metrics.
type metricsServer struct {
	srv    *http.Server
	ln     net.Listener
	served chan struct{}
}

// serveMetrics listens on addr and serves h there until Close.
func serveMetrics(addr string, h http.Handler, log *slog.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics on %s: %w", addr, err)
	}
	m := &metricsServer{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			WriteTimeout:      time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		ln:     ln,
		served: make(chan struct{}),
	}
	go func() {
		defer close(m.served)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "address", addr, "err", err)
		}
	}()
	return m, nil
}

// Addr is where the server listens.
func (m *metricsServer) Addr() net.Addr { return m.ln.Addr() }

// Close stops the server, closing its connections, and waits for it.
func (m *metricsServer) Close() error {
	err := m.srv.Close()
	<-m.served
	return err
}
