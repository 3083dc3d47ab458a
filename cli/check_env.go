package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/lab"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// labCheckEnv runs the check in a lab: its pods run the host's podnet, and the lab's host is every
// node's host.
type labCheckEnv struct{ c *lab.Client }

func (e *labCheckEnv) describe() string { return "lab " + e.c.Name }
func (e *labCheckEnv) command() string  { return "podnet" }
func (e *labCheckEnv) image(context.Context) (string, error) {
	return "", nil
}

func (e *labCheckEnv) nodes(context.Context) ([]checkNode, error) {
	st, err := e.c.Status()
	if err != nil {
		return nil, err
	}
	var out []checkNode
	for _, n := range st.Nodes {
		out = append(out, checkNode{name: n.Name, address: n.Address})
	}
	return out, nil
}

func (o checkObjects) all() []runtime.Object {
	var out []runtime.Object
	for _, p := range o.pods {
		out = append(out, p)
	}
	for _, s := range o.services {
		out = append(out, s)
	}
	for _, p := range o.policies {
		out = append(out, p)
	}
	for _, i := range o.ingresses {
		out = append(out, i)
	}
	return out
}

func (e *labCheckEnv) create(_ context.Context, _ string, objs checkObjects) error {
	var buf bytes.Buffer
	for _, o := range append([]runtime.Object{objs.namespace}, objs.all()...) {
		b, err := yaml.Marshal(o)
		if err != nil {
			return err
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	_, err := e.c.Apply(lab.Manifest{Source: "podnet check", Data: buf.Bytes()})
	return err
}

func (e *labCheckEnv) pods(_ context.Context, ns string) (map[string]*corev1.Pod, error) {
	objs, err := e.c.Get(cluster.KindPod, ns, "")
	if err != nil {
		return nil, err
	}
	out := map[string]*corev1.Pod{}
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && p.Namespace == ns {
			out[p.Name] = p
		}
	}
	return out, nil
}

func (e *labCheckEnv) service(_ context.Context, ns, name string) (*corev1.Service, error) {
	objs, err := e.c.Get(cluster.KindService, ns, name)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("service %s/%s not found", ns, name)
	}
	return objs[0].(*corev1.Service), nil
}

func (e *labCheckEnv) exec(ctx context.Context, ns, pod string, argv []string) (string, error) {
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return "", err
	}
	defer stdin.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return "", err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return "", err
	}
	var stdout, stderr bytes.Buffer
	done := make(chan struct{}, 2)
	go func() { io.Copy(&stdout, outR); outR.Close(); done <- struct{}{} }()
	go func() { io.Copy(&stderr, errR); errR.Close(); done <- struct{}{} }()
	code, err := e.c.Exec(lab.ExecRequest{Namespace: ns, Pod: pod, Argv: argv}, stdin, outW, errW)
	outW.Close()
	errW.Close()
	<-done
	<-done
	if err != nil {
		return "", err
	}
	if code != 0 {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", errors.New(msg)
		}
		return "", fmt.Errorf("%s exited with status %d", strings.Join(argv, " "), code)
	}
	return stdout.String(), nil
}

func (e *labCheckEnv) hostProbe(ctx context.Context, _ string, kind, target, host, qtype string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return probe(ctx, kind, target, host, qtype)
}

func (e *labCheckEnv) hostTarget(_ context.Context, node checkNode) (string, func(), string, error) {
	st, err := e.c.Status()
	if err != nil {
		return "", nil, "", err
	}
	if !st.HostLoopback {
		return "", nil, "the lab does not map the host's loopback to the pods' gateway (spec.hostLoopback: false)", nil
	}
	i := slices.IndexFunc(st.Nodes, func(n lab.NodeStatus) bool { return n.Name == node.name })
	if i < 0 || st.Nodes[i].Gateway == "" {
		return "", nil, "", fmt.Errorf("node %s has no gateway", node.name)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, "", err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	return net.JoinHostPort(st.Nodes[i].Gateway, fmt.Sprint(port)), func() { ln.Close() }, "", nil
}

func (e *labCheckEnv) ingressPort(context.Context) (uint16, error) {
	st, err := e.c.Status()
	if err != nil {
		return 0, err
	}
	return st.IngressHTTPPort, nil
}

func (e *labCheckEnv) remove(_ context.Context, ns string, objs checkObjects) error {
	var errs []error
	all := objs.all()
	slices.Reverse(all)
	for _, o := range append(all, objs.namespace) {
		m, err := metaOf(o)
		if err != nil {
			return err
		}
		kind, err := cluster.ParseKind(o.GetObjectKind().GroupVersionKind().Kind)
		if err != nil {
			return err
		}
		if _, err := e.c.Delete([]lab.ObjectRef{{Kind: kind, Namespace: m.GetNamespace(), Name: m.GetName()}}); err != nil &&
			!strings.Contains(err.Error(), "not found") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (e *labCheckEnv) flows(ctx context.Context) ([]agent.FlowRecord, error) {
	return e.c.Inspect().Flows(ctx)
}

func metaOf(o runtime.Object) (metav1.Object, error) {
	m, ok := o.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no metadata", o)
	}
	return m, nil
}

// kubeCheckEnv runs the check in a Kubernetes cluster: its pods run podnet's image (the podnet
// DaemonSet's), and a node's host is its podnet pod (which uses the node's network).
type kubeCheckEnv struct{ k *kubeTarget }

func (e *kubeCheckEnv) describe() string { return "cluster " + e.k.cfg.Host }
func (e *kubeCheckEnv) command() string  { return podnetBinary }

func (e *kubeCheckEnv) image(ctx context.Context) (string, error) {
	ds, err := e.k.client.AppsV1().DaemonSets(podnetNamespace).Get(ctx, "podnet", metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("find podnet's image (DaemonSet %s/podnet): %w", podnetNamespace, err)
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == podnetContainer {
			return c.Image, nil
		}
	}
	return "", fmt.Errorf("DaemonSet %s/podnet has no container %q", podnetNamespace, podnetContainer)
}

func (e *kubeCheckEnv) nodes(ctx context.Context) ([]checkNode, error) {
	agents, err := e.k.agentPods(ctx)
	if err != nil {
		return nil, err
	}
	list, err := e.k.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []checkNode
	for _, n := range list.Items {
		if _, ok := agents[n.Name]; !ok || n.Spec.Unschedulable || !nodeIsReady(&n) {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				out = append(out, checkNode{name: n.Name, address: a.Address})
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b checkNode) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

func nodeIsReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (e *kubeCheckEnv) create(ctx context.Context, ns string, objs checkObjects) error {
	cs := e.k.client
	opts := metav1.CreateOptions{}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, objs.namespace, opts); err != nil {
		return err
	}
	for _, p := range objs.pods {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, opts); err != nil {
			return err
		}
	}
	for _, s := range objs.services {
		if _, err := cs.CoreV1().Services(ns).Create(ctx, s, opts); err != nil {
			return err
		}
	}
	for _, p := range objs.policies {
		if _, err := cs.NetworkingV1().NetworkPolicies(ns).Create(ctx, p, opts); err != nil {
			return err
		}
	}
	for _, i := range objs.ingresses {
		if _, err := cs.NetworkingV1().Ingresses(ns).Create(ctx, i, opts); err != nil {
			return err
		}
	}
	return nil
}

func (e *kubeCheckEnv) pods(ctx context.Context, ns string) (map[string]*corev1.Pod, error) {
	list, err := e.k.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]*corev1.Pod{}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out, nil
}

func (e *kubeCheckEnv) service(ctx context.Context, ns, name string) (*corev1.Service, error) {
	return e.k.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
}

func (e *kubeCheckEnv) exec(ctx context.Context, ns, pod string, argv []string) (string, error) {
	var out bytes.Buffer
	if err := e.k.execIn(ctx, ns, pod, "check", argv, &out); err != nil {
		return "", err
	}
	return out.String(), nil
}

func (e *kubeCheckEnv) hostProbe(ctx context.Context, node, kind, target, host, qtype string) (string, error) {
	agents, err := e.k.agentPods(ctx)
	if err != nil {
		return "", err
	}
	pod, ok := agents[node]
	if !ok {
		return "", fmt.Errorf("node %s: no podnet pod runs there", node)
	}
	argv := []string{podnetBinary, "probe", kind, target}
	if host != "" {
		argv = append(argv, "--host", host)
	}
	if qtype != "" {
		argv = append(argv, "--type", qtype)
	}
	var out bytes.Buffer
	if err := e.k.exec(ctx, pod, argv, &out); err != nil {
		return "", err
	}
	return out.String(), nil
}

func (e *kubeCheckEnv) flows(ctx context.Context) ([]agent.FlowRecord, error) {
	var recs []agent.FlowRecord
	err := kubeFlows(ctx, e.k.kubeconfig, false, "", func(r agent.FlowRecord) error {
		recs = append(recs, r)
		return nil
	})
	return recs, err
}

// hostTarget is the kubelet's port on the node: every node has it, on its address.
func (e *kubeCheckEnv) hostTarget(_ context.Context, node checkNode) (string, func(), string, error) {
	return net.JoinHostPort(node.address, "10250"), func() {}, "", nil
}

func (e *kubeCheckEnv) ingressPort(ctx context.Context) (uint16, error) {
	ds, err := e.k.client.AppsV1().DaemonSets(podnetNamespace).Get(ctx, "podnet", metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		for _, a := range append(slices.Clone(c.Command), c.Args...) {
			if v, ok := strings.CutPrefix(a, "--ingress-http-port="); ok {
				var p uint16
				_, err := fmt.Sscan(v, &p)
				return p, err
			}
		}
	}
	return 80, nil
}

func (e *kubeCheckEnv) remove(ctx context.Context, ns string, _ checkObjects) error {
	cs := e.k.client
	grace := int64(0)
	err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	// Wait until it is gone: a check started next would find it terminating.
	for {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s is still terminating: %w", ns, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
