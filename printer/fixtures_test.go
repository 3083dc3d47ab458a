package printer

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// now is the fixed clock of every test.
var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// ago returns the metav1.Time d before now.
func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

func ptr[T any](v T) *T { return &v }

func meta(ns, name string, created time.Duration) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: ago(created)}
}

func runningPod(ns, name, ip, node string, created time.Duration) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: meta(ns, name, created),
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "web", Command: []string{"podnet", "serve", "--http", "80"}}},
		},
		Status: corev1.PodStatus{
			Phase:  corev1.PodRunning,
			PodIP:  ip,
			PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name:  "web",
				Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(created)}},
			}},
		},
	}
}

func crashingPod(ns, name string) *corev1.Pod {
	p := runningPod(ns, name, "10.244.1.7", "node-b", 3*time.Hour)
	p.Status.Conditions = nil
	p.Status.ContainerStatuses[0] = corev1.ContainerStatus{
		Name:         "web",
		RestartCount: 4,
		State:        corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: "Error", FinishedAt: ago(70 * time.Second),
		}},
	}
	return p
}

func pendingPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: meta(ns, name, 12*time.Second),
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
}

func readyNode(name, internalIP, cidr, key string, created time.Duration) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: meta("", name, created),
		Spec:       corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue},
			},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeHostName, Address: name},
				{Type: corev1.NodeInternalIP, Address: internalIP},
			},
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:          "v1.33.0-podnet",
				OSImage:                 "Debian GNU/Linux 12 (bookworm)",
				KernelVersion:           "6.1.0-18-amd64",
				ContainerRuntimeVersion: "podnet://0.1.0",
			},
		},
	}
	if key != "" {
		n.Annotations = map[string]string{WireGuardKeyAnnotation: key}
	}
	return n
}

func deployment(ns, name string, replicas, ready int32, created time.Duration) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: meta(ns, name, created),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: name}},
			}},
		},
		Status: appsv1.DeploymentStatus{
			Replicas: replicas, UpdatedReplicas: replicas, ReadyReplicas: ready, AvailableReplicas: ready,
		},
	}
}

func services() []runtime.Object {
	return []runtime.Object{
		&corev1.Service{
			ObjectMeta: meta("default", "kubernetes", 49*time.Hour),
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.1", ClusterIPs: []string{"10.96.0.1"},
				Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}},
			},
		},
		&corev1.Service{
			ObjectMeta: meta("default", "web", 5*time.Minute),
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.12.34",
				Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{
					{Name: "http", Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP},
					{Name: "dns", Port: 53, NodePort: 30053, Protocol: corev1.ProtocolUDP},
				},
			},
		},
		&corev1.Service{
			ObjectMeta: meta("default", "headless", 90*time.Second),
			Spec: corev1.ServiceSpec{
				ClusterIP: "None", ClusterIPs: []string{"None"},
				Selector: map[string]string{"app": "db", "tier": "data"},
			},
		},
		&corev1.Service{
			ObjectMeta: meta("default", "lb", 10*time.Minute),
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, ClusterIPs: []string{"10.96.7.7"},
				Ports: []corev1.ServicePort{{Port: 8080, NodePort: 31000, Protocol: corev1.ProtocolTCP}},
			},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
				{IP: "192.168.100.200"}, {IP: "192.168.100.201"},
			}}},
		},
		&corev1.Service{
			ObjectMeta: meta("default", "ext", 10*time.Minute),
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"},
		},
	}
}

func endpointSlices() []runtime.Object {
	ep := func(addrs ...string) discoveryv1.Endpoint { return discoveryv1.Endpoint{Addresses: addrs} }
	return []runtime.Object{
		&discoveryv1.EndpointSlice{
			ObjectMeta:  meta("default", "web-abcde", 5*time.Minute),
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{
				{Name: ptr("http"), Port: ptr(int32(80))},
			},
			Endpoints: []discoveryv1.Endpoint{
				ep("10.244.0.5"), ep("10.244.1.7"), ep("10.244.2.9"), ep("10.244.2.10"), ep("10.244.0.11"),
			},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  meta("default", "empty-xyz", time.Minute),
			AddressType: discoveryv1.AddressTypeIPv4,
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  meta("default", "many-ports", time.Minute),
			AddressType: discoveryv1.AddressTypeIPv6,
			Ports: []discoveryv1.EndpointPort{
				{Port: ptr(int32(1))}, {Name: ptr("named")}, {}, {Port: ptr(int32(4))},
			},
			Endpoints: []discoveryv1.Endpoint{ep("fd00::1", "fd00::2")},
		},
	}
}
