package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/inspect"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Client talks to a lab's daemon over the unix sockets in its state directory.
type Client struct {
	// Name is the lab's name, Dir its state directory.
	Name, Dir string
	http      *http.Client
}

// NewClient returns a client for the lab name. It does not connect.
func NewClient(name string) *Client {
	dir := StateDir(name)
	return &Client{Name: name, Dir: dir, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", filepath.Join(dir, "lab.sock"))
		},
	}}}
}

// ErrNotRunning says that the lab's daemon does not answer.
var ErrNotRunning = errNotRunning

// notRunningError says which lab does not answer and how to start it; it wraps ErrNotRunning and
// the connection error without printing the latter.
type notRunningError struct {
	name string
	err  error
}

func (e *notRunningError) Error() string {
	flag := ""
	if e.name != DefaultName {
		flag = " --name " + e.name
	}
	return fmt.Sprintf("lab %q is not running (start it with: podnet lab up%s)", e.name, flag)
}

func (e *notRunningError) Unwrap() []error { return []error{errNotRunning, e.err} }

func (c *Client) notRunning(err error) error { return &notRunningError{name: c.Name, err: err} }

func (c *Client) do(method, path string, q url.Values, body io.Reader, out any) error {
	u := "http://lab" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.notRunning(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("lab %s: %s %s: %s", c.Name, method, path, resp.Status)
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// Running reports whether the lab's daemon answers.
func (c *Client) Running() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://lab/v1/status", nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Manifest is one file of objects: multi-document YAML or JSON; Source names it in errors.
type Manifest struct {
	Source string `json:"source"`
	Data   []byte `json:"data"`
}

// Apply sends manifests to the lab, which applies them all or nothing.
func (c *Client) Apply(manifests ...Manifest) ([]string, error) {
	b, err := json.Marshal(manifests)
	if err != nil {
		return nil, err
	}
	var out []string
	err = c.do(http.MethodPost, "/v1/apply", nil, bytes.NewReader(b), &out)
	return out, err
}

// Delete removes objects, all or nothing.
func (c *Client) Delete(refs []ObjectRef) ([]string, error) {
	b, _ := json.Marshal(refs)
	var out []string
	err := c.do(http.MethodPost, "/v1/delete", nil, bytes.NewReader(b), &out)
	return out, err
}

// Get returns objects of kind in namespace ns ("" means all) named name ("" means all).
func (c *Client) Get(kind cluster.Kind, ns, name string) ([]runtime.Object, error) {
	var l objectList
	err := c.do(http.MethodGet, "/v1/objects", url.Values{"kind": {string(kind)}, "namespace": {ns}, "name": {name}}, nil, &l)
	return l.Items, err
}

// Status returns the lab's status.
func (c *Client) Status() (Status, error) {
	var s Status
	err := c.do(http.MethodGet, "/v1/status", nil, nil, &s)
	return s, err
}

// Logs copies the logs of a container to w.
func (c *Client) Logs(w io.Writer, ns, pod, container string) error {
	return c.do(http.MethodGet, "/v1/logs", url.Values{"namespace": {ns}, "pod": {pod}, "container": {container}}, nil, w)
}

// Metrics copies the lab's Prometheus metrics (text format) to w.
func (c *Client) Metrics(w io.Writer) error {
	return c.do(http.MethodGet, "/metrics", nil, nil, w)
}

// objectList carries objects of one kind over the API.
type objectList struct {
	Kind  cluster.Kind
	Items []runtime.Object
}

func (l objectList) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Kind  cluster.Kind     `json:"kind"`
		Items []runtime.Object `json:"items"`
	}{l.Kind, l.Items})
}

func (l *objectList) UnmarshalJSON(b []byte) error {
	var raw struct {
		Kind  cluster.Kind      `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	l.Kind = raw.Kind
	for _, it := range raw.Items {
		var obj runtime.Object
		switch raw.Kind {
		case cluster.KindPod:
			obj = &corev1.Pod{}
		case cluster.KindNode:
			obj = &corev1.Node{}
		case cluster.KindNamespace:
			obj = &corev1.Namespace{}
		case cluster.KindDeployment:
			obj = &appsv1.Deployment{}
		case cluster.KindService:
			obj = &corev1.Service{}
		case cluster.KindEndpointSlice:
			obj = &discoveryv1.EndpointSlice{}
		case cluster.KindNetworkPolicy:
			obj = &networkingv1.NetworkPolicy{}
		case cluster.KindIngress:
			obj = &networkingv1.Ingress{}
		case cluster.KindIngressClass:
			obj = &networkingv1.IngressClass{}
		case cluster.KindSecret:
			obj = &corev1.Secret{}
		default:
			return fmt.Errorf("objects of kind %s cannot be read", raw.Kind)
		}
		if err := json.Unmarshal(it, obj); err != nil {
			return err
		}
		setTypeMeta(obj)
		l.Items = append(l.Items, obj)
	}
	return nil
}

// setTypeMeta fills apiVersion and kind, which typed objects lose in memory.
func setTypeMeta(obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Pod:
		o.APIVersion, o.Kind = "v1", "Pod"
	case *corev1.Node:
		o.APIVersion, o.Kind = "v1", "Node"
	case *corev1.Namespace:
		o.APIVersion, o.Kind = "v1", "Namespace"
	case *appsv1.Deployment:
		o.APIVersion, o.Kind = "apps/v1", "Deployment"
	case *corev1.Service:
		o.APIVersion, o.Kind = "v1", "Service"
	case *discoveryv1.EndpointSlice:
		o.APIVersion, o.Kind = "discovery.k8s.io/v1", "EndpointSlice"
	case *networkingv1.NetworkPolicy:
		o.APIVersion, o.Kind = "networking.k8s.io/v1", "NetworkPolicy"
	case *networkingv1.Ingress:
		o.APIVersion, o.Kind = "networking.k8s.io/v1", "Ingress"
	case *networkingv1.IngressClass:
		o.APIVersion, o.Kind = "networking.k8s.io/v1", "IngressClass"
	case *corev1.Secret:
		o.APIVersion, o.Kind = "v1", "Secret"
	}
}

// RotateKey gives a node a new WireGuard key and returns its public key.
func (c *Client) RotateKey(node string) (string, error) {
	var out struct {
		PublicKey string `json:"publicKey"`
	}
	err := c.do(http.MethodPost, "/v1/rotate-key", url.Values{"node": {node}}, nil, &out)
	return out.PublicKey, err
}

// RestartAgent restarts a node's agent, its pods running on, and returns how long the node had
// no agent.
func (c *Client) RestartAgent(node string) (string, error) {
	var out struct {
		Gap string `json:"gap"`
	}
	err := c.do(http.MethodPost, "/v1/restart-agent", url.Values{"node": {node}}, nil, &out)
	return out.Gap, err
}

// Inspect returns a client of the lab's flows and captures.
func (c *Client) Inspect() *inspect.Client {
	return inspect.NewClient(filepath.Join(c.Dir, "lab.sock"))
}

// ExplainPolicy returns the verdict of the lab's NetworkPolicies on a flow from (NS/POD) to (NS/POD
// or an IP) at port (PORT/PROTO), and a report of what decided it.
func (c *Client) ExplainPolicy(from, to, port string) (allowed bool, report string, err error) {
	var out struct {
		Allowed bool   `json:"allowed"`
		Text    string `json:"text"`
	}
	err = c.do(http.MethodGet, "/v1/policy/explain", url.Values{"from": {from}, "to": {to}, "port": {port}}, nil, &out)
	return out.Allowed, out.Text, err
}
