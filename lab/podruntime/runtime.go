// Package podruntime is the lab's pod runtime: the part a kubelet and containerd play in
// Kubernetes. For the pods bound to its node it makes each pod's network namespace (package
// sandbox), has the node's network attach it (package attach: the same call podnet-cni makes for
// containerd), runs the containers as processes of the host's filesystem under their restart
// policy, probes readiness from the node as a kubelet does, and reports pod status.
//
// It is level-triggered, like a kubelet: whenever the Source says something changed, it compares
// the pods bound to its node with the pods it runs, starts the missing ones and tears down the
// ones that are gone. Each pod is owned by one goroutine.
//
// It knows nothing of the data path: the network is an attach.Attacher, and probes dial through
// a Dialer. It must never import the agent.
package podruntime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/sandbox"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Source is the desired state as the runtime consumes it.
type Source interface {
	// NodePods returns the pods bound to node. The objects are shared: the runtime never
	// modifies them.
	NodePods(node string) []*corev1.Pod
	// Subscribe returns a channel that receives a value after every change of the state (sends
	// are coalesced), and a function that ends the subscription.
	Subscribe() (<-chan struct{}, func())
}

// StatusWriter receives pod status from the runtime.
type StatusWriter interface {
	// UpdatePodStatus replaces the status of the pod namespace/name if its UID is still uid;
	// otherwise it does nothing and returns nil.
	UpdatePodStatus(namespace, name string, uid types.UID, status corev1.PodStatus) error
}

// Dialer opens TCP connections from the node to a pod, for tcpSocket and httpGet probes.
type Dialer interface {
	// DialContextTCP connects to addr, or fails when ctx ends first.
	DialContextTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
}

// Options configures a Runtime.
type Options struct {
	// NodeName is the node this runtime runs pods for; NodeAddress its address (the pods'
	// hostIP).
	NodeName    string
	NodeAddress netip.Addr
	// Source, Status, Network and Prober are required: the pods to run, where their status
	// goes, the node's network (the agent) and how probes reach pods (the node's data path).
	Source  Source
	Status  StatusWriter
	Network attach.Attacher
	Prober  Dialer
	// ClusterDomain and ClusterDNS make the resolv.conf of pods with dnsPolicy ClusterFirst, as
	// the kubelet's clusterDomain and clusterDNS do.
	ClusterDomain string
	ClusterDNS    netip.Addr
	// StateDir holds the node's pod files: container logs and each pod's resolv.conf. Required.
	StateDir string
	// Exe is the podnet binary: a container command named "podnet" runs it, and so does the
	// sandbox init. Empty means the running executable.
	Exe string
	// Logger receives the runtime's logs. Nil means discard.
	Logger *slog.Logger
	// StopGrace bounds how long a container gets between SIGTERM and SIGKILL when the runtime
	// shuts down. Zero means 2 seconds. (A deleted pod gets its terminationGracePeriodSeconds.)
	StopGrace time.Duration
}

// Runtime runs the pods of one node.
type Runtime struct {
	opts   Options
	log    *slog.Logger
	runner *sandbox.Runner

	mu   sync.Mutex         // guards pods
	pods map[types.UID]*pod // pods this runtime runs
	wg   sync.WaitGroup     // pod goroutines
}

// New creates a runtime. Run starts it.
func New(opts Options) (*Runtime, error) {
	if opts.Source == nil || opts.Status == nil || opts.Network == nil || opts.Prober == nil || opts.StateDir == "" || opts.NodeName == "" {
		return nil, errors.New("podruntime: NodeName, Source, Status, Network, Prober and StateDir are required")
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
			return nil, fmt.Errorf("podruntime: find own executable: %w", err)
		}
		opts.Exe = exe
	}
	if err := os.MkdirAll(filepath.Join(opts.StateDir, "pods"), 0o700); err != nil {
		return nil, fmt.Errorf("podruntime: %w", err)
	}
	return &Runtime{
		opts:   opts,
		log:    opts.Logger,
		runner: sandbox.NewRunner(sandbox.RunnerOptions{Exe: opts.Exe}),
		pods:   make(map[types.UID]*pod),
	}, nil
}

// Run runs the node's pods until ctx is done, then stops every pod (SIGTERM, then SIGKILL after
// StopGrace), detaches them from the network, and returns once all are gone.
func (r *Runtime) Run(ctx context.Context) error {
	changed, cancel := r.opts.Source.Subscribe()
	defer cancel()
	r.reconcile(ctx)
	for {
		select {
		case <-ctx.Done():
			r.shutdown()
			return nil
		case <-changed:
			r.reconcile(ctx)
		}
	}
}

// reconcile starts the pods of this node that do not run yet and stops those that are gone.
func (r *Runtime) reconcile(ctx context.Context) {
	want := make(map[types.UID]*corev1.Pod)
	for _, p := range r.opts.Source.NodePods(r.opts.NodeName) {
		if isTerminal(p) && !r.running(p.UID) {
			continue
		}
		want[p.UID] = p
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for uid, p := range r.pods {
		if _, ok := want[uid]; !ok {
			p.stop(p.gracePeriod())
			delete(r.pods, uid)
		}
	}
	for uid, obj := range want {
		if _, ok := r.pods[uid]; ok {
			continue
		}
		p := newPod(r, obj)
		r.pods[uid] = p
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			p.run(ctx)
		}()
	}
}

func (r *Runtime) running(uid types.UID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.pods[uid]
	return ok
}

func (r *Runtime) shutdown() {
	r.mu.Lock()
	for uid, p := range r.pods {
		p.stop(r.opts.StopGrace)
		delete(r.pods, uid)
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.runner.Close()
}

// ErrNotFound is returned by Exec for a pod or container this runtime does not run.
var ErrNotFound = errors.New("not found")

// Exec runs argv in the network namespace of a running pod, with the environment of one of its
// containers (container "" means the first) and the given standard files.
func (r *Runtime) Exec(namespace, name, container string, argv []string, stdin, stdout, stderr *os.File) (*sandbox.Process, error) {
	r.mu.Lock()
	var found *pod
	for _, p := range r.pods {
		if p.namespace == namespace && p.name == name {
			found = p
		}
	}
	r.mu.Unlock()
	if found == nil {
		return nil, fmt.Errorf("pod %s/%s: %w on node %s", namespace, name, ErrNotFound, r.opts.NodeName)
	}
	return found.exec(container, argv, stdin, stdout, stderr)
}

// LogPath returns the file that holds the logs of a container.
func (r *Runtime) LogPath(namespace, name string, uid types.UID, container string) string {
	return filepath.Join(r.podDir(namespace, name, uid), container+".log")
}

func (r *Runtime) podDir(namespace, name string, uid types.UID) string {
	return filepath.Join(r.opts.StateDir, "pods", fmt.Sprintf("%s_%s_%s", namespace, name, uid))
}

func isTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
