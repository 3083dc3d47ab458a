package proxy

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// healthState is what a health-check port answers for.
type healthState struct {
	namespace, name string
	local           int // ready endpoints on this node (distinct addresses)
}

// healthBody is kube-proxy's health-check answer.
type healthBody struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

// ServeHTTP answers any request as kube-proxy's service health server does:
// 200 when the Service has a ready endpoint on this node, 503 otherwise (so
// an external load balancer sends externalTrafficPolicy Local traffic only to
// nodes that can take it), with the counts as tab-indented JSON.
func (l *listener) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	st := l.health.Load()
	var b healthBody
	b.Service.Namespace, b.Service.Name = st.namespace, st.name
	b.LocalEndpoints = st.local
	b.ServiceProxyHealthy = true // this process answers, so it is serving
	body, _ := json.MarshalIndent(b, "", "\t")
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(st.local))
	if st.local > 0 {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	w.Write(body)
}

// localReadyIPs counts the distinct addresses of s's ready local endpoints
// over all its ports, as kube-proxy does.
func localReadyIPs(s *Service) int {
	var ips []netip.Addr
	for _, p := range s.Ports {
		for _, ep := range p.Endpoints {
			if ep.Ready && ep.Local && !containsAddr(ips, ep.Addr.Addr()) {
				ips = append(ips, ep.Addr.Addr())
			}
		}
	}
	return len(ips)
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// newHealthServer returns l's HTTP server. Its ConnState hook counts the
// connection goroutines in l.httpConns: net/http reports StateNew in Serve's
// goroutine before a connection's goroutine starts, and StateClosed or
// StateHijacked at its end.
func (n *NodePorts) newHealthServer(l *listener) *http.Server {
	return &http.Server{
		Handler:           l,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				l.httpConns.Add(1)
			case http.StateClosed, http.StateHijacked:
				l.httpConns.Done()
			}
		},
	}
}

// serveHealth serves l on ln until l.http is closed, then waits for its
// connection goroutines.
func (n *NodePorts) serveHealth(l *listener, ln net.Listener) {
	l.http.Serve(ln)
	l.httpConns.Wait()
}
