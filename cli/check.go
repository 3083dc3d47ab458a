package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podnet/podnet/agent"
	"github.com/spf13/cobra"
)

// `podnet check` deploys a few pods of its own into a namespace of its own and tries every path a
// cluster network must carry, like `cilium connectivity test`. It works against a lab and against
// a Kubernetes cluster through a checkEnv; the cases are the same.

// checkEnv is where `podnet check` runs: a lab or a Kubernetes cluster.
type checkEnv interface {
	// describe names the target for the report.
	describe() string
	// nodes returns the nodes that run pods, with their addresses.
	nodes(ctx context.Context) ([]checkNode, error)
	// command is how the test pods' containers run podnet (its path in their image).
	command() string
	// image is the test pods' image ("" where the target has none, as in a lab).
	image(ctx context.Context) (string, error)
	// create makes the objects, in order.
	create(ctx context.Context, ns string, objs checkObjects) error
	// pods returns the namespace's pods by name.
	pods(ctx context.Context, ns string) (map[string]*corev1.Pod, error)
	// service returns a Service.
	service(ctx context.Context, ns, name string) (*corev1.Service, error)
	// exec runs argv in a pod and returns its standard output, or an error with its standard
	// error.
	exec(ctx context.Context, ns, pod string, argv []string) (string, error)
	// hostProbe runs a probe on node's host network (the lab's host, a node's network
	// namespace).
	hostProbe(ctx context.Context, node, kind, target, host, qtype string) (string, error)
	// hostTarget starts, or names, a TCP server on node's host that pods may reach (egress to
	// the host), and returns its address as a pod dials it; skip says why there is none.
	hostTarget(ctx context.Context, node checkNode) (addr string, stop func(), skip string, err error)
	// ingressPort is where the nodes' Ingress controllers serve HTTP (0: none).
	ingressPort(ctx context.Context) (uint16, error)
	// remove deletes what create made.
	remove(ctx context.Context, ns string, objs checkObjects) error
	// flows returns the flows the nodes saw lately (podnet flows).
	flows(ctx context.Context) ([]agent.FlowRecord, error)
}

// checkNode is a node the check uses.
type checkNode struct {
	name, address string
}

// checkObjects are the objects of a check.
type checkObjects struct {
	namespace *corev1.Namespace
	pods      []*corev1.Pod
	services  []*corev1.Service
	policies  []*networkingv1.NetworkPolicy
	ingresses []*networkingv1.Ingress
}

// checkResult is one case's outcome.
type checkResult struct {
	name   string
	status string // pass, fail, skip
	detail string
}

const (
	checkPass = "pass"
	checkFail = "fail"
	checkSkip = "skip"
)

// The check's pods and their roles.
const (
	checkLabel       = "check.podnet.dev/role"
	checkFriend      = "check.podnet.dev/friend"
	checkServerPort  = 8080
	checkIngressHost = "echo.check.podnet.test"
)

func newCheckCommand(g *globals) *cobra.Command {
	var (
		ns, kubeconfig, external string
		keep                     bool
		timeout                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check [--kubeconfig FILE] [--namespace NS] [--keep]",
		Short: "Test the network end to end: deploy test pods, try every path, print a pass/fail table",
		Long: `Deploy a few test pods into a namespace of the check's own (podnet-check) and try every path a
cluster network must carry:

  pod to pod on one node and across nodes, the client's address kept, a ClusterIP, a NodePort
  from a node, DNS (A, SRV, PTR, an outside name), Ingress, a NetworkPolicy that must deny and
  one that must allow, and egress from a pod to its node's host.

Each case prints pass, fail (with the reason) or skip (with why it could not run: one node only,
no outside DNS on the host). podnet check exits with status 1 if any case failed, and removes
what it created (--keep leaves it for a look). It runs against the lab, or with --kubeconfig
against a Kubernetes cluster running podnet (its test pods then run podnet's own image).`,
		Example: `  podnet check
  podnet check --kubeconfig ~/.kube/config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var env checkEnv
			if kubeconfig != "" {
				k, err := newKubeTarget(kubeconfig)
				if err != nil {
					return err
				}
				env = &kubeCheckEnv{k: k}
			} else {
				env = &labCheckEnv{c: g.client()}
			}
			results, err := runCheck(ctx, env, checkOptions{namespace: ns, keep: keep, timeout: timeout, external: external, log: g.stderr})
			if err != nil {
				return err
			}
			printCheck(g.stdout, env.describe(), results)
			for _, r := range results {
				if r.status == checkFail {
					return exitError{1}
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "check this Kubernetes cluster instead of the lab")
	f.StringVarP(&ns, "namespace", "n", "podnet-check", "the namespace of the test pods (made and removed by the check)")
	f.BoolVar(&keep, "keep", false, "leave the test pods and their namespace")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "how long the test pods may take to be ready")
	f.StringVar(&external, "external-name", "kubernetes.io", "the outside name the pods resolve")
	return cmd
}

// checkOptions configure runCheck.
type checkOptions struct {
	namespace string
	keep      bool
	timeout   time.Duration
	external  string
	log       io.Writer
	// retry, if not zero, replaces how long a case retries (checkRetryFor, checkDenyAfter).
	retry time.Duration
}

func printCheck(w io.Writer, target string, results []checkResult) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "CHECK (%s)\tRESULT\tDETAIL\n", target)
	pass, fail, skip := 0, 0, 0
	for _, r := range results {
		switch r.status {
		case checkPass:
			pass++
		case checkFail:
			fail++
		default:
			skip++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.name, r.status, r.detail)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", pass, fail, skip)
}

// checkPlan is where the check's pods run.
type checkPlan struct {
	a, b      checkNode // b == a on a single node
	crossNode bool
}

// checkManifests builds the check's objects: on node a a client and a server (a friend of the
// guarded pod); on node b the server behind the Services and the Ingress, and a pod that a
// NetworkPolicy guards.
func checkManifests(ns, image, command string, plan checkPlan) checkObjects {
	serve := []string{command, "serve", "--http", strconv.Itoa(checkServerPort)}
	pod := func(name, node, role string, labels map[string]string) *corev1.Pod {
		l := map[string]string{checkLabel: role}
		for k, v := range labels {
			l[k] = v
		}
		c := corev1.Container{
			Name: "check", Image: image, Command: serve,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: checkServerPort}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(checkServerPort)},
			}, PeriodSeconds: 1},
		}
		if image != "" {
			c.ImagePullPolicy = corev1.PullIfNotPresent
		}
		return &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{c},
				TerminationGracePeriodSeconds: ptrTo(int64(1))},
		}
	}
	svc := func(name string, typ corev1.ServiceType) *corev1.Service {
		return &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{Type: typ, Selector: map[string]string{checkLabel: "server-b"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
		}
	}
	prefix := networkingv1.PathTypePrefix
	class := "podnet"
	return checkObjects{
		namespace: &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		pods: []*corev1.Pod{
			pod("client", plan.a.name, "client", nil),
			pod("server-a", plan.a.name, "server-a", map[string]string{checkFriend: "true"}),
			pod("server-b", plan.b.name, "server-b", nil),
			pod("guarded", plan.b.name, "guarded", nil),
		},
		services: []*corev1.Service{svc("echo", corev1.ServiceTypeClusterIP), svc("echo-nodeport", corev1.ServiceTypeNodePort)},
		policies: []*networkingv1.NetworkPolicy{{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "guarded-friends-only"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{checkLabel: "guarded"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
					PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{checkFriend: "true"}},
				}}}},
			},
		}},
		ingresses: []*networkingv1.Ingress{{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "echo"},
			Spec: networkingv1.IngressSpec{IngressClassName: &class, Rules: []networkingv1.IngressRule{{
				Host: checkIngressHost,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
					Path: "/", PathType: &prefix,
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
						Name: "echo", Port: networkingv1.ServiceBackendPort{Name: "http"}}},
				}}}},
			}}},
		}},
	}
}

func ptrTo[T any](v T) *T { return &v }

// runCheck deploys the check, runs its cases and removes it.
func runCheck(ctx context.Context, env checkEnv, o checkOptions) ([]checkResult, error) {
	nodes, err := env.nodes(ctx)
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, errors.New("check: no node to run the test pods on")
	}
	plan := checkPlan{a: nodes[0], b: nodes[0]}
	if len(nodes) > 1 {
		plan.b, plan.crossNode = nodes[1], true
	}
	image, err := env.image(ctx)
	if err != nil {
		return nil, err
	}
	objs := checkManifests(o.namespace, image, env.command(), plan)
	if old, _ := env.pods(ctx, o.namespace); len(old) > 0 {
		fmt.Fprintf(o.log, "removing what an earlier check left in namespace %s\n", o.namespace)
		if err := env.remove(ctx, o.namespace, objs); err != nil {
			return nil, fmt.Errorf("check: namespace %s holds an earlier check that cannot be removed: %w", o.namespace, err)
		}
	}
	fmt.Fprintf(o.log, "deploying the check's pods in namespace %s (nodes %s and %s)\n", o.namespace, plan.a.name, plan.b.name)
	if err := env.create(ctx, o.namespace, objs); err != nil {
		env.remove(context.WithoutCancel(ctx), o.namespace, objs)
		return nil, fmt.Errorf("check: deploy the test pods: %w", err)
	}
	if !o.keep {
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := env.remove(rctx, o.namespace, objs); err != nil {
				fmt.Fprintf(o.log, "could not remove everything the check made in namespace %s: %v\n", o.namespace, err)
			}
		}()
	}
	pods, err := waitCheckPods(ctx, env, o.namespace, len(objs.pods), o.timeout)
	if err != nil {
		return nil, err
	}
	svc, err := env.service(ctx, o.namespace, "echo")
	if err != nil {
		return nil, err
	}
	np, err := env.service(ctx, o.namespace, "echo-nodeport")
	if err != nil {
		return nil, err
	}
	c := &checker{env: env, ns: o.namespace, pods: pods, plan: plan, start: time.Now(), retryFor: checkRetryFor, denyAfter: checkDenyAfter}
	if o.retry != 0 {
		c.retryFor, c.denyAfter = o.retry, o.retry
	}
	return c.run(ctx, svc, np, o.external), nil
}

// waitCheckPods waits until the check's n pods are ready and have addresses.
func waitCheckPods(ctx context.Context, env checkEnv, ns string, n int, timeout time.Duration) (map[string]*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		pods, err := env.pods(ctx, ns)
		if err == nil {
			var waiting []string
			for name, p := range pods {
				if p.Status.PodIP == "" || !podIsReady(p) {
					waiting = append(waiting, fmt.Sprintf("%s (%s)", name, p.Status.Phase))
				}
			}
			if len(pods) >= n && len(waiting) == 0 {
				return pods, nil
			}
			slices.Sort(waiting)
			last = "waiting for " + strings.Join(waiting, ", ")
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("check: the test pods were not ready in %v: %s", timeout, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// checker runs the cases.
type checker struct {
	env   checkEnv
	ns    string
	pods  map[string]*corev1.Pod
	plan  checkPlan
	start time.Time // flows before it are not the check's
	// retryFor and denyAfter are how long a case retries: checkRetryFor and checkDenyAfter.
	retryFor, denyAfter time.Duration
}

// outcome is the result of a case: a failure is explained by what the nodes' flow logs say of
// the flow from src (an address; "" for any) to dst (an address).
func (c *checker) outcome(ctx context.Context, name string, err error, pass, src string, dsts ...string) checkResult {
	r := result(name, err, pass)
	if err != nil {
		if why := c.why(ctx, src, dsts); why != "" {
			r.detail += "; " + why
		}
	}
	return r
}

// why looks in the flow log for a flow from src to one of dsts that a node denied or refused.
func (c *checker) why(ctx context.Context, src string, dsts []string) string {
	recs, err := c.env.flows(ctx)
	if err != nil {
		return ""
	}
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.Time.Before(c.start) || (src != "" && r.SourceIP != src) {
			continue
		}
		if !slices.ContainsFunc(dsts, func(dst string) bool { return r.DestIP == dst || strings.HasPrefix(r.ServiceIP, dst+":") }) {
			continue
		}
		switch r.Verdict {
		case "denied":
			return fmt.Sprintf("node %s: denied by NetworkPolicy %s (%s of %s)", r.Node, strings.Join(r.Policies, ", "),
				strings.ToLower(r.DeniedBy), map[bool]string{true: r.Source, false: r.Dest}[r.DeniedBy == "Egress"])
		case "no-endpoint":
			return fmt.Sprintf("node %s: Service %s has no ready endpoint", r.Node, r.Service)
		case "dropped":
			return fmt.Sprintf("node %s: dropped, its connection-tracking table full", r.Node)
		}
	}
	return ""
}

// The time a case retries for: NetworkPolicy, Services and DNS records reach the nodes
// asynchronously.
const (
	checkRetryFor  = 10 * time.Second
	checkDenyAfter = 10 * time.Second
)

// inPod runs a probe in pod, retrying until want accepts its output or checkRetryFor passed.
func (c *checker) inPod(ctx context.Context, pod string, want func(string) error, probe ...string) error {
	argv := append([]string{c.env.command(), "probe"}, probe...)
	return retry(ctx, c.retryFor, func() error {
		out, err := c.env.exec(ctx, c.ns, pod, argv)
		if err != nil {
			return err
		}
		return want(out)
	})
}

func retry(ctx context.Context, d time.Duration, try func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := try()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(min(time.Second, d/4)):
		}
	}
}

func anyOutput(string) error { return nil }

func equals(want string) func(string) error {
	return func(got string) error {
		if strings.TrimSpace(got) != want {
			return fmt.Errorf("got %q, want %q", strings.TrimSpace(got), want)
		}
		return nil
	}
}

func result(name string, err error, passDetail string) checkResult {
	if err != nil {
		return checkResult{name, checkFail, oneLine(err.Error())}
	}
	return checkResult{name, checkPass, passDetail}
}

func oneLine(s string) string {
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "error:"))
	return strings.Join(strings.Fields(s), " ")
}

func (c *checker) ip(pod string) string { return c.pods[pod].Status.PodIP }

func (c *checker) run(ctx context.Context, svc, np *corev1.Service, external string) []checkResult {
	var out []checkResult
	clientIP := c.ip("client")
	url := func(ip string, port int) string {
		return "http://" + net.JoinHostPort(ip, strconv.Itoa(port)) + "/clientip"
	}
	keptIP := func(got string) error {
		host, _, err := net.SplitHostPort(strings.TrimSpace(got))
		if err != nil {
			host = strings.TrimSpace(got)
		}
		if host != clientIP {
			return fmt.Errorf("the server saw %s, not the client's %s", host, clientIP)
		}
		return nil
	}

	// Pod to pod.
	err := c.inPod(ctx, "client", anyOutput, "http", url(c.ip("server-a"), checkServerPort))
	out = append(out, c.outcome(ctx, "pod to pod, same node", err, fmt.Sprintf("client → server-a on %s", c.plan.a.name), clientIP, c.ip("server-a")))
	if c.plan.crossNode {
		var seen string
		err = c.inPod(ctx, "client", func(s string) error { seen = s; return nil }, "http", url(c.ip("server-b"), checkServerPort))
		out = append(out, c.outcome(ctx, "pod to pod, across nodes", err, fmt.Sprintf("client on %s → server-b on %s", c.plan.a.name, c.plan.b.name), clientIP, c.ip("server-b")))
		if err == nil {
			out = append(out, result("client address kept", keptIP(seen), "the server saw "+clientIP))
		} else {
			out = append(out, checkResult{"client address kept", checkSkip, "no connection across nodes"})
		}
	} else {
		out = append(out, checkResult{"pod to pod, across nodes", checkSkip, "the cluster has one node"})
		err = c.inPod(ctx, "client", keptIP, "http", url(c.ip("server-a"), checkServerPort))
		out = append(out, result("client address kept", err, "the server saw "+clientIP))
	}

	// Services.
	err = c.inPod(ctx, "client", keptIP, "http", url(svc.Spec.ClusterIP, 80))
	out = append(out, c.outcome(ctx, "ClusterIP", err, fmt.Sprintf("client → %s:80 → server-b, client address kept", svc.Spec.ClusterIP), clientIP, svc.Spec.ClusterIP, c.ip("server-b")))
	nodePort := 0
	if len(np.Spec.Ports) > 0 {
		nodePort = int(np.Spec.Ports[0].NodePort)
	}
	if nodePort == 0 {
		out = append(out, checkResult{"NodePort from a node", checkFail, "the NodePort Service got no node port"})
	} else {
		target := c.plan.b
		err = retry(ctx, c.retryFor, func() error {
			_, err := c.env.hostProbe(ctx, c.plan.a.name, "http", url(target.address, nodePort), "", "")
			return err
		})
		out = append(out, c.outcome(ctx, "NodePort from a node", err, fmt.Sprintf("%s's host → %s:%d", c.plan.a.name, target.address, nodePort), "", c.ip("server-b")))
	}

	// DNS.
	fqdn := "echo." + c.ns + ".svc.cluster.local"
	err = c.inPod(ctx, "client", equals(svc.Spec.ClusterIP), "dns", "echo."+c.ns+".svc", "--type", "A")
	out = append(out, result("DNS A", err, "echo."+c.ns+".svc → "+svc.Spec.ClusterIP))
	err = c.inPod(ctx, "client", equals(fqdn+". 80"), "dns", "_http._tcp."+fqdn, "--type", "SRV")
	out = append(out, result("DNS SRV", err, "_http._tcp."+fqdn+" → port 80"))
	err = c.inPod(ctx, "client", equals(fqdn+"."), "dns", svc.Spec.ClusterIP, "--type", "PTR")
	out = append(out, result("DNS PTR", err, svc.Spec.ClusterIP+" → "+fqdn))
	if _, herr := c.env.hostProbe(ctx, c.plan.a.name, "dns", external, "", "A"); herr != nil {
		out = append(out, checkResult{"DNS outside name", checkSkip, fmt.Sprintf("%s's host cannot resolve %s either (%s)", c.plan.a.name, external, oneLine(herr.Error()))})
	} else {
		err = c.inPod(ctx, "client", anyOutput, "dns", external, "--type", "A")
		out = append(out, result("DNS outside name", err, external+" resolved through the cluster DNS"))
	}

	// Ingress.
	if port, perr := c.env.ingressPort(ctx); perr != nil || port == 0 {
		out = append(out, checkResult{"Ingress", checkSkip, "the nodes run no Ingress controller"})
	} else {
		target := c.plan.a
		err = retry(ctx, c.retryFor, func() error {
			_, err := c.env.hostProbe(ctx, target.name, "http", "http://"+net.JoinHostPort(target.address, strconv.Itoa(int(port)))+"/", checkIngressHost, "")
			return err
		})
		out = append(out, c.outcome(ctx, "Ingress", err, fmt.Sprintf("Host %s at %s:%d → echo → server-b", checkIngressHost, target.address, port), "", c.ip("server-b")))
	}

	// NetworkPolicy.
	guarded := url(c.ip("guarded"), checkServerPort)
	err = c.inPod(ctx, "server-a", anyOutput, "http", guarded)
	out = append(out, c.outcome(ctx, "NetworkPolicy allows", err, "server-a (a friend) → guarded", c.ip("server-a"), c.ip("guarded")))
	var lastErr error
	err = retry(ctx, c.denyAfter, func() error {
		_, lastErr = c.env.exec(ctx, c.ns, "client", []string{c.env.command(), "probe", "http", guarded, "--timeout", "2s"})
		if lastErr == nil {
			return errors.New("the client reached the guarded pod")
		}
		return nil
	})
	if err != nil {
		out = append(out, checkResult{"NetworkPolicy denies", checkFail, "client → guarded connected; guarded-friends-only should drop it"})
	} else {
		out = append(out, checkResult{"NetworkPolicy denies", checkPass, "client → guarded: " + oneLine(lastErr.Error())})
	}

	// Egress to the host.
	addr, stop, skip, err := c.env.hostTarget(ctx, c.plan.a)
	switch {
	case err != nil:
		out = append(out, checkResult{"egress to the host", checkFail, oneLine(err.Error())})
	case skip != "":
		out = append(out, checkResult{"egress to the host", checkSkip, skip})
	default:
		err = c.inPod(ctx, "client", anyOutput, "tcp", addr)
		stop()
		out = append(out, result("egress to the host", err, "client → "+addr+" on "+c.plan.a.name+"'s host"))
	}
	return out
}
