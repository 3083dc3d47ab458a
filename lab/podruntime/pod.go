package podruntime

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/sandbox"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Restart back-off of a container that keeps exiting: it starts at restartBackoffBase and doubles
// up to restartBackoffMax, and is forgotten after a container ran for restartBackoffReset. The
// kubelet uses 10 s and 5 min; a lab wants faster feedback.
const (
	restartBackoffBase  = time.Second
	restartBackoffMax   = time.Minute
	restartBackoffReset = 10 * time.Minute
)

// pod is one pod run by the runtime. Its goroutine (run) owns the sandbox and the containers.
type pod struct {
	r         *Runtime
	obj       *corev1.Pod // as first seen; the spec of a pod never changes
	namespace string
	name      string
	uid       types.UID

	stopOnce sync.Once
	stopc    chan time.Duration // receives the grace period when the pod must stop

	pubMu sync.Mutex // orders status snapshots and their writes (publish)

	mu         sync.Mutex // guards the fields below
	sb         *sandbox.Sandbox
	ip         netip.Addr
	resolvPath string
	status     corev1.PodStatus
	containers []*container
}

func newPod(r *Runtime, obj *corev1.Pod) *pod {
	return &pod{
		r:         r,
		obj:       obj,
		namespace: obj.Namespace,
		name:      obj.Name,
		uid:       obj.UID,
		stopc:     make(chan time.Duration, 1),
	}
}

// stop asks the pod to stop, giving its containers grace between SIGTERM and SIGKILL. It does
// not wait.
func (p *pod) stop(grace time.Duration) {
	p.stopOnce.Do(func() { p.stopc <- grace })
}

func (p *pod) gracePeriod() time.Duration {
	if g := p.obj.Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

func (p *pod) key() string { return p.namespace + "/" + p.name }

// run sets the pod up, runs it until it is stopped or ctx ends, and tears it down.
func (p *pod) run(ctx context.Context) {
	log := p.r.log.With("pod", p.key())
	now := metav1.Now()
	p.mu.Lock()
	p.status = *p.obj.Status.DeepCopy()
	p.status.Phase = corev1.PodPending
	p.status.HostIP = p.r.opts.NodeAddress.String()
	p.status.HostIPs = []corev1.HostIP{{IP: p.status.HostIP}}
	if p.status.StartTime == nil {
		p.status.StartTime = &now
	}
	p.mu.Unlock()

	// A failed setup is retried with back-off, as a kubelet retries a pod sandbox.
	var setup time.Duration
	for backoff := restartBackoffBase; ; backoff = min(2*backoff, restartBackoffMax) {
		start := time.Now()
		err := p.setupNetwork()
		if err == nil {
			setup = time.Since(start)
			break
		}
		log.Error("pod network setup failed", "err", err, "retry", backoff)
		p.mu.Lock()
		p.status.Reason = "NetworkSetupFailed"
		p.status.Message = err.Error()
		p.mu.Unlock()
		p.publish()
		select {
		case <-p.stopc:
			return
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	p.mu.Lock()
	p.status.Reason, p.status.Message = "", ""
	p.mu.Unlock()
	log.Info("pod network ready", "ip", p.ip, "setup", setup)

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	p.mu.Lock()
	setCondition(&p.status, corev1.PodReadyToStartContainers, true, "")
	setCondition(&p.status, corev1.PodInitialized, true, "")
	for i := range p.obj.Spec.Containers {
		c := newContainer(p, &p.obj.Spec.Containers[i])
		p.containers = append(p.containers, c)
	}
	p.updateStatusLocked()
	p.mu.Unlock()
	p.publish()
	for _, c := range p.containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(runCtx)
		}()
	}

	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	var grace time.Duration
	select {
	case grace = <-p.stopc:
	case <-ctx.Done():
		grace = p.r.opts.StopGrace
	case <-allDone:
		// Every container ended under restartPolicy Never/OnFailure: the pod is done, but
		// keeps its address and sandbox until it is deleted, as a kubelet keeps a completed
		// pod's record.
		select {
		case grace = <-p.stopc:
		case <-ctx.Done():
		}
	}
	var term sync.WaitGroup
	for _, c := range p.containers {
		term.Add(1)
		go func() {
			defer term.Done()
			c.terminate(grace)
		}()
	}
	term.Wait()
	cancel()
	wg.Wait()
	p.teardown()
	log.Info("pod stopped")
}

// setupNetwork makes the pod's network namespace and has the node's network attach it.
func (p *pod) setupNetwork() error {
	dir := p.r.podDir(p.namespace, p.name, p.uid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte(p.resolvConf()), 0o644); err != nil {
		return err
	}
	sb, err := sandbox.New()
	if err != nil {
		return err
	}
	// The address the pod had is kept across a lab restart, where it is still free.
	prev, _ := netip.ParseAddr(p.obj.Status.PodIP)
	res, err := p.r.opts.Network.Attach(context.Background(), attach.Request{
		ID:        string(p.uid),
		Namespace: p.namespace,
		Name:      p.name,
		NetNS:     sb.Path(),
		IP:        prev,
	})
	if err != nil {
		sb.Close()
		return err
	}
	p.mu.Lock()
	p.sb, p.ip, p.resolvPath = sb, res.IP, resolv
	p.status.PodIP = res.IP.String()
	p.status.PodIPs = []corev1.PodIP{{IP: res.IP.String()}}
	p.mu.Unlock()
	return nil
}

// resolvConf is the pod's /etc/resolv.conf, as the kubelet writes it: for dnsPolicy
// ClusterFirst (the default) the cluster DNS with the search path <ns>.svc.<domain> svc.<domain>
// <domain> and ndots:5; for Default the host's resolv.conf; for None nothing but dnsConfig. The
// pod's dnsConfig is merged in: nameservers and searches appended (at most 3 and 32), options
// replacing those of the same name.
func (p *pod) resolvConf() string {
	return podResolvConf(&p.obj.Spec, p.namespace, p.r.opts.ClusterDomain, p.r.opts.ClusterDNS.String(), hostResolvConf)
}

func ptrTo[T any](v T) *T { return &v }

// hostResolvConf is the host's resolv.conf, for dnsPolicy Default.
const hostResolvConf = "/etc/resolv.conf"

func podResolvConf(spec *corev1.PodSpec, ns, domain, dnsIP, hostFile string) string {
	var servers, searches []string
	var options []corev1.PodDNSConfigOption
	switch spec.DNSPolicy {
	case corev1.DNSNone:
	case corev1.DNSDefault:
		servers, searches, options = readResolvConf(hostFile)
	default: // ClusterFirst, ClusterFirstWithHostNet
		servers = []string{dnsIP}
		searches = []string{ns + ".svc." + domain, "svc." + domain, domain}
		options = []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptrTo("5")}}
	}
	if c := spec.DNSConfig; c != nil {
		servers = append(servers, c.Nameservers...)
		for _, s := range c.Searches {
			if !slices.Contains(searches, s) {
				searches = append(searches, s)
			}
		}
		for _, o := range c.Options {
			i := slices.IndexFunc(options, func(x corev1.PodDNSConfigOption) bool { return x.Name == o.Name })
			if i >= 0 {
				options[i] = o
			} else {
				options = append(options, o)
			}
		}
	}
	servers = servers[:min(len(servers), 3)]
	searches = searches[:min(len(searches), 32)]
	var b strings.Builder
	if len(searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(searches, " "))
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(options) > 0 {
		var opts []string
		for _, o := range options {
			if o.Value != nil {
				opts = append(opts, o.Name+":"+*o.Value)
			} else {
				opts = append(opts, o.Name)
			}
		}
		fmt.Fprintf(&b, "options %s\n", strings.Join(opts, " "))
	}
	return b.String()
}

// readResolvConf returns the nameservers, search domains and options of a resolv.conf file
// (nothing if it cannot be read).
func readResolvConf(path string) (servers, searches []string, options []corev1.PodDNSConfigOption) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers = append(servers, f[1])
		case "search", "domain":
			searches = f[1:]
		case "options":
			for _, o := range f[1:] {
				name, value, ok := strings.Cut(o, ":")
				opt := corev1.PodDNSConfigOption{Name: name}
				if ok {
					opt.Value = ptrTo(value)
				}
				options = append(options, opt)
			}
		}
	}
	return servers, searches, options
}

func (p *pod) teardown() {
	p.mu.Lock()
	sb := p.sb
	p.sb = nil
	p.mu.Unlock()
	if err := p.r.opts.Network.Detach(context.Background(), string(p.uid)); err != nil {
		p.r.log.Warn("detach pod", "pod", p.key(), "err", err)
	}
	if sb != nil {
		sb.Close()
	}
}

// env is the environment of a container (or of an exec in it).
func (p *pod) env(c *corev1.Container) []string {
	env := []string{
		"PATH=" + hostPath(),
		"HOSTNAME=" + p.name,
		"POD_NAME=" + p.name,
		"POD_NAMESPACE=" + p.namespace,
		"POD_IP=" + p.ip.String(),
		"NODE_NAME=" + p.r.opts.NodeName,
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			continue // validated away by the lab; field refs come with the env above
		}
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}

func hostPath() string {
	if p := os.Getenv("PATH"); p != "" {
		return p
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// argv resolves a container's command line; a command named podnet runs the lab's own binary.
func (p *pod) argv(args []string) []string {
	out := append([]string(nil), args...)
	if len(out) > 0 && out[0] == "podnet" {
		out[0] = p.r.opts.Exe
	}
	return out
}

func (p *pod) exec(container string, argv []string, stdin, stdout, stderr *os.File) (*sandbox.Process, error) {
	spec := &p.obj.Spec.Containers[0]
	if container != "" {
		spec = nil
		for i := range p.obj.Spec.Containers {
			if p.obj.Spec.Containers[i].Name == container {
				spec = &p.obj.Spec.Containers[i]
			}
		}
		if spec == nil {
			return nil, fmt.Errorf("container %s is not valid for pod %s: %w", container, p.name, ErrNotFound)
		}
	}
	p.mu.Lock()
	sb, resolv := p.sb, p.resolvPath
	p.mu.Unlock()
	if sb == nil {
		return nil, fmt.Errorf("pod %s has no running sandbox", p.key())
	}
	return p.r.runner.Start(sb, sandbox.ProcessSpec{
		Args: p.argv(argv), Env: p.env(spec), ResolvConf: resolv,
		Stdin: stdin, Stdout: stdout, Stderr: stderr,
	})
}

// publish sends the pod's current status to the StatusWriter. Snapshots are taken and written
// in one order (pubMu): otherwise two containers changing at once could race, an older snapshot
// landing last, and the pod would look unready for good.
func (p *pod) publish() {
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	p.mu.Lock()
	st := *p.status.DeepCopy()
	p.mu.Unlock()
	if err := p.r.opts.Status.UpdatePodStatus(p.namespace, p.name, p.uid, st); err != nil {
		p.r.log.Warn("update pod status", "pod", p.key(), "err", err)
	}
}

// updateStatusLocked recomputes phase, container statuses and conditions from the containers.
func (p *pod) updateStatusLocked() {
	st := &p.status
	st.ContainerStatuses = st.ContainerStatuses[:0]
	running, ready, succeeded, failed := 0, 0, 0, 0
	for _, c := range p.containers {
		cs := c.statusLocked()
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil && c.final:
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			} else {
				failed++
			}
		}
		if cs.Ready {
			ready++
		}
	}
	n := len(p.containers)
	switch {
	case n > 0 && succeeded == n:
		st.Phase = corev1.PodSucceeded
	case n > 0 && succeeded+failed == n:
		st.Phase = corev1.PodFailed
	case running > 0 || succeeded+failed > 0:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	allReady := n > 0 && ready == n
	setCondition(st, corev1.ContainersReady, allReady, "ContainersNotReady")
	setCondition(st, corev1.PodReady, allReady, "ContainersNotReady")
}

func setCondition(st *corev1.PodStatus, t corev1.PodConditionType, ok bool, reason string) {
	status := corev1.ConditionFalse
	if ok {
		status, reason = corev1.ConditionTrue, ""
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type == t {
			if c.Status != status {
				c.Status, c.Reason, c.LastTransitionTime = status, reason, metav1.Now()
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{
		Type: t, Status: status, Reason: reason, LastTransitionTime: metav1.Now(),
	})
}

// container runs one container of a pod under the pod's restart policy.
type container struct {
	p    *pod
	spec *corev1.Container
	log  string // log file

	procMu   sync.Mutex // guards proc and stopping
	proc     *sandbox.Process
	stopping bool // set by terminate: no new process may start

	// Guarded by p.mu:
	restarts  int32
	state     corev1.ContainerState
	lastState corev1.ContainerState
	ready     bool
	started   bool
	final     bool // terminated and will not restart
}

func newContainer(p *pod, spec *corev1.Container) *container {
	return &container{
		p:     p,
		spec:  spec,
		log:   p.r.LogPath(p.namespace, p.name, p.uid, spec.Name),
		state: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
	}
}

func (c *container) statusLocked() corev1.ContainerStatus {
	started := c.started
	return corev1.ContainerStatus{
		Name:                 c.spec.Name,
		Image:                c.spec.Image,
		State:                c.state,
		LastTerminationState: c.lastState,
		Ready:                c.ready,
		RestartCount:         c.restarts,
		Started:              &started,
	}
}

// run starts the container and restarts it as the pod's restartPolicy says, until ctx ends.
func (c *container) run(ctx context.Context) {
	p := c.p
	policy := p.obj.Spec.RestartPolicy
	backoff := restartBackoffBase
	var probeCancel context.CancelFunc = func() {}
	defer func() { probeCancel() }()
	for {
		logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			p.r.log.Error("open container log", "pod", p.key(), "container", c.spec.Name, "err", err)
			return
		}
		p.mu.Lock()
		sb, resolv := p.sb, p.resolvPath
		env := p.env(c.spec)
		p.mu.Unlock()
		began := time.Now()
		var proc *sandbox.Process
		c.procMu.Lock()
		if c.stopping || sb == nil {
			c.procMu.Unlock()
			logf.Close()
			return
		}
		proc, err = p.r.runner.Start(sb, sandbox.ProcessSpec{
			Args:       p.argv(append(append([]string(nil), c.spec.Command...), c.spec.Args...)),
			Env:        env,
			Dir:        c.spec.WorkingDir,
			ResolvConf: resolv,
			Stdout:     logf,
			Stderr:     logf,
		})
		c.proc = proc
		c.procMu.Unlock()
		logf.Close()
		code := 128
		if err == nil {
			p.mu.Lock()
			c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(began)}}
			c.started = true
			c.ready = c.spec.ReadinessProbe == nil
			p.updateStatusLocked()
			p.mu.Unlock()
			p.publish()
			var probeCtx context.Context
			probeCtx, probeCancel = context.WithCancel(ctx)
			if c.spec.ReadinessProbe != nil {
				go c.probeLoop(probeCtx)
			}
			code, _ = proc.Wait()
			probeCancel()
		} else {
			p.r.log.Error("start container", "pod", p.key(), "container", c.spec.Name, "err", err)
		}
		finished := time.Now()
		c.procMu.Lock()
		stopping := c.stopping
		c.procMu.Unlock()
		restart := !stopping && ctx.Err() == nil && (policy == corev1.RestartPolicyAlways || policy == "" ||
			(policy == corev1.RestartPolicyOnFailure && code != 0))
		reason := "Completed"
		if code != 0 {
			reason = "Error"
		}
		term := &corev1.ContainerStateTerminated{
			ExitCode: int32(code), Reason: reason,
			StartedAt: metav1.NewTime(began), FinishedAt: metav1.NewTime(finished),
		}
		if finished.Sub(began) > restartBackoffReset {
			backoff = restartBackoffBase
		}
		p.mu.Lock()
		c.ready = false
		if restart {
			c.lastState = corev1.ContainerState{Terminated: term}
			c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason:  "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", backoff, c.spec.Name, p.name),
			}}
		} else {
			c.state = corev1.ContainerState{Terminated: term}
			c.final = !stopping && ctx.Err() == nil
		}
		p.updateStatusLocked()
		p.mu.Unlock()
		if ctx.Err() == nil {
			p.publish()
		}
		if !restart {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, restartBackoffMax)
		p.mu.Lock()
		c.restarts++
		p.mu.Unlock()
	}
}

// terminate sends SIGTERM to the container and SIGKILL after grace, and returns once it is gone.
func (c *container) terminate(grace time.Duration) {
	c.procMu.Lock()
	c.stopping = true
	proc := c.proc
	c.procMu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = proc.Signal(syscall.SIGKILL)
		<-done
	}
}
