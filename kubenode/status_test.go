package kubenode

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/podnet/podnet/cluster"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// staticSource is a statusSource over fixed objects.
type staticSource struct {
	nodes []*corev1.Node
	svcs  []*corev1.Service
	ings  []*networkingv1.Ingress
}

func (s staticSource) Nodes() []*corev1.Node                { return s.nodes }
func (s staticSource) Services() []*corev1.Service          { return s.svcs }
func (s staticSource) Ingresses() []*networkingv1.Ingress   { return s.ings }
func (s staticSource) Subscribe() (<-chan struct{}, func()) { return nil, func() {} }

func node(name, endpoint string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if endpoint != "" {
		n.Annotations = map[string]string{cluster.AnnotationWireGuardEndpoint: endpoint}
	}
	return n
}

// TestSyncStatus: LoadBalancer Services of no other class and podnet's Ingresses get the
// addresses of the nodes running podnet, in the nodes' order; what has them already, other
// classes and other types are not written.
func TestSyncStatus(t *testing.T) {
	vip := corev1.LoadBalancerIPModeVIP
	other := "example.com/lb"
	lb := func(name string, class *string, ips ...string) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class}}
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip, IPMode: &vip})
		}
		return s
	}
	src := staticSource{
		nodes: []*corev1.Node{node("node-a", "192.168.251.1:51820"), node("node-b", "192.168.251.2:51820"), node("node-c", "")},
		svcs: []*corev1.Service{
			lb("new", nil),
			lb("done", nil, "192.168.251.1", "192.168.251.2"),
			lb("stale", nil, "192.168.251.9"),
			lb("theirs", &other),
			{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "plain"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}},
		},
		ings: []*networkingv1.Ingress{{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "site"}}},
	}
	var objs []runtime.Object
	for _, s := range src.svcs {
		objs = append(objs, s)
	}
	objs = append(objs, src.ings[0])
	client := fake.NewClientset(objs...)
	if err := syncStatus(context.Background(), client, src); err != nil {
		t.Fatal(err)
	}
	var patched []string
	for _, a := range client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			if p.GetSubresource() != "status" {
				t.Errorf("patch of %s %s without the status subresource", p.GetResource().Resource, p.GetName())
			}
			patched = append(patched, p.GetResource().Resource+"/"+p.GetName())
			if !strings.Contains(string(p.GetPatch()), `"ip":"192.168.251.1"},{`) && !strings.Contains(string(p.GetPatch()), `"ip":"192.168.251.1","ipMode":"VIP"},{`) {
				t.Errorf("patch of %s: %s, want node-a's then node-b's address", p.GetName(), p.GetPatch())
			}
		}
	}
	slices.Sort(patched)
	if want := []string{"ingresses/site", "services/new", "services/stale"}; !slices.Equal(patched, want) {
		t.Errorf("patched %v, want %v", patched, want)
	}
	got, err := client.CoreV1().Services("web").Get(context.Background(), "new", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ing := got.Status.LoadBalancer.Ingress; len(ing) != 2 || ing[0].IP != "192.168.251.1" || ing[1].IP != "192.168.251.2" {
		t.Errorf("Service web/new status %+v", got.Status.LoadBalancer)
	}
}
