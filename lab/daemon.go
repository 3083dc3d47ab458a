// Package lab is podnet's local lab: a daemon per lab that holds the lab's objects (the Store),
// runs one node agent per node of the Lab document, and serves the CLI over unix sockets in the
// lab's state directory; and the client side of those sockets (lab up, down, apply, get, exec...).
//
// A lab's state directory is /run/podnet/<lab> as root and $XDG_RUNTIME_DIR/podnet/<lab>
// otherwise (/tmp/podnet-<uid>/<lab> without XDG_RUNTIME_DIR). It holds:
//
//	lab.json     the lab's identity (name, number)      daemon.pid  the daemon's process ID
//	store.json   every object, with status (pod IPs)     daemon.log  the daemon's log
//	lab.sock     the HTTP API                            exec.sock   exec, with descriptor passing
//	nodes/<node>/pods/<ns>_<pod>_<uid>/                  container logs and resolv.conf
//
// The daemon never touches the host's network configuration: pods live in network namespaces of
// their own (package sandbox), whose processes die with the daemon, so after a SIGKILL only this
// directory is left, and `lab up` starts again from store.json.
package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/ingress"
	"github.com/podnet/podnet/inspect"
	"github.com/podnet/podnet/internal/realtime"
	"github.com/podnet/podnet/internal/scavenge"
	"github.com/podnet/podnet/lab/podruntime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
)

// DaemonOptions configures RunDaemon.
type DaemonOptions struct {
	// Name is the lab's name.
	Name string
	// Dir is the lab's state directory. Empty means StateDir(Name).
	Dir string
	// Exe is the podnet binary. Empty means the running executable.
	Exe string
	// Logger receives the daemon's logs. Nil means discard.
	Logger *slog.Logger
}

// daemon is a running lab.
type daemon struct {
	opts  DaemonOptions
	log   *slog.Logger
	store *Store
	reg   *prometheus.Registry
	down  chan struct{} // closed by the /v1/down request

	mu       sync.Mutex              // guards agents and realtime
	agents   map[string]*nodeRunning // by node name
	realtime bool                    // the Lab's real-time priority was applied (or failed)
}

// nodeRunning is one node of the lab: its agent (the node's network) and its pod runtime (the
// node's kubelet and containerd), which attaches pods to the agent.
type nodeRunning struct {
	agent   *agentRef
	opts    agent.Options // how to make its agent again (restart-agent)
	runtime *podruntime.Runtime
	cancel  context.CancelFunc
	done    chan struct{}
}

// RunDaemon runs a lab until ctx ends (the state directory is kept, so that `lab up` resumes it)
// or a client asks it to go down (everything, the state directory too, is removed).
func RunDaemon(ctx context.Context, opts DaemonOptions) error {
	if opts.Dir == "" {
		opts.Dir = StateDir(opts.Name)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	id, err := readIdentity(opts.Dir)
	if err != nil {
		return err
	}
	// Memory a flood made the agents take goes back to the system once it is over.
	scavengeCtx, stopScavenge := context.WithCancel(ctx)
	scavenged := make(chan struct{})
	go func() {
		defer close(scavenged)
		scavenge.Run(scavengeCtx, scavenge.DefaultInterval, scavenge.DefaultThreshold)
	}()
	defer func() { stopScavenge(); <-scavenged }()
	store, err := OpenStore(filepath.Join(opts.Dir, "store.json"), id.Number)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(opts.Dir, "daemon.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d := &daemon{
		opts: opts, log: opts.Logger, store: store, reg: reg,
		down: make(chan struct{}), agents: map[string]*nodeRunning{},
	}

	apiLn, err := listenUnix(filepath.Join(opts.Dir, "lab.sock"))
	if err != nil {
		return err
	}
	execLn, err := listenUnix(filepath.Join(opts.Dir, "exec.sock"))
	if err != nil {
		apiLn.Close()
		return err
	}
	srv := &http.Server{Handler: d.routes(), ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(apiLn) }()
	go func() { defer wg.Done(); d.serveExec(execLn) }()

	changed, unsubscribe := store.Subscribe()
	d.syncAgents()
	d.log.Info("lab daemon started", "lab", opts.Name, "dir", opts.Dir, "pid", os.Getpid())
	removeAll := false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-d.down:
			removeAll = true
			break loop
		case <-changed:
			d.syncAgents()
		}
	}
	unsubscribe()
	d.stopAgents(nil)
	if err := store.Flush(); err != nil {
		d.log.Warn("save lab state", "err", err)
	}
	execLn.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(shutdownCtx)
	cancel()
	wg.Wait()
	d.log.Info("lab daemon stopped", "lab", opts.Name, "removed", removeAll)
	if removeAll {
		err := os.RemoveAll(opts.Dir)
		os.Remove(filepath.Dir(opts.Dir)) // the parent too, if this was its last lab
		return err
	}
	os.Remove(filepath.Join(opts.Dir, "lab.sock"))
	os.Remove(filepath.Join(opts.Dir, "exec.sock"))
	os.Remove(filepath.Join(opts.Dir, "daemon.pid"))
	return nil
}

func listenUnix(path string) (net.Listener, error) {
	os.Remove(path) // a leftover of a crashed daemon
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ownerListener{ln}, nil
}

// syncAgents starts an agent for every node of the lab that has none and stops the agents of
// nodes that left.
func (d *daemon) syncAgents() {
	lab, netw := d.store.Lab()
	if lab == nil {
		return
	}
	nodes := d.store.Nodes()
	want := map[string]*corev1.Node{}
	for _, n := range nodes {
		want[n.Name] = n
	}
	d.stopAgents(want)
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := netw.RealtimePriority; p > 0 && !d.realtime {
		// Before the agents start, so that every thread of their data paths inherits it; the
		// pods' processes leave it (sandbox-init).
		d.realtime = true
		if err := realtime.Enable(p); err != nil {
			d.log.Error("the lab's data paths run under the ordinary policy", "lab", d.opts.Name, "err", err)
		} else {
			d.log.Info("the lab's daemon runs under SCHED_RR", "lab", d.opts.Name, "priority", p)
		}
	}
	for _, n := range nodes {
		if _, ok := d.agents[n.Name]; ok {
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil {
			d.log.Error("node has no pod CIDR", "node", n.Name, "err", err)
			continue
		}
		addr, _ := netip.ParseAddr(nodeAddress(n))
		httpPort, httpsPort := netw.IngressPorts(Rootless())
		aopts := agent.Options{
			IngressHTTPPort:   httpPort,
			IngressHTTPSPort:  httpsPort,
			Ingress:           d,
			NodeName:          n.Name,
			NodeAddress:       addr,
			PodCIDR:           cidr,
			Network:           netw,
			Source:            d.store,
			Nodes:             d.store,
			StateDir:          filepath.Join(d.opts.Dir, "nodes", n.Name),
			Logger:            d.log.With("node", n.Name),
			Registerer:        prometheus.WrapRegistererWith(nil, d.reg),
			HostLoopback:      hostLoopback(netw),
			DisableFlows:      !netw.FlowLog,
			MaxNewFlowsPerPod: netw.MaxNewFlowsPerPod,
		}
		a, err := agent.New(aopts)
		if err != nil {
			d.log.Error("start node agent", "node", n.Name, "err", err)
			continue
		}
		ref := &agentRef{node: n.Name}
		ref.cur.Store(a)
		rt, err := podruntime.New(podruntime.Options{
			NodeName:      n.Name,
			NodeAddress:   addr,
			Source:        d.store,
			Status:        d.store,
			Network:       ref,
			Prober:        ref,
			ClusterDomain: netw.Domain,
			ClusterDNS:    netw.DNSIP,
			StateDir:      filepath.Join(d.opts.Dir, "nodes", n.Name),
			Exe:           d.opts.Exe,
			Logger:        d.log.With("node", n.Name, "component", "runtime"),
		})
		if err != nil {
			a.Close()
			d.log.Error("start node pod runtime", "node", n.Name, "err", err)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		nr := &nodeRunning{agent: ref, opts: aopts, runtime: rt, cancel: cancel, done: make(chan struct{})}
		d.agents[n.Name] = nr
		a.Start()
		go func() {
			defer close(nr.done)
			rt.Run(ctx)
			// The runtime has stopped, and its pods have detached: now the node's network goes.
			d.mu.Lock() // not during a restart-agent
			defer d.mu.Unlock()
			if a := ref.cur.Load(); a != nil {
				a.Close()
			}
		}()
	}
}

// stopAgents stops (and waits for) every agent whose node is not in keep.
func (d *daemon) stopAgents(keep map[string]*corev1.Node) {
	d.mu.Lock()
	var stopping []*nodeRunning
	for name, nr := range d.agents {
		if _, ok := keep[name]; !ok {
			nr.cancel()
			stopping = append(stopping, nr)
			delete(d.agents, name)
		}
	}
	d.mu.Unlock()
	for _, nr := range stopping {
		<-nr.done
	}
}

func (d *daemon) agentFor(node string) *agent.Agent {
	d.mu.Lock()
	defer d.mu.Unlock()
	if nr := d.agents[node]; nr != nil {
		return nr.agent.cur.Load()
	}
	return nil
}

// handleRestartAgent answers POST /v1/restart-agent?node=NODE: the node's agent is closed, as
// if killed, and a new one made with the same options takes its pods back (agent/restart.go).
// The pod runtime and the pods run on. It answers how long the node had no agent.
func (d *daemon) handleRestartAgent(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("node")
	d.mu.Lock()
	defer d.mu.Unlock()
	nr := d.agents[node]
	if nr == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("nodes %q not found in lab %s", node, d.opts.Name))
		return
	}
	old := nr.agent.cur.Swap(nil)
	if old == nil {
		writeError(w, http.StatusConflict, fmt.Errorf("node %s: its agent is not running", node))
		return
	}
	start := time.Now()
	old.Close()
	a, err := agent.New(nr.opts)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("node %s: restart its agent: %w", node, err))
		return
	}
	a.Start()
	nr.agent.cur.Store(a)
	gap := time.Since(start)
	d.log.Info("node agent restarted", "node", node, "gap", gap)
	writeJSON(w, http.StatusOK, map[string]string{"node": node, "gap": gap.String()})
}

func (d *daemon) runtimeFor(node string) *podruntime.Runtime {
	d.mu.Lock()
	defer d.mu.Unlock()
	if nr := d.agents[node]; nr != nil {
		return nr.runtime
	}
	return nil
}

func (d *daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/apply", d.handleApply)
	mux.HandleFunc("POST /v1/delete", d.handleDelete)
	mux.HandleFunc("GET /v1/objects", d.handleGet)
	mux.HandleFunc("GET /v1/status", d.handleStatus)
	mux.HandleFunc("GET /v1/logs", d.handleLogs)
	mux.HandleFunc("POST /v1/rotate-key", d.handleRotateKey)
	mux.HandleFunc("POST /v1/restart-agent", d.handleRestartAgent)
	insp := inspect.Handler(d.inspectAgents)
	mux.Handle("GET /v1/flows", insp)
	mux.Handle("GET /v1/capture", insp)
	mux.HandleFunc("GET /v1/policy/explain", d.handleExplain)
	mux.HandleFunc("POST /v1/down", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "stopping"})
		select {
		case <-d.down:
		default:
			close(d.down)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	// Profiles, on the owner-only socket: curl --unix-socket lab.sock http://lab/debug/pprof/profile
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	return mux
}

// apiError is the body of every failed request.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, apiError{Error: err.Error()})
}

// maxManifest bounds an applied manifest.
const maxManifest = 16 << 20

func (d *daemon) handleApply(w http.ResponseWriter, r *http.Request) {
	var manifests []Manifest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxManifest)).Decode(&manifests); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad apply request: %w", err))
		return
	}
	docs, err := decodeManifests(manifests)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	results, err := d.store.Apply(docs)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	writeJSON(w, http.StatusOK, results)
}

func (d *daemon) handleDelete(w http.ResponseWriter, r *http.Request) {
	var refs []ObjectRef
	if err := json.NewDecoder(io.LimitReader(r.Body, maxManifest)).Decode(&refs); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	results, err := d.store.Delete(refs)
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	writeJSON(w, http.StatusOK, results)
}

func (d *daemon) handleGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind, err := cluster.ParseKind(q.Get("kind"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	objs, err := d.store.Get(kind, q.Get("namespace"), q.Get("name"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if objs == nil {
		objs = nil
	}
	writeJSON(w, http.StatusOK, objectList{Kind: kind, Items: objs})
}

// Status is what `lab status` shows.
type Status struct {
	Name      string `json:"name"`
	Mode      string `json:"mode"` // root or rootless
	Dir       string `json:"dir"`
	PID       int    `json:"pid"`
	LabNumber int    `json:"labNumber"`
	// IngressHTTPPort and IngressHTTPSPort are where every node's Ingress
	// controller listens, on the node's address.
	IngressHTTPPort  uint16 `json:"ingressHTTPPort"`
	IngressHTTPSPort uint16 `json:"ingressHTTPSPort"`
	// HostLoopback says whether pods reach the host's 127.0.0.1 at their gateway.
	HostLoopback bool         `json:"hostLoopback"`
	Nodes        []NodeStatus `json:"nodes"`
}

// NodeStatus is one node in Status.
type NodeStatus struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	PodCIDR   string `json:"podCIDR"`
	Gateway   string `json:"gateway"`
	Pods      int    `json:"pods"`
	ReadyPods int    `json:"readyPods"`
}

func (d *daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	st := Status{Name: d.opts.Name, Mode: Mode(), Dir: d.opts.Dir, PID: os.Getpid()}
	_, netw := d.store.Lab()
	st.IngressHTTPPort, st.IngressHTTPSPort = netw.IngressPorts(Rootless())
	st.HostLoopback = netw.HostLoopback
	d.store.mu.Lock()
	st.LabNumber = d.store.state.LabNumber
	d.store.mu.Unlock()
	for _, n := range d.store.Nodes() {
		ns := NodeStatus{Name: n.Name, Address: nodeAddress(n), PodCIDR: n.Spec.PodCIDR}
		if a := d.agentFor(n.Name); a != nil {
			ns.Gateway = a.Gateway().String()
		}
		for _, p := range d.store.NodePods(n.Name) {
			ns.Pods++
			if podReady(p) {
				ns.ReadyPods++
			}
		}
		st.Nodes = append(st.Nodes, ns)
	}
	writeJSON(w, http.StatusOK, st)
}

func (d *daemon) handleLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns, name, container := q.Get("namespace"), q.Get("pod"), q.Get("container")
	objs, _ := d.store.Get(cluster.KindPod, ns, name)
	if len(objs) == 0 {
		writeError(w, http.StatusNotFound, fmt.Errorf("pods %q not found in namespace %q", name, ns))
		return
	}
	p := objs[0].(*corev1.Pod)
	if container == "" {
		if len(p.Spec.Containers) > 1 {
			var names []string
			for _, c := range p.Spec.Containers {
				names = append(names, c.Name)
			}
			writeError(w, http.StatusBadRequest, fmt.Errorf("a container name must be specified for pod %s, choose one of: %v", name, names))
			return
		}
		container = p.Spec.Containers[0].Name
	}
	rt := d.runtimeFor(p.Spec.NodeName)
	if rt == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("pod %s is not running on a node", name))
		return
	}
	f, err := os.Open(rt.LogPath(ns, name, p.UID, container))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("container %q in pod %q has no logs (it has not started; is it a container of the pod?)", container, name))
			return
		}
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain")
	io.Copy(w, f)
}

// decodeManifests decodes every manifest and reports the problems of all of them together.
func decodeManifests(ms []Manifest) ([]cluster.Document, error) {
	var docs []cluster.Document
	var errs []error
	for _, m := range ms {
		d, err := cluster.Decode(bytes.NewReader(m.Data), m.Source)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		docs = append(docs, d...)
	}
	return docs, errors.Join(errs...)
}

func (d *daemon) handleRotateKey(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("node")
	a := d.agentFor(node)
	if a == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("nodes %q not found in lab %s", node, d.opts.Name))
		return
	}
	pub, err := a.RotateKey()
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("node %s: %w", node, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"publicKey": pub.String()})
}

// ReportIngressProblems implements agent.IngressReporter: every node finds the same problems, so
// the latest report stands for all.
func (d *daemon) ReportIngressProblems(node string, problems []ingress.Problem) {
	m := map[string][]string{}
	for _, p := range problems {
		k := p.Namespace + "/" + p.Name
		m[k] = append(m[k], p.Field+": "+p.Message)
	}
	d.store.SetIngressProblems(m)
}

// hostLoopback is where the lab's pods reach the host at their gateway: its 127.0.0.1 when the Lab
// maps it (spec.hostLoopback, the default), else nowhere.
func hostLoopback(n cluster.Network) netip.Addr {
	if n.HostLoopback {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return netip.Addr{}
}
