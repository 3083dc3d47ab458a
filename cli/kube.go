package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/klog/v2"
)

// The operator commands (flows, capture) reach a Kubernetes cluster's agents the way `kubectl
// exec` does: they run `podnet ... --local` in the podnet DaemonSet's pod of each node, which
// asks its agent over the agent's Unix socket, and read its output. The API server authorizes
// that as any exec into the pod (pods/exec in the podnet namespace); the agent opens no port for
// it.

// Where the podnet DaemonSet runs (deploy/podnet.yaml).
const (
	podnetNamespace = "podnet-system"
	podnetSelector  = "app=podnet"
	podnetContainer = "podnet"
	// podnetBinary is the podnet command in its image.
	podnetBinary = "/podnet"
	// agentInspectSocket is where `podnet node` serves its flows and captures (in its run
	// directory, as the DaemonSet mounts it).
	agentInspectSocket = "/run/podnet/inspect.sock"
)

// kubeTarget is a cluster the operator commands reach through the API server.
type kubeTarget struct {
	kubeconfig string
	cfg        *rest.Config
	client     kubernetes.Interface
}

func newKubeTarget(kubeconfig string) (*kubeTarget, error) {
	// client-go's exec streams report, through klog, the copies they abandon when a command ends
	// a stream early (capture -c, Ctrl-C): nothing a user of podnet needs.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kubeTarget{kubeconfig: kubeconfig, cfg: cfg, client: cs}, nil
}

// agentPods returns the running podnet pods by node name.
func (k *kubeTarget) agentPods(ctx context.Context) (map[string]string, error) {
	pods, err := k.client.CoreV1().Pods(podnetNamespace).List(ctx, metav1.ListOptions{LabelSelector: podnetSelector})
	if err != nil {
		return nil, fmt.Errorf("list the podnet pods (namespace %s, %s): %w", podnetNamespace, podnetSelector, err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "" {
			out[p.Spec.NodeName] = p.Name
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no podnet pod is running in namespace %s (%s): is podnet deployed?", podnetNamespace, podnetSelector)
	}
	return out, nil
}

// nodes returns the nodes of pods, sorted.
func sortedNodes(pods map[string]string) []string {
	nodes := make([]string, 0, len(pods))
	for n := range pods {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	return nodes
}

// exec runs cmd in the podnet container of pod, with its standard output to stdout, and returns
// when it ends or ctx does. Its standard error is returned in the error if it fails.
func (k *kubeTarget) exec(ctx context.Context, pod string, cmd []string, stdout io.Writer) error {
	return k.execIn(ctx, podnetNamespace, pod, podnetContainer, cmd, stdout)
}

// execIn runs cmd in a container of a pod, as exec does.
func (k *kubeTarget) execIn(ctx context.Context, ns, pod, container string, cmd []string, stdout io.Writer) error {
	req := k.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: container, Command: cmd, Stdout: true, Stderr: true,
	}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(k.cfg, http.MethodGet, req.URL().String())
	if err != nil {
		return err
	}
	spdy, err := remotecommand.NewSPDYExecutor(k.cfg, http.MethodPost, req.URL())
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return err
	}
	var stderr limitedBuffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: &stderr})
	if err != nil && ctx.Err() == nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("pod %s/%s: %s", ns, pod, strings.TrimPrefix(msg, "error: "))
		}
		return fmt.Errorf("pod %s/%s: exec %v: %w", ns, pod, cmd, err)
	}
	return nil
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
