package cluster

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// svc is a Service document named web with the given spec lines (indented
// by two spaces).
func svc(spec string) string {
	return "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n" + spec
}

// slice is an EndpointSlice document named ext-1 for Service ext, with the
// given lines added at the top level.
func slice(extra string) string {
	return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ext-1\n  labels: {kubernetes.io/service-name: ext}\naddressType: IPv4\n" + extra
}

var serviceCases = []struct {
	name  string
	in    string
	docs  int
	wants []string
}{
	// Good Services.
	{name: "cluster IP", in: svc("  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n"), docs: 1},
	{name: "every type", in: svc("  type: NodePort\n  selector: {app: web}\n  ports: [{name: http, port: 80, nodePort: 30080}, {name: dns, port: 53, protocol: UDP}]\n") +
		"---\n" + strings.Replace(svc("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000\n  loadBalancerSourceRanges: [10.0.0.0/8, \" 192.168.0.0/16\"]\n  ports: [{port: 443}]\n"), "name: web", "name: lb", 1) +
		"---\n" + strings.Replace(svc("  type: ExternalName\n  externalName: example.com.\n"), "name: web", "name: ext", 1) +
		"---\n" + strings.Replace(svc("  clusterIP: None\n  selector: {app: db}\n"), "name: web", "name: db", 1), docs: 4},
	{name: "same nodePort for TCP and UDP of one Service", in: svc("  type: NodePort\n  ports: [{name: a, port: 53, nodePort: 30053}, {name: b, port: 53, protocol: UDP, nodePort: 30053}]\n"), docs: 1},
	{name: "client IP affinity and local policies", in: svc("  type: NodePort\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n  ports: [{port: 80}]\n"), docs: 1},
	{name: "requested cluster IP", in: svc("  clusterIP: 10.96.0.100\n  clusterIPs: [10.96.0.100]\n  ipFamilies: [IPv4]\n  ipFamilyPolicy: PreferDualStack\n  ports: [{port: 80}]\n"), docs: 1},

	// Bad Services: every rule of the issue.
	{name: "bad ports", in: svc(`  type: NodePort
  ports:
  - {name: http, port: 0}
  - {name: http, port: 80, targetPort: 70000}
  - {port: 81, targetPort: "http_x", protocol: ICMP}
  - {name: sctp, port: 82, protocol: SCTP}
  - {name: Web, port: 83, nodePort: 8080}
`), wants: []string{
		`lab.yaml: document 1 (line 1): service/web: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`,
		`service/web: spec.ports[1].name: Duplicate value: "http"`,
		`service/web: spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive`,
		`service/web: spec.ports[2].name: Required value: a Service with more than one port must name each of them`,
		`service/web: spec.ports[2].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP"`,
		`service/web: spec.ports[2].targetPort: Invalid value: "http_x": must contain only alpha-numeric characters`,
		`service/web: spec.ports[3].protocol: Invalid value: "SCTP": SCTP is not supported by podnet`,
		`service/web: spec.ports[4].name: Invalid value: "Web": a lowercase RFC 1123 label`,
		`service/web: spec.ports[4].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767`}},
	{name: "duplicate port and nodePort in one Service", in: svc("  type: NodePort\n  ports: [{name: a, port: 80, nodePort: 30080}, {name: b, port: 80, nodePort: 30080}, {name: c, port: 80, protocol: UDP}]\n"), wants: []string{
		`service/web: spec.ports[1]: Duplicate value: "80/TCP"`,
		`service/web: spec.ports[1].nodePort: Duplicate value: 30080`}},
	{name: "nodePort on a ClusterIP Service", in: svc("  ports: [{port: 80, nodePort: 30080}]\n"), wants: []string{
		`service/web: spec.ports[0].nodePort: Forbidden: may not be used when ` + "`type`" + ` is 'ClusterIP'`}},
	{name: "no ports", in: svc("  selector: {app: web}\n"), wants: []string{
		`service/web: spec.ports: Required value`}},
	{name: "bad name, type and selector", in: "apiVersion: v1\nkind: Service\nmetadata: {name: 1web}\nspec:\n  type: Magic\n  selector: {app: \"not ok!\"}\n  ports: [{port: 80}]\n", wants: []string{
		`service/1web: metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric characters`,
		`service/1web: spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"`,
		`service/1web: spec.selector[app]: Invalid value: "not ok!"`}},
	{name: "selector on an ExternalName", in: svc("  type: ExternalName\n  externalName: db.example.com\n  selector: {app: db}\n  clusterIP: 10.96.0.9\n  ports: [{port: 5432, nodePort: 30432}]\n"), wants: []string{
		`service/web: spec.selector: Forbidden: may not be set for ExternalName services`,
		`service/web: spec.clusterIP: Forbidden: may not be set for ExternalName services`,
		`service/web: spec.ports[0].nodePort: Forbidden: may not be used when ` + "`type`" + ` is 'ExternalName'`}},
	{name: "ExternalName without or with a bad name", in: svc("  type: ExternalName\n") + "---\n" + strings.Replace(svc("  type: ExternalName\n  externalName: not_a_host\n"), "name: web", "name: web2", 1), wants: []string{
		`service/web: spec.externalName: Required value`,
		`service/web2: spec.externalName: Invalid value: "not_a_host": a lowercase RFC 1123 subdomain`}},
	{name: "headless NodePort and LoadBalancer", in: svc("  type: NodePort\n  clusterIP: None\n  ports: [{port: 80}]\n") + "---\n" + strings.Replace(svc("  type: LoadBalancer\n  clusterIP: None\n  ports: [{port: 80}]\n"), "name: web", "name: lb", 1), wants: []string{
		`service/web: spec.clusterIP: Invalid value: "None": may not be set to 'None' for NodePort services`,
		`service/lb: spec.clusterIP: Invalid value: "None": may not be set to 'None' for LoadBalancer services`}},
	{name: "bad cluster IPs", in: svc("  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n") + "---\n" + strings.Replace(svc("  clusterIP: fd00::1\n  ports: [{port: 80}]\n"), "name: web", "name: v6", 1) +
		"---\n" + strings.Replace(svc("  clusterIP: 10.96.0.5\n  clusterIPs: [10.96.0.6]\n  ports: [{port: 80}]\n"), "name: web", "name: two", 1), wants: []string{
		`service/web: spec.clusterIP: Invalid value: "10.96.0.300": must be "None", empty (to have one allocated) or an IPv4 address`,
		`service/v6: spec.clusterIP: Invalid value: "fd00::1": must be an IPv4 address: podnet's service network is IPv4 only`,
		`service/two: spec.clusterIPs[0]: Invalid value: "10.96.0.6": must be the same as spec.clusterIP`}},
	{name: "IPv6 and dual-stack", in: svc("  ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: RequireDualStack\n  ports: [{port: 80}]\n"), wants: []string{
		`service/web: spec.ipFamilies[1]: Invalid value: "IPv6": podnet's service network is IPv4 only`,
		`service/web: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": podnet's service network is IPv4 only`}},
	{name: "bad affinity", in: svc("  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n  ports: [{port: 80}]\n") + "---\n" +
		strings.Replace(svc("  sessionAffinity: Sticky\n  ports: [{port: 80}]\n"), "name: web", "name: b", 1) + "---\n" +
		strings.Replace(svc("  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10}}\n  ports: [{port: 80}]\n"), "name: web", "name: c", 1), wants: []string{
		`service/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than or equal to 86400`,
		`service/b: spec.sessionAffinity: Unsupported value: "Sticky": supported values: "None", "ClientIP"`,
		`service/c: spec.sessionAffinityConfig: Invalid value: `}},
	{name: "traffic policies", in: svc("  externalTrafficPolicy: Local\n  internalTrafficPolicy: Nearby\n  healthCheckNodePort: 30001\n  ports: [{port: 80}]\n") + "---\n" +
		strings.Replace(svc("  type: NodePort\n  externalTrafficPolicy: Global\n  ports: [{port: 80}]\n"), "name: web", "name: np", 1) + "---\n" +
		strings.Replace(svc("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 80\n  ports: [{port: 80}]\n"), "name: web", "name: lb", 1), wants: []string{
		`service/web: spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services`,
		`service/web: spec.internalTrafficPolicy: Unsupported value: "Nearby": supported values: "Cluster", "Local"`,
		`service/web: spec.healthCheckNodePort: Invalid value: 30001: may only be set when ` + "`type`" + ` is 'LoadBalancer' and ` + "`externalTrafficPolicy`" + ` is 'Local'`,
		`service/np: spec.externalTrafficPolicy: Unsupported value: "Global": supported values: "Cluster", "Local"`,
		`service/lb: spec.healthCheckNodePort: Invalid value: 80: provided port is not in the valid range`}},
	{name: "load balancer fields", in: svc("  loadBalancerSourceRanges: [10.0.0.0/8]\n  allocateLoadBalancerNodePorts: false\n  ports: [{port: 80}]\n") + "---\n" +
		strings.Replace(svc("  type: LoadBalancer\n  loadBalancerSourceRanges: [10.0.0.0/33, nonsense]\n  loadBalancerIP: 1.2.3.4\n  externalIPs: [1.2.3.4]\n  ports: [{port: 80}]\n"), "name: web", "name: lb", 1), wants: []string{
		`service/web: spec.loadBalancerSourceRanges: Forbidden: may only be used when ` + "`type`" + ` is 'LoadBalancer'`,
		`service/web: spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when ` + "`type`" + ` is 'LoadBalancer'`,
		`service/lb: spec.loadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/33": must be a CIDR`,
		`service/lb: spec.loadBalancerSourceRanges[1]: Invalid value: "nonsense": must be a CIDR`,
		`service/lb: spec.loadBalancerIP: Forbidden: is not supported by podnet`,
		`service/lb: spec.externalIPs: Forbidden: is not supported by podnet`}},
	{name: "unknown Service field", in: svc("  ports: [{port: 80, tagetPort: 8080}]\n"), wants: []string{
		`service/web: unknown field "spec.ports[0].tagetPort"`}},
	{name: "wrong types in a Service", in: svc("  ports: [{port: \"80\", targetPort: [1]}]\n"), wants: []string{
		`service/web: spec.ports[0].port: Invalid value: "80": must be an integer: remove the quotes`,
		`service/web: spec.ports[0].targetPort: Invalid value: must be an integer or a string, not a list`}},
	{name: "Service defined twice", in: svc("  ports: [{port: 80}]\n") + "---\n" + svc("  ports: [{port: 81}]\n"), wants: []string{
		`lab.yaml: document 2 (line 7): service/web: metadata.name: Duplicate value: "web": service/web is defined twice in namespace default: also at lab.yaml: document 1 (line 1)`}},

	// EndpointSlices.
	{name: "user EndpointSlice", in: slice("endpoints:\n- addresses: [192.168.1.20]\n  conditions: {ready: true}\nports: [{name: db, port: 5432}]\n"), docs: 1},
	{name: "bad EndpointSlices", in: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1}\naddressType: IPv6\n" +
		"---\n" + strings.Replace(slice(`endpoints:
- addresses: []
- addresses: [10.0.0.300, "fd00::1"]
  hostname: Not_A_Label
ports:
- {name: a, port: 0}
- {name: a, port: 80, protocol: SCTP}
`), "kubernetes.io/service-name: ext}", "kubernetes.io/service-name: ext, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io}", 1), wants: []string{
		`endpointslice.discovery.k8s.io/s1: metadata.labels[kubernetes.io/service-name]: Required value: an EndpointSlice must name its Service in this label`,
		`endpointslice.discovery.k8s.io/s1: addressType: Invalid value: "IPv6": podnet's pod and service networks are IPv4 only`,
		`endpointslice.discovery.k8s.io/ext-1: metadata.labels[endpointslice.kubernetes.io/managed-by]: Forbidden: the lab's EndpointSlice controller manages`,
		`endpointslice.discovery.k8s.io/ext-1: endpoints[0].addresses: Required value`,
		`endpointslice.discovery.k8s.io/ext-1: endpoints[1].addresses[0]: Invalid value: "10.0.0.300": must be an IPv4 address`,
		`endpointslice.discovery.k8s.io/ext-1: endpoints[1].addresses[1]: Invalid value: "fd00::1": must be an IPv4 address`,
		`endpointslice.discovery.k8s.io/ext-1: endpoints[1].hostname: Invalid value: "Not_A_Label"`,
		`endpointslice.discovery.k8s.io/ext-1: ports[0].port: Invalid value: 0: must be between 1 and 65535`,
		`endpointslice.discovery.k8s.io/ext-1: ports[1].name: Duplicate value: "a"`,
		`endpointslice.discovery.k8s.io/ext-1: ports[1].protocol: Invalid value: "SCTP": SCTP is not supported by podnet`}},
}

func TestDecodeServices(t *testing.T) {
	for _, tt := range serviceCases {
		t.Run(tt.name, func(t *testing.T) { checkDecode(t, tt.in, tt.docs, tt.wants) })
	}
}

func TestServiceDefaults(t *testing.T) {
	docs := checkDecode(t, svc("  selector: {app: web}\n  ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP, targetPort: 5353}]\n")+"---\n"+
		strings.Replace(svc("  type: LoadBalancer\n  sessionAffinity: ClientIP\n  ports: [{port: 443, targetPort: https}]\n"), "name: web", "name: lb", 1)+"---\n"+
		strings.Replace(svc("  type: ExternalName\n  externalName: example.com\n"), "name: web", "name: ext", 1), 3, nil)
	got := func(i int) string {
		b, err := yaml.Marshal(docs[i].Object.(*corev1.Service).Spec)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	want := []string{`internalTrafficPolicy: Cluster
ipFamilies:
- IPv4
ipFamilyPolicy: SingleStack
ports:
- name: http
  port: 80
  protocol: TCP
  targetPort: 80
- name: dns
  port: 53
  protocol: UDP
  targetPort: 5353
selector:
  app: web
sessionAffinity: None
type: ClusterIP
`, `allocateLoadBalancerNodePorts: true
externalTrafficPolicy: Cluster
internalTrafficPolicy: Cluster
ipFamilies:
- IPv4
ipFamilyPolicy: SingleStack
ports:
- port: 443
  protocol: TCP
  targetPort: https
sessionAffinity: ClientIP
sessionAffinityConfig:
  clientIP:
    timeoutSeconds: 10800
type: LoadBalancer
`, `externalName: example.com
sessionAffinity: None
type: ExternalName
`}
	for i := range want {
		if g := got(i); g != want[i] {
			t.Errorf("defaulted spec of %s:\n%s\nwant:\n%s", ObjectName(docs[i].Object), g, want[i])
		}
	}
	if ns := docs[0].Object.(*corev1.Service).Namespace; ns != "default" {
		t.Errorf("namespace = %q", ns)
	}

	docs = checkDecode(t, slice("ports: [{port: 5432}]\n"), 1, nil)
	p := docs[0].Object.(*discoveryv1.EndpointSlice).Ports[0]
	if p.Name == nil || *p.Name != "" || p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP {
		t.Errorf("defaulted slice port = %+v", p)
	}
}

func TestServicePredicates(t *testing.T) {
	no := false
	for _, tt := range []struct {
		spec                     corev1.ServiceSpec
		clusterIP, nodePorts, hc bool
	}{
		{corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}, true, false, false},
		{corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "None"}, false, false, false},
		{corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ExternalTrafficPolicy: "Local"}, true, true, false},
		{corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: "Local"}, true, true, true},
		{corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: &no}, true, false, false},
		{corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName}, false, false, false},
	} {
		s := &corev1.Service{Spec: tt.spec}
		if NeedsClusterIP(s) != tt.clusterIP || NeedsNodePorts(s) != tt.nodePorts || NeedsHealthCheckNodePort(s) != tt.hc {
			t.Errorf("%+v: NeedsClusterIP %v NeedsNodePorts %v NeedsHealthCheckNodePort %v", tt.spec,
				NeedsClusterIP(s), NeedsNodePorts(s), NeedsHealthCheckNodePort(s))
		}
	}
}

func TestResolveTargetPort(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{
			{Name: "setup", Ports: []corev1.ContainerPort{{Name: "early", ContainerPort: 1}}},
			{Name: "sidecar", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}}},
		},
		Containers: []corev1.Container{
			{Name: "a", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}},
			{Name: "b", Ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP}, {Name: "http", ContainerPort: 9999, Protocol: corev1.ProtocolUDP}}},
		},
	}}
	for _, tt := range []struct {
		sp   corev1.ServicePort
		want int32
		ok   bool
	}{
		{corev1.ServicePort{Port: 80}, 80, true},
		{corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(81)}, 81, true},
		{corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}, 8080, true},
		{corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolUDP}, 9999, true},
		{corev1.ServicePort{Port: 53, TargetPort: intstr.FromString("dns"), Protocol: corev1.ProtocolTCP}, 0, false},
		{corev1.ServicePort{Port: 53, TargetPort: intstr.FromString("dns"), Protocol: corev1.ProtocolUDP}, 5353, true},
		{corev1.ServicePort{Port: 90, TargetPort: intstr.FromString("metrics")}, 9090, true},
		{corev1.ServicePort{Port: 1, TargetPort: intstr.FromString("early")}, 0, false},
	} {
		got, ok := ResolveTargetPort(pod, &tt.sp)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ResolveTargetPort(%v %s %s) = %d, %v, want %d, %v", tt.sp.Port, tt.sp.Protocol, tt.sp.TargetPort.String(), got, ok, tt.want, tt.ok)
		}
	}
}

// manyServices is a stream of n Services selecting app=web, as the bench
// applies.
func manyServices(n int) string {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-%d\nspec:\n  selector: {app: web}\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n", i)
	}
	return sb.String()
}

func TestDecodeManyInOrder(t *testing.T) {
	in := manyServices(500) + "---\n" + svc("  ports: [{port: 0}]\n") + "---\napiVersion: v1\nkind: Service\nmetadata: {name: svc-7}\nspec: {ports: [{port: 1}]}\n"
	_, err := Decode(strings.NewReader(in), "many.yaml")
	if err == nil {
		t.Fatal("no error")
	}
	want := "many.yaml: document 501 (line 5502): service/web: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive\n" +
		`many.yaml: document 502 (line 5508): service/svc-7: metadata.name: Duplicate value: "svc-7": service/svc-7 is defined twice in namespace default: also at many.yaml: document 8 (line 79)`
	if err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
	docs, err := Decode(strings.NewReader(manyServices(500)), "many.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range docs {
		if name := ObjectName(d.Object); name != fmt.Sprintf("service/svc-%d", i) || d.Index != i+1 {
			t.Fatalf("document %d is %s at %s", i, name, d.Position())
		}
	}
}

// BenchmarkDecode10kServices decodes what the 10,000-Service bench applies.
func BenchmarkDecode10kServices(b *testing.B) {
	in := manyServices(10000)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := Decode(strings.NewReader(in), "many"); err != nil {
			b.Fatal(err)
		}
	}
}
