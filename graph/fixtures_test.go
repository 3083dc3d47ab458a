package graph

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func ptr[T any](v T) *T { return &v }

func node(name, cidr, ip string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

// pod returns a running pod; labels are "key=value" pairs.
func pod(ns, name, nodeName, ip string, lbls ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{}},
		Spec:       corev1.PodSpec{NodeName: nodeName},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
	if ip != "" {
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	for i := 0; i+1 < len(lbls); i += 2 {
		p.Labels[lbls[i]] = lbls[i+1]
	}
	return p
}

func service(ns, name, clusterIP string, selector map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIP, Selector: selector, Ports: ports},
	}
}

func tcp(port int32) corev1.ServicePort {
	return corev1.ServicePort{Port: port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(port)}
}

func matchLabels(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func ingressPolicy(ns, name string, selector *metav1.LabelSelector, rules ...networkingv1.NetworkPolicyIngressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *selector,
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     rules,
		},
	}
}

func tcpPort(port int) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr(corev1.ProtocolTCP), Port: ptr(intstr.FromInt(port))}
}

// lab is a small cluster like the one `podnet lab` starts: two nodes, a
// web Service with two backends, a client, a database in another
// namespace, DNS, policies of every peer kind, and flows allowed and
// denied.
type lab struct {
	nodes    []*corev1.Node
	pods     []*corev1.Pod
	services []*corev1.Service
	policies []*networkingv1.NetworkPolicy
	flows    []Flow
}

func newLab() lab {
	done := pod("default", "job-done", "node-a", "10.244.0.9", "app", "job")
	done.Status.Phase = corev1.PodSucceeded
	failed := pod("default", "job-failed", "node-b", "10.244.1.8", "app", "web")
	failed.Status.Phase = corev1.PodFailed
	external := service("default", "docs", "", nil)
	external.Spec.Type = corev1.ServiceTypeExternalName
	external.Spec.ExternalName = "docs.example.com"
	dns := service("kube-system", "kube-dns", "10.96.0.10", map[string]string{"k8s-app": "kube-dns"},
		corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		corev1.ServicePort{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP})
	web := service("default", "web", "10.96.0.80", map[string]string{"app": "web"}, tcp(80))
	web.Spec.Type = corev1.ServiceTypeNodePort
	web.Spec.Ports[0].NodePort = 30080
	return lab{
		nodes: []*corev1.Node{
			node("node-a", "10.244.0.0/24", "172.18.0.2"),
			node("node-b", "10.244.1.0/24", "172.18.0.3"),
		},
		pods: []*corev1.Pod{
			pod("default", "web-1", "node-a", "10.244.0.5", "app", "web"),
			pod("default", "web-2", "node-b", "10.244.1.5", "app", "web"),
			pod("default", "client", "node-a", "10.244.0.6", "app", "client"),
			pod("prod", "db", "node-b", "10.244.1.9", "app", "db"),
			pod("kube-system", "coredns-1", "node-a", "10.244.0.2", "k8s-app", "kube-dns"),
			pod("default", "pending", "", "", "app", "web"),
			done, failed,
		},
		services: []*corev1.Service{
			web, dns, external,
			service("default", "manual", "10.96.0.99", nil, tcp(9000)),
		},
		policies: []*networkingv1.NetworkPolicy{
			ingressPolicy("default", "web-from-client", matchLabels("app", "web"),
				networkingv1.NetworkPolicyIngressRule{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: matchLabels("app", "client")}},
					Ports: []networkingv1.NetworkPolicyPort{tcpPort(80)},
				},
				networkingv1.NetworkPolicyIngressRule{
					From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "203.0.113.0/24", Except: []string{"203.0.113.7/32"}}}},
				}),
			ingressPolicy("prod", "db-from-default-web", matchLabels("app", "db"),
				networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: matchLabels("kubernetes.io/metadata.name", "default"),
					PodSelector:       matchLabels("app", "web"),
				}}}),
			ingressPolicy("prod", "deny-all", &metav1.LabelSelector{}),
		},
		flows: []Flow{
			{Source: "default/client", Dest: "default/web-1", Service: "default/web", Port: 80, Protocol: "TCP", Allowed: true, Policies: []string{"default/web-from-client"}},
			{Source: "default/client", Dest: "default/web-1", Service: "default/web", Port: 80, Protocol: "TCP", Allowed: true, Policies: []string{"default/web-from-client"}},
			{Source: "default/client", Dest: "default/web-2", Service: "default/web", Port: 80, Protocol: "TCP", Allowed: true},
			{Source: "default/client", Dest: "prod/db", Port: 5432, Protocol: "TCP", Allowed: false, Policies: []string{"prod/db-from-default-web", "prod/deny-all"}},
			{Source: "default/client", Dest: "prod/db", Port: 5432, Protocol: "TCP", Allowed: false, Policies: []string{"prod/deny-all", "prod/db-from-default-web"}},
			{Source: "default/web-2", Dest: "10.244.1.9", Port: 5432, Protocol: "TCP", Allowed: true},
			{Source: "198.51.100.7", Dest: "default/web-1", Port: 80, Protocol: "TCP", Allowed: false, Policies: []string{"default/web-from-client"}},
			{Source: "default/web-1", Dest: "10.244.0.2", Service: "kube-system/kube-dns", Port: 53, Protocol: "UDP", Allowed: true},
			{Source: "default/web-1", Dest: "9.9.9.9", Port: 443, Protocol: "tcp", Allowed: true},
			{Source: "172.18.0.3", Dest: "default/client", Port: 8080, Protocol: "TCP", Allowed: true},
		},
	}
}

func (l lab) build() *Graph { return Build(l.nodes, l.pods, l.services, l.policies, l.flows) }
