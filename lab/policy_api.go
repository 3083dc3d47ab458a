package lab

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/policy"
)

// inspectAgents returns the nodes' agents for the inspect API (flows, captures); a restarting
// node's is nil.
func (d *daemon) inspectAgents() map[string]*agent.Agent {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := make(map[string]*agent.Agent, len(d.agents))
	for name, n := range d.agents {
		m[name] = n.agent.cur.Load()
	}
	return m
}

// handleExplain answers GET /v1/policy/explain?from=NS/POD&to=NS/POD|IP&port=PORT/PROTO with the
// verdict of the cluster's NetworkPolicies on that flow and what decided it.
func (d *daemon) handleExplain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	flow, err := d.explainFlow(q.Get("from"), q.Get("to"), q.Get("port"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	t, _ := agent.CompilePolicy(d.store.NetworkPolicies(), d.store.Namespaces(), d.store.Pods())
	writeJSON(w, http.StatusOK, map[string]any{"allowed": t.Explain(flow).Allowed(), "text": t.Explain(flow).String()})
}

// explainFlow parses the flow of an explain request.
func (d *daemon) explainFlow(from, to, port string) (policy.Flow, error) {
	var f policy.Flow
	var err error
	if f.Src, err = d.podOrAddr(from, "--from"); err != nil {
		return f, err
	}
	if f.Dst, err = d.podOrAddr(to, "--to"); err != nil {
		return f, err
	}
	num, proto, _ := strings.Cut(port, "/")
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return f, fmt.Errorf("--port %q: want PORT or PORT/PROTOCOL, e.g. 80/TCP", port)
	}
	f.Port = uint16(n)
	switch strings.ToUpper(proto) {
	case "", "TCP":
		f.Proto = policy.TCP
	case "UDP":
		f.Proto = policy.UDP
	case "SCTP":
		f.Proto = policy.SCTP
	default:
		return f, fmt.Errorf("--port %q: protocol must be TCP, UDP or SCTP", port)
	}
	return f, nil
}

// podOrAddr resolves NS/POD (or POD, in namespace default) to the pod's address, or parses an IP.
func (d *daemon) podOrAddr(s, flag string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, fmt.Errorf("%s is required (NS/POD or an IP address)", flag)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok {
		ns, name = "default", s
	}
	for _, p := range d.store.Pods() {
		if p.Namespace == ns && p.Name == name {
			a, err := netip.ParseAddr(p.Status.PodIP)
			if err != nil {
				return netip.Addr{}, fmt.Errorf("%s: pod %s/%s has no IP yet", flag, ns, name)
			}
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s: %w: pod %s/%s", flag, errNoPod, ns, name)
}

var errNoPod = errors.New("not found")
