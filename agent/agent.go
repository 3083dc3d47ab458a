// Package agent is the node agent: the one package that joins the desired state (Kubernetes
// objects from a Source) to a node's data path (package stack) and its pod sandboxes (package
// sandbox). It is the only package that imports all of them; stack knows nothing of Kubernetes and
// cluster knows nothing of gVisor.
//
// The agent is level-triggered, like a kubelet: whenever the Source says something changed, it
// compares the pods bound to its node with the pods it runs, starts the missing ones and tears down
// the ones that are gone. Each pod is owned by one goroutine that sets up its network (address,
// namespace, TAP attached to the stack), runs its containers under their restart policy, probes
// readiness and reports status.
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
	"time"

	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/cluster/ipam"
	"github.com/podnet/podnet/clusterdns"
	"github.com/podnet/podnet/ingress"
	"github.com/podnet/podnet/overlay"
	"github.com/podnet/podnet/proxy"
	"github.com/podnet/podnet/sandbox"
	"github.com/podnet/podnet/stack"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Source is the desired state as the agent consumes it.
type Source interface {
	// NodePods returns the pods bound to node. The objects are shared: the agent never
	// modifies them.
	NodePods(node string) []*corev1.Pod
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

// StatusWriter receives pod status from the agent.
type StatusWriter interface {
	// UpdatePodStatus replaces the status of the pod namespace/name if its UID is still uid;
	// otherwise it does nothing and returns nil.
	UpdatePodStatus(namespace, name string, uid types.UID, status corev1.PodStatus) error
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
	// Source, Status and Nodes connect the agent to the desired state. All are required.
	Source Source
	Status StatusWriter
	Nodes  NodeWriter
	// StateDir holds the node's files: container logs and each pod's resolv.conf. Required.
	StateDir string
	// Exe is the podnet binary: a container command named "podnet" runs it, and so does the
	// sandbox init. Empty means the running executable.
	Exe string
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
	// StopGrace bounds how long a container gets between SIGTERM and SIGKILL when the agent
	// shuts down. Zero means 2 seconds. (A deleted pod gets its terminationGracePeriodSeconds.)
	StopGrace time.Duration
}

// Agent runs the pods of one node.
type Agent struct {
	opts    Options
	log     *slog.Logger
	stack   *stack.Stack
	overlay *overlay.Overlay
	pool    *ipam.Pool
	runner  *sandbox.Runner
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

	// policyState is owned by the goroutine of Run; flows keeps the latest policy verdicts.
	policyState policyState
	flows       flowLog

	mu   sync.Mutex         // guards pods
	pods map[types.UID]*pod // pods this agent runs
	wg   sync.WaitGroup     // pod goroutines
}

// New creates an agent and its node stack. Run starts it.
func New(opts Options) (*Agent, error) {
	if opts.Source == nil || opts.Status == nil || opts.Nodes == nil || opts.StateDir == "" || opts.NodeName == "" {
		return nil, errors.New("agent: NodeName, Source, Status, Nodes and StateDir are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = 2 * time.Second
	}
	if opts.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("agent: find own executable: %w", err)
		}
		opts.Exe = exe
	}
	pool, err := ipam.NewPool(opts.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("agent: node %s: %w", opts.NodeName, err)
	}
	px := proxy.New(proxy.Options{Logger: opts.Logger.With("component", "proxy")})
	st, err := stack.New(stack.Options{
		Logger:          opts.Logger.With("component", "stack"),
		PodCIDR:         opts.PodCIDR,
		Gateway:         pool.Gateway(),
		ClusterPrefixes: []netip.Prefix{opts.Network.ClusterCIDR, opts.Network.ServiceCIDR},
		MTU:             opts.Network.MTU,
		Services:        balancer{px},
		ServicePrefixes: []netip.Prefix{opts.Network.ServiceCIDR},
	})
	if err != nil {
		return nil, fmt.Errorf("agent: node %s: stack: %w", opts.NodeName, err)
	}
	for _, d := range []string{opts.StateDir, filepath.Join(opts.StateDir, "pods")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			st.Close()
			return nil, fmt.Errorf("agent: %w", err)
		}
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
		dns:     dnsSrv,
		opts:    opts,
		log:     opts.Logger,
		stack:   st,
		overlay: ov,
		pool:    pool,
		runner:  sandbox.NewRunner(sandbox.RunnerOptions{Exe: opts.Exe}),
		metrics: newMetrics(opts.Registerer, opts.NodeName),
		pods:    make(map[types.UID]*pod),
		proxy:   px,
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
	a.metrics.register(a)
	return a, nil
}

// Gateway returns the node's gateway address.
func (a *Agent) Gateway() netip.Addr { return a.pool.Gateway() }

// Stack returns the node's data path.
func (a *Agent) Stack() *stack.Stack { return a.stack }

// Run runs the node until ctx is done, then stops every pod (SIGTERM, then SIGKILL after
// StopGrace), closes the stack and returns.
func (a *Agent) Run(ctx context.Context) error {
	changed, cancel := a.opts.Source.Subscribe()
	defer cancel()
	a.log.Info("node agent started", "node", a.opts.NodeName, "podCIDR", a.opts.PodCIDR, "gateway", a.pool.Gateway(),
		"wireguard", a.overlay.PublicKey().String())
	if err := a.publishKey(); err != nil {
		a.log.Error("publish WireGuard key", "err", err)
	}
	a.reconcile(ctx)
	for {
		select {
		case <-ctx.Done():
			a.shutdown()
			return nil
		case <-changed:
			a.reconcile(ctx)
		}
	}
}

// reconcile starts the pods of this node that do not run yet and stops those that are gone.
func (a *Agent) reconcile(ctx context.Context) {
	a.syncPeers()
	a.syncServices()
	a.syncDNS()
	a.syncPolicy()
	a.syncIngress()
	want := make(map[types.UID]*corev1.Pod)
	for _, p := range a.opts.Source.NodePods(a.opts.NodeName) {
		if isTerminal(p) && !a.running(p.UID) {
			continue
		}
		want[p.UID] = p
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for uid, p := range a.pods {
		if _, ok := want[uid]; !ok {
			p.stop(p.gracePeriod())
			delete(a.pods, uid)
		}
	}
	for uid, obj := range want {
		if _, ok := a.pods[uid]; ok {
			continue
		}
		p := newPod(a, obj)
		a.pods[uid] = p
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			p.run(ctx)
		}()
	}
}

func (a *Agent) running(uid types.UID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.pods[uid]
	return ok
}

func (a *Agent) shutdown() {
	a.mu.Lock()
	for uid, p := range a.pods {
		p.stop(a.opts.StopGrace)
		delete(a.pods, uid)
	}
	a.mu.Unlock()
	a.wg.Wait()
	a.runner.Close()
	a.metrics.unregister()
	if err := a.nodePorts.Close(); err != nil {
		a.log.Warn("close NodePorts", "err", err)
	}
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

// ErrNotFound is returned by Exec for a pod or container this agent does not run.
var ErrNotFound = errors.New("not found")

// Exec runs argv in the network namespace of a running pod, with the environment of one of its
// containers (container "" means the first) and the given standard files.
func (a *Agent) Exec(namespace, name, container string, argv []string, stdin, stdout, stderr *os.File) (*sandbox.Process, error) {
	a.mu.Lock()
	var found *pod
	for _, p := range a.pods {
		if p.namespace == namespace && p.name == name {
			found = p
		}
	}
	a.mu.Unlock()
	if found == nil {
		return nil, fmt.Errorf("pod %s/%s: %w on node %s", namespace, name, ErrNotFound, a.opts.NodeName)
	}
	return found.exec(container, argv, stdin, stdout, stderr)
}

// LogPath returns the file that holds the logs of a container.
func (a *Agent) LogPath(namespace, name string, uid types.UID, container string) string {
	return filepath.Join(a.podDir(namespace, name, uid), container+".log")
}

func (a *Agent) podDir(namespace, name string, uid types.UID) string {
	return filepath.Join(a.opts.StateDir, "pods", fmt.Sprintf("%s_%s_%s", namespace, name, uid))
}

func isTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
