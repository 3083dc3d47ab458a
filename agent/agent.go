// Package agent is the node agent: the one package that joins the desired state (Kubernetes
// objects from a Source) to a node's data path (package stack), its overlay, Services, DNS,
// NetworkPolicy and Ingress. It is the only package that imports all of them; stack knows
// nothing of Kubernetes and cluster knows nothing of gVisor.
//
// The agent is the node's network and nothing else. It does not run containers: a pod's runtime
// (the lab's pod runtime, or containerd through podnet-cni) makes the pod's network namespace and
// hands it over with Attach (package attach), and takes it back with Detach. Everything else is
// level-triggered: whenever the Source says something changed, the agent recomputes its peers,
// Service table, DNS records, policy and Ingress routes from the whole state.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/cluster/ipam"
	"github.com/podnet/podnet/clusterdns"
	"github.com/podnet/podnet/ingress"
	"github.com/podnet/podnet/overlay"
	"github.com/podnet/podnet/proxy"
	"github.com/podnet/podnet/stack"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Source is the desired state as the agent consumes it. Every list is sorted by namespace, then
// name, so nothing in the agent depends on the order a store or lister keeps objects in; a
// Source hands out nothing partial (the Kubernetes one lists nothing until its informers have
// synced).
type Source interface {
	// Nodes returns every node of the cluster. The objects are shared.
	Nodes() []*corev1.Node
	// Services returns every Service and EndpointSlices every EndpointSlice of the cluster. The
	// objects are shared; a changed object is a new object, so an unchanged pointer means an
	// unchanged object.
	Services() []*corev1.Service
	EndpointSlices() []*discoveryv1.EndpointSlice
	// NetworkPolicies, Namespaces and Pods return every object of their kind in the cluster, by
	// the same rules.
	NetworkPolicies() []*networkingv1.NetworkPolicy
	Namespaces() []*corev1.Namespace
	Pods() []*corev1.Pod
	Ingresses() []*networkingv1.Ingress
	Secrets() []*corev1.Secret
	// Subscribe returns a channel that receives a value after every change of the state (sends
	// are coalesced: one value may stand for several changes), and a function that ends the
	// subscription.
	Subscribe() (<-chan struct{}, func())
}

// NodeWriter receives what the agent publishes about its node.
type NodeWriter interface {
	// UpdateNodeAnnotations sets annotations of the Node named node, keeping the others.
	UpdateNodeAnnotations(node string, ann map[string]string) error
}

// IngressReporter receives the problems the node's Ingress controller found in Ingresses.
type IngressReporter interface {
	// ReportIngressProblems replaces what node reported before: the problems of every invalid
	// Ingress rule it skipped (none: all are fine).
	ReportIngressProblems(node string, problems []ingress.Problem)
}

// Options configures an Agent.
type Options struct {
	// NodeName is the node this agent runs.
	NodeName string
	// NodeAddress is the node's address (the pods' hostIP).
	NodeAddress netip.Addr
	// PodCIDR is the node's pod range; its first host address is the pods' gateway.
	PodCIDR netip.Prefix
	// Network is the cluster-wide network configuration.
	Network cluster.Network
	// Source and Nodes connect the agent to the desired state. Both are required.
	Source Source
	Nodes  NodeWriter
	// StateDir holds the node's files (its WireGuard key). Required.
	StateDir string
	// RunDir holds what lives as long as the node's pods and no longer: the records of the
	// attached pods and the connection-tracking table, which a restarted agent takes back
	// (restart.go). It belongs on a tmpfs (/run). Empty means StateDir.
	RunDir string
	// Logger receives the agent's logs. Nil means discard.
	Logger *slog.Logger
	// Registerer receives the agent's metrics. Nil means none are registered.
	Registerer prometheus.Registerer
	// IngressHTTPPort and IngressHTTPSPort are where the node's Ingress controller listens on
	// NodeAddress; both zero means no Ingress controller. A port that cannot be opened (taken, or
	// below 1024 for a rootless lab) is logged and left closed; the node runs on.
	IngressHTTPPort, IngressHTTPSPort uint16
	// Ingress, if set, is told the problems of invalid Ingresses (for `podnet get ingress`).
	Ingress IngressReporter
	// HostLoopback, if valid, is where the pods' connections to their gateway go (on the same
	// port): the lab's hostLoopback setting maps the host's 127.0.0.1 there. The zero Addr (as in
	// Kubernetes mode) refuses them: a pod must not reach the node's loopback services.
	HostLoopback netip.Addr
	// MaxNewFlowsPerPod bounds the new flows each pod may start a second (stack.Options):
	// 0 is the data path's default, negative no bound.
	MaxNewFlowsPerPod int
	// DisableFlows turns the flow log off (flows.go): no new flow is named or kept, and the data
	// path does not look for them.
	DisableFlows bool
	// NodeInterface, if set, is the name of the node's own interface to its pods (Kubernetes
	// mode: "podnet0"): a TAP the agent makes in its own network namespace (the node's), holding
	// NodeLinkAddress, with routes for the cluster and service CIDRs through the data path, so
	// the kubelet's probes, hostNetwork pods and the API server reach pods and ClusterIPs. Close
	// removes it.
	NodeInterface string
}

// Agent is one node's network.
type Agent struct {
	opts    Options
	log     *slog.Logger
	stack   *stack.Stack
	overlay *overlay.Overlay
	pool    *ipam.Pool
	metrics *metrics

	// proxy is the node's Service table, nodePorts its host listeners; svcState is owned by the
	// goroutine of Run.
	proxy     *proxy.Proxy
	nodePorts *proxy.NodePorts
	svcState  serviceState

	// dns is the node's cluster DNS server, answering its pods at the Lab's dnsIP; dnsState is
	// owned by the goroutine of Run.
	dns      *clusterdns.Server
	dnsState dnsState

	// ingress is the node's Ingress controller (nil: none); ingressState is owned by Run.
	ingress      *ingress.Controller
	ingressState ingressState

	// policyState is owned by the goroutine of Run; flows keeps the latest flows (flows.go).
	policyState policyState
	flows       flowLog

	cancel    context.CancelFunc // ends run; nil until Start
	wg        sync.WaitGroup     // run
	closeOnce sync.Once
	ready     atomic.Bool // between Start and Close

	amu       sync.Mutex             // guards attached, attaching, closed
	attached  map[string]*attachment // by attachment ID
	attaching map[string]bool        // IDs whose Attach is under way: true once a Detach asked to undo it
	closed    bool                   // shut down: no new attachments
	inflight  sync.WaitGroup         // Attach calls under way

	nodeLink *attachment // the node's own interface (Options.NodeInterface); nil if none
	recorded []podRecord // attachments of an earlier agent, reserved by New, adopted by Start

	hostPortGen     atomic.Uint64                  // counts changes of the attached pods' hostPorts
	hostPortServers map[netip.Addr]*hostPortServer // by listening address; owned by Run's goroutine
	kick            chan struct{}                  // wakes run to bring the hostPorts up to date
}

// New creates an agent and its node's data path, overlay, DNS and listeners. Start starts it;
// Close releases everything, started or not.
func New(opts Options) (*Agent, error) {
	if opts.Source == nil || opts.Nodes == nil || opts.StateDir == "" || opts.NodeName == "" {
		return nil, errors.New("agent: NodeName, Source, Nodes and StateDir are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	pool, err := ipam.NewPool(opts.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("agent: node %s: %w", opts.NodeName, err)
	}
	px := proxy.New(proxy.Options{Logger: opts.Logger.With("component", "proxy")})
	runDir := opts.RunDir
	if runDir == "" {
		runDir = opts.StateDir
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	st, err := stack.New(stack.Options{
		ConntrackFile:     filepath.Join(runDir, "conntrack"),
		Logger:            opts.Logger.With("component", "stack"),
		PodCIDR:           opts.PodCIDR,
		Gateway:           pool.Gateway(),
		ClusterPrefixes:   []netip.Prefix{opts.Network.ClusterCIDR, opts.Network.ServiceCIDR},
		MTU:               opts.Network.MTU,
		Services:          balancer{px},
		ServicePrefixes:   []netip.Prefix{opts.Network.ServiceCIDR},
		HostLoopback:      opts.HostLoopback,
		MaxNewFlowsPerPod: opts.MaxNewFlowsPerPod,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: node %s: stack: %w", opts.NodeName, err)
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		st.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	key, err := overlay.LoadOrCreateKey(filepath.Join(opts.StateDir, "wireguard.key")) // mode 0600
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("agent: node %s: WireGuard key: %w", opts.NodeName, err)
	}
	ov, err := overlay.New(overlay.Options{
		Logger:     opts.Logger.With("component", "overlay"),
		PrivateKey: key,
		ListenAddr: netip.AddrPortFrom(opts.NodeAddress, WireGuardPort),
		MTU:        opts.Network.MTU,
		Deliver:    st.DeliverFromOverlay,
	})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("agent: node %s: WireGuard on %v: %w", opts.NodeName, netip.AddrPortFrom(opts.NodeAddress, WireGuardPort), err)
	}
	dnsSrv, err := clusterdns.New(clusterdns.Options{
		Domain:    opts.Network.Domain,
		DNSIP:     opts.Network.DNSIP,
		Upstreams: opts.Network.Upstreams,
		Logger:    opts.Logger.With("component", "dns"),
	})
	if err != nil {
		ov.Close()
		st.Close()
		return nil, fmt.Errorf("agent: node %s: cluster DNS: %w", opts.NodeName, err)
	}
	if err := st.SetLocalService(netip.AddrPortFrom(opts.Network.DNSIP, dnsPort), dnsDatagrams{dnsSrv}, dnsSrv.ServeConn); err != nil {
		dnsSrv.Close()
		ov.Close()
		st.Close()
		return nil, fmt.Errorf("agent: node %s: cluster DNS: %w", opts.NodeName, err)
	}
	a := &Agent{
		dns:       dnsSrv,
		opts:      opts,
		log:       opts.Logger,
		stack:     st,
		overlay:   ov,
		pool:      pool,
		metrics:   newMetrics(opts.Registerer, opts.NodeName),
		attached:  make(map[string]*attachment),
		attaching: make(map[string]bool),
		proxy:     px,
		kick:      make(chan struct{}, 1),

		hostPortServers: make(map[netip.Addr]*hostPortServer),
	}
	a.flows.node = opts.NodeName
	if !opts.DisableFlows {
		st.SetFlowObserver(a.flows.observe)
	}
	a.nodePorts = proxy.NewNodePorts(proxy.NodePortOptions{
		Address: opts.NodeAddress,
		Proxy:   px,
		Dialer:  st,
		Logger:  opts.Logger.With("component", "nodeports"),
	})
	if opts.IngressHTTPPort != 0 || opts.IngressHTTPSPort != 0 {
		ctrl, err := ingress.New(ingress.Options{
			Address:   opts.NodeAddress,
			HTTPPort:  opts.IngressHTTPPort,
			HTTPSPort: opts.IngressHTTPSPort,
			Dialer:    ingressDialer{st},
			Logger:    opts.Logger.With("component", "ingress"),
		})
		if err != nil {
			a.log.Error("no Ingress controller on this node", "err", err)
		} else {
			a.ingress = ctrl
		}
	}
	a.reserveRecorded()
	if opts.NodeInterface != "" {
		if err := a.attachNode(); err != nil {
			a.shutdown()
			return nil, fmt.Errorf("agent: node %s: %w", opts.NodeName, err)
		}
	}
	a.metrics.register(a)
	return a, nil
}

// Gateway returns the node's gateway address.
func (a *Agent) Gateway() netip.Addr { return a.pool.Gateway() }

// Stack returns the node's data path.
func (a *Agent) Stack() *stack.Stack { return a.stack }

// Start publishes the node's WireGuard key, brings the node's network up to date with the
// Source, takes back the pods an earlier agent of the node left attached (restart.go), and then
// keeps the network in step with the Source until Close. Call it once.
func (a *Agent) Start() {
	changed, unsubscribe := a.opts.Source.Subscribe()
	a.log.Info("node agent started", "node", a.opts.NodeName, "podCIDR", a.opts.PodCIDR, "gateway", a.pool.Gateway(),
		"wireguard", a.overlay.PublicKey().String())
	if err := a.publishKey(); err != nil {
		a.log.Error("publish WireGuard key", "err", err)
	}
	a.reconcile()
	if n := a.adopt(); n > 0 {
		a.hostPortsChanged()
		if err := a.overlay.Handshake(); err != nil {
			a.log.Warn("start WireGuard handshakes", "err", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Go(func() {
		defer unsubscribe()
		a.run(ctx, changed)
	})
	a.ready.Store(true)
}

// Close stops the agent: it stops following the Source, closes the node's listeners, DNS,
// overlay and data path, and returns once every goroutine the agent started has ended. Pods
// still attached keep their interfaces, and their records and connection tracking stay in
// RunDir, for the agent that follows (a restart); a runtime that removes its pods detaches them
// first. Later calls do nothing.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.ready.Store(false)
		if a.cancel != nil {
			a.cancel()
		}
		a.wg.Wait()
		a.shutdown()
	})
	return nil
}

func (a *Agent) run(ctx context.Context, changed <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			a.reconcile()
		case <-a.kick:
			a.syncServices()
		}
	}
}

// reconcile brings the node's network up to date with the desired state.
func (a *Agent) reconcile() {
	a.syncPeers()
	a.syncServices()
	a.syncDNS()
	a.syncPolicy()
	a.syncIngress()
	a.flows.setNames(a.opts.Source.Pods(), a.opts.Source.Services(), a.NodeLinkAddress())
}

func (a *Agent) shutdown() {
	a.stopAttaching()
	if a.nodeLink != nil {
		a.release(a.nodeLink)
	}
	a.metrics.unregister()
	if err := a.nodePorts.Close(); err != nil {
		a.log.Warn("close NodePorts", "err", err)
	}
	a.closeHostPorts()
	if a.ingress != nil {
		if err := a.ingress.Close(); err != nil {
			a.log.Warn("close Ingress controller", "err", err)
		}
	}
	if err := a.dns.Close(); err != nil {
		a.log.Warn("close cluster DNS", "err", err)
	}
	if err := a.overlay.Close(); err != nil {
		a.log.Warn("close overlay", "err", err)
	}
	if err := a.stack.Close(); err != nil {
		a.log.Warn("close stack", "err", err)
	}
	a.log.Info("node agent stopped", "node", a.opts.NodeName)
}
