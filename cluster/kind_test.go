package cluster

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestParseKind(t *testing.T) {
	tests := map[Kind][]string{
		KindPod:           {"pods", "pod", "po", "Pods", "POD", "Pod", " po "},
		KindService:       {"services", "service", "svc"},
		KindEndpointSlice: {"endpointslices", "endpointslice", "EndpointSlice", "endpointslices.discovery.k8s.io", "endpointslice.v1.discovery.k8s.io"},
		KindNetworkPolicy: {"networkpolicies", "networkpolicy", "netpol", "NetworkPolicy", "networkpolicies.networking.k8s.io"},
		KindIngress:       {"ingresses", "ingress", "ing", "ingresses.networking.k8s.io", "ingress.v1.networking.k8s.io"},
		KindNode:          {"nodes", "node", "no"},
		KindNamespace:     {"namespaces", "namespace", "ns"},
		KindDeployment:    {"deployments", "deployment", "deploy", "deployments.apps", "deployment.apps", "deployments.v1.apps", "Deployment.Apps"},
		KindIngressClass:  {"ingressclasses", "ingressclass", "IngressClass", "ingressclasses.networking.k8s.io", "ingressclass.v1.networking.k8s.io"},
		KindSecret:        {"secrets", "secret"},
		KindLab:           {"labs", "lab", "labs.podnet.dev", "lab.v1alpha1.podnet.dev"},
	}
	for want, spellings := range tests {
		for _, s := range spellings {
			got, err := ParseKind(s)
			if err != nil || got != want {
				t.Errorf("ParseKind(%q) = %q, %v, want %q", s, got, err, want)
			}
		}
	}
	for _, bad := range []string{"foo", "", "pods.apps", "deploy.apps", "deployments.v2.apps", "svcs", "ingresses.extensions", "po.v1", "ingclass"} {
		k, err := ParseKind(bad)
		if err == nil {
			t.Errorf("ParseKind(%q) = %q, want an error", bad, k)
			continue
		}
		if want := `podnet doesn't have a resource type "` + bad + `"`; !strings.Contains(err.Error(), want) {
			t.Errorf("ParseKind(%q) error = %q, want it to contain %q", bad, err, want)
		}
	}
}

func TestKindProperties(t *testing.T) {
	tests := []struct {
		kind       Kind
		plural     string
		namespaced bool
		apiVersion string
	}{
		{KindLab, "labs", false, "podnet.dev/v1alpha1"},
		{KindNamespace, "namespaces", false, "v1"},
		{KindNode, "nodes", false, "v1"},
		{KindPod, "pods", true, "v1"},
		{KindDeployment, "deployments", true, "apps/v1"},
		{KindService, "services", true, "v1"},
		{KindEndpointSlice, "endpointslices", true, "discovery.k8s.io/v1"},
		{KindNetworkPolicy, "networkpolicies", true, "networking.k8s.io/v1"},
		{KindIngress, "ingresses", true, "networking.k8s.io/v1"},
		{KindIngressClass, "ingressclasses", false, "networking.k8s.io/v1"},
		{KindSecret, "secrets", true, "v1"},
		{Kind("Bogus"), "", false, ""},
	}
	for _, tt := range tests {
		if got := tt.kind.Plural(); got != tt.plural {
			t.Errorf("%s.Plural() = %q, want %q", tt.kind, got, tt.plural)
		}
		if got := tt.kind.Namespaced(); got != tt.namespaced {
			t.Errorf("%s.Namespaced() = %v, want %v", tt.kind, got, tt.namespaced)
		}
		if got := tt.kind.APIVersion(); got != tt.apiVersion {
			t.Errorf("%s.APIVersion() = %q, want %q", tt.kind, got, tt.apiVersion)
		}
	}
	// Every kind parses back from its plural.
	for _, ki := range kinds {
		if k, err := ParseKind(ki.kind.Plural()); err != nil || k != ki.kind {
			t.Errorf("ParseKind(%q) = %q, %v", ki.kind.Plural(), k, err)
		}
	}
}

func TestObjectName(t *testing.T) {
	om := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: "ns"} }
	u := &unstructured.Unstructured{}
	u.SetKind("Widget")
	u.SetName("w")
	tests := []struct {
		obj  runtime.Object
		want string
	}{
		{&corev1.Pod{ObjectMeta: om("web-1")}, "pod/web-1"},
		{&appsv1.Deployment{ObjectMeta: om("web")}, "deployment.apps/web"},
		{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "dev"}}, "namespace/dev"},
		{&Lab{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, "lab/demo"},
		{&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, "node/node-a"},
		{&corev1.Service{ObjectMeta: om("web")}, "service/web"},
		{&corev1.Secret{ObjectMeta: om("tls")}, "secret/tls"},
		{&discoveryv1.EndpointSlice{ObjectMeta: om("web-abc")}, "endpointslice.discovery.k8s.io/web-abc"},
		{&networkingv1.NetworkPolicy{ObjectMeta: om("deny")}, "networkpolicy.networking.k8s.io/deny"},
		{&networkingv1.Ingress{ObjectMeta: om("web")}, "ingress.networking.k8s.io/web"},
		{&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "podnet"}}, "ingressclass.networking.k8s.io/podnet"},
		{&corev1.Pod{}, "pod"},
		{u, "widget/w"},
		{(*corev1.Pod)(nil), "object"},
		{nil, "object"},
	}
	for _, tt := range tests {
		if got := ObjectName(tt.obj); got != tt.want {
			t.Errorf("ObjectName(%T) = %q, want %q", tt.obj, got, tt.want)
		}
	}
}
