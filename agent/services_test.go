package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/podnet/podnet/proxy"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestProxyServices(t *testing.T) {
	local := corev1.ServiceInternalTrafficPolicyLocal
	svcs := []*corev1.Service{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
			Spec: corev1.ServiceSpec{
				Type:                     corev1.ServiceTypeLoadBalancer,
				ClusterIP:                "10.96.0.20",
				ExternalTrafficPolicy:    corev1.ServiceExternalTrafficPolicyLocal,
				InternalTrafficPolicy:    &local,
				HealthCheckNodePort:      32000,
				SessionAffinity:          corev1.ServiceAffinityClientIP,
				SessionAffinityConfig:    &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptrTo(int32(60))}},
				LoadBalancerSourceRanges: []string{"127.0.0.0/8"},
				Ports: []corev1.ServicePort{
					{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080},
					{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, NodePort: 30053},
				},
			},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "127.0.9.2"}}}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "headless"},
			Spec:       corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Name: "x", Protocol: corev1.ProtocolTCP, Port: 80}}},
		},
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	slices := []*discoveryv1.EndpointSlice{
		{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-a", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Protocol: &tcp, Port: ptrTo(int32(8080))}, {Name: ptrTo("dns"), Protocol: &udp, Port: ptrTo(int32(5353))}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.0.5"}, NodeName: ptrTo("node-a"), Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true)}},
				{Addresses: []string{"10.244.1.5"}, NodeName: ptrTo("node-b"), Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(false)}},
				{Addresses: []string{"10.244.1.6"}, NodeName: ptrTo("node-b")}, // unknown readiness: ready
			},
		},
		{
			// Pods that resolve the named port differently are in another slice.
			ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-b", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Protocol: &tcp, Port: ptrTo(int32(9090))}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.0.7"}, NodeName: ptrTo("node-a"), Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true), Terminating: ptrTo(true)}},
				{Addresses: []string{"10.244.2.7"}, NodeName: ptrTo("node-c"), Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true)}},
			},
		},
		{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "other", Name: "web-x", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Protocol: &tcp, Port: ptrTo(int32(1))}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.9.9"}}},
		},
	}
	got := proxyServices(svcs, slices, "node-a")
	if len(got) != 2 {
		t.Fatalf("%d services, want 2 (ExternalName left out): %+v", len(got), got)
	}
	web := got[0]
	if web.ClusterIP != netip.MustParseAddr("10.96.0.20") || !web.ExternalLocal || !web.InternalLocal || web.HealthCheckNodePort != 32000 ||
		web.AffinityTimeout != time.Minute || len(web.LoadBalancerIPs) != 1 || len(web.SourceRanges) != 1 {
		t.Errorf("web converted to %+v", web)
	}
	if len(web.Ports) != 2 {
		t.Fatalf("web ports %+v", web.Ports)
	}
	want := []proxy.Endpoint{
		{Addr: netip.MustParseAddrPort("10.244.0.5:8080"), Node: "node-a", Local: true, Ready: true},
		{Addr: netip.MustParseAddrPort("10.244.1.5:8080"), Node: "node-b", Ready: false},
		{Addr: netip.MustParseAddrPort("10.244.1.6:8080"), Node: "node-b", Ready: true},
		{Addr: netip.MustParseAddrPort("10.244.0.7:9090"), Node: "node-a", Local: true, Ready: false},
		{Addr: netip.MustParseAddrPort("10.244.2.7:9090"), Node: "node-c", Ready: true},
	}
	if p := web.Ports[0]; p.Protocol != proxy.TCP || p.Port != 80 || p.NodePort != 30080 || len(p.Endpoints) != len(want) {
		t.Fatalf("http port %+v", p)
	}
	for i, e := range web.Ports[0].Endpoints {
		if e != want[i] {
			t.Errorf("endpoint %d = %+v, want %+v", i, e, want[i])
		}
	}
	if p := web.Ports[1]; p.Protocol != proxy.UDP || len(p.Endpoints) != 3 || p.Endpoints[0].Addr.Port() != 5353 {
		t.Errorf("dns port %+v", p)
	}
	if h := got[1]; h.Name != "headless" || h.ClusterIP.IsValid() || len(h.Ports[0].Endpoints) != 0 {
		t.Errorf("headless converted to %+v", h)
	}
}

func ptrTo[T any](v T) *T { return &v }
