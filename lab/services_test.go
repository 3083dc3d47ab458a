package lab

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/printer"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// labOnly is a lab of two nodes and nothing else.
const labOnly = `
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: t}
spec:
  nodes: [{name: a}, {name: b}]
`

func newServiceStore(t testing.TB, path, lab string) *Store {
	t.Helper()
	s, err := OpenStore(path, 7)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, lab)
	return s
}

func mustApply(t testing.TB, s *Store, manifest string) []string {
	t.Helper()
	docs, err := cluster.Decode(strings.NewReader(manifest), "test.yaml")
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	res, err := s.Apply(docs)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

// applyErr applies manifest and returns its error, failing the test if there is none.
func applyErr(t *testing.T, s *Store, manifest string) string {
	t.Helper()
	docs, err := cluster.Decode(strings.NewReader(manifest), "test.yaml")
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	_, err = s.Apply(docs)
	if err == nil {
		t.Fatalf("apply succeeded, want an error")
	}
	return err.Error()
}

// service is a Service document.
func service(name, spec string) string {
	return fmt.Sprintf("---\napiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec:\n%s", name, spec)
}

// podDoc is a pod document on node with labels and container ports (YAML flow lists).
func podDoc(name, node, labels, ports string) string {
	return fmt.Sprintf("---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, labels: %s}\nspec:\n  nodeName: %s\n  containers: [{name: c, command: [sleep, infinity], ports: %s}]\n", name, labels, node, ports)
}

func getService(t testing.TB, s *Store, name string) *corev1.Service {
	t.Helper()
	objs, _ := s.Get(cluster.KindService, "default", name)
	if len(objs) != 1 {
		t.Fatalf("service %s: got %d objects", name, len(objs))
	}
	return objs[0].(*corev1.Service)
}

// setPod gives a pod an IP and readiness.
func setPod(t testing.TB, s *Store, name, ip string, ready bool) {
	t.Helper()
	objs, _ := s.Get(cluster.KindPod, "default", name)
	if len(objs) != 1 {
		t.Fatalf("pod %s not found", name)
	}
	p := objs[0].(*corev1.Pod)
	st := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	st.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}}
	if err := s.UpdatePodStatus(p.Namespace, p.Name, p.UID, st); err != nil {
		t.Fatal(err)
	}
}

// slicesOf returns the EndpointSlices of a Service, sorted by name.
func slicesOf(s *Store, svc string) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, sl := range s.EndpointSlices() {
		if sl.Labels[discoveryv1.LabelServiceName] == svc {
			out = append(out, sl)
		}
	}
	return out
}

// endpointsOf describes the endpoints of a Service's slices, one string per slice: its ports
// and its endpoints as pod=address(ready), sorted.
func endpointsOf(s *Store, svc string) []string {
	var out []string
	for _, sl := range slicesOf(s, svc) {
		var ports, eps []string
		for _, p := range sl.Ports {
			ports = append(ports, fmt.Sprintf("%s:%d/%s", *p.Name, *p.Port, *p.Protocol))
		}
		for _, e := range sl.Endpoints {
			h := ""
			if e.Hostname != nil {
				h = "@" + *e.Hostname
			}
			eps = append(eps, fmt.Sprintf("%s=%s(%t)%s", e.TargetRef.Name, e.Addresses[0], *e.Conditions.Ready, h))
		}
		slices.Sort(eps)
		out = append(out, fmt.Sprintf("[%s] %s", strings.Join(ports, ","), strings.Join(eps, " ")))
	}
	slices.Sort(out)
	return out
}

func TestClusterIPAllocation(t *testing.T) {
	s := newServiceStore(t, "", labOnly)
	res := mustApply(t, s, service("one", "  ports: [{port: 80}]\n")+service("two", "  clusterIP: 10.96.0.1\n  ports: [{port: 80}]\n")+
		service("three", "  ports: [{port: 80}]\n")+service("headless", "  clusterIP: None\n")+
		service("ext", "  type: ExternalName\n  externalName: example.com\n"))
	if want := []string{"service/one created", "service/two created", "service/three created", "service/headless created", "service/ext created"}; !slices.Equal(res, want) {
		t.Errorf("results = %v", res)
	}
	// two asked for 10.96.0.1 in the same apply: one, before it, gets the next free one.
	for name, want := range map[string]string{"one": "10.96.0.2", "two": "10.96.0.1", "three": "10.96.0.3", "headless": "None", "ext": ""} {
		svc := getService(t, s, name)
		if svc.Spec.ClusterIP != want {
			t.Errorf("%s: clusterIP %q, want %q", name, svc.Spec.ClusterIP, want)
		}
		if want != "" && !slices.Equal(svc.Spec.ClusterIPs, []string{want}) {
			t.Errorf("%s: clusterIPs %v", name, svc.Spec.ClusterIPs)
		}
		if want == "" && len(svc.Spec.ClusterIPs) != 0 {
			t.Errorf("%s: clusterIPs %v, want none", name, svc.Spec.ClusterIPs)
		}
	}

	for _, tt := range []struct{ ip, want string }{
		{"10.96.0.1", `test.yaml: document 1 (line 2): service/bad: spec.clusterIP: Invalid value: "10.96.0.1": provided IP is already allocated (to service default/two)`},
		{"10.97.0.1", `service/bad: spec.clusterIP: Invalid value: "10.97.0.1": provided IP is not in the valid range: the lab's serviceCIDR is 10.96.0.0/16`},
		{"10.96.0.10", `service/bad: spec.clusterIP: Invalid value: "10.96.0.10": is the lab's cluster DNS address`},
		{"10.96.0.0", `spec.clusterIP: Invalid value: "10.96.0.0": is the network address of serviceCIDR 10.96.0.0/16`},
		{"10.96.255.255", `spec.clusterIP: Invalid value: "10.96.255.255": is the broadcast address of serviceCIDR 10.96.0.0/16`},
	} {
		if err := applyErr(t, s, service("bad", "  clusterIP: "+tt.ip+"\n  ports: [{port: 80}]\n")); !strings.Contains(err, tt.want) {
			t.Errorf("clusterIP %s: error %q, want %q", tt.ip, err, tt.want)
		}
	}

	// Round-robin: a deleted Service's address is not handed out again at once.
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindService, Namespace: "default", Name: "three"}}); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, service("four", "  ports: [{port: 80}]\n"))
	if ip := getService(t, s, "four").Spec.ClusterIP; ip != "10.96.0.4" {
		t.Errorf("four: clusterIP %s, want 10.96.0.4", ip)
	}
}

func TestClusterIPExhaustion(t *testing.T) {
	// A /28: 16 addresses, less network, broadcast and the DNS address (the 10th): 13 to hand out.
	s := newServiceStore(t, "", strings.Replace(labOnly, "spec:\n", "spec:\n  serviceCIDR: 10.100.0.0/28\n", 1))
	var many string
	for i := range 13 {
		many += service(fmt.Sprintf("s%d", i), "  ports: [{port: 80}]\n")
	}
	mustApply(t, s, many)
	seen := map[string]bool{}
	for _, svc := range s.Services() {
		if seen[svc.Spec.ClusterIP] || svc.Spec.ClusterIP == "10.100.0.10" || svc.Spec.ClusterIP == "10.100.0.0" || svc.Spec.ClusterIP == "10.100.0.15" {
			t.Errorf("%s got %s", svc.Name, svc.Spec.ClusterIP)
		}
		seen[svc.Spec.ClusterIP] = true
	}
	err := applyErr(t, s, service("s13", "  ports: [{port: 80}]\n"))
	if want := "service/s13: spec.clusterIP: Internal error: no free address left in serviceCIDR 10.100.0.0/28"; !strings.Contains(err, want) {
		t.Errorf("error %q, want %q", err, want)
	}
	if len(s.Services()) != 13 {
		t.Errorf("services = %d", len(s.Services()))
	}
}

func TestNodePorts(t *testing.T) {
	s := newServiceStore(t, "", labOnly)
	mustApply(t, s, service("np", "  type: NodePort\n  ports: [{name: a, port: 80}, {name: b, port: 53, protocol: UDP, nodePort: 30053}, {name: c, port: 53, nodePort: 30053}]\n")+
		service("lb", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports: [{port: 443}]\n")+
		service("lbnp", "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n  ports: [{port: 8443}]\n"))
	np := getService(t, s, "np")
	if got := []int32{np.Spec.Ports[0].NodePort, np.Spec.Ports[1].NodePort, np.Spec.Ports[2].NodePort}; !slices.Equal(got, []int32{30000, 30053, 30053}) {
		t.Errorf("np nodePorts = %v", got)
	}
	lb := getService(t, s, "lb")
	if lb.Spec.Ports[0].NodePort != 30001 || lb.Spec.HealthCheckNodePort != 30002 {
		t.Errorf("lb nodePort %d healthCheckNodePort %d, want 30001, 30002", lb.Spec.Ports[0].NodePort, lb.Spec.HealthCheckNodePort)
	}
	if p := getService(t, s, "lbnp").Spec.Ports[0].NodePort; p != 0 {
		t.Errorf("lbnp nodePort %d, want none", p)
	}

	// Taken by another Service, under any protocol.
	for _, spec := range []string{
		"  type: NodePort\n  ports: [{port: 80, nodePort: 30053, protocol: UDP}]\n",
		"  type: NodePort\n  ports: [{name: px, port: 80}, {name: py, port: 81, nodePort: 30002}]\n",
	} {
		err := applyErr(t, s, service("other", spec))
		if !strings.Contains(err, "service/other: spec.ports[") || !strings.Contains(err, "].nodePort: Invalid value: ") || !strings.Contains(err, "provided port is already allocated") {
			t.Errorf("duplicate nodePort: %q", err)
		}
	}
	err := applyErr(t, s, service("other", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 30000\n  ports: [{port: 80}]\n"))
	if want := "service/other: spec.healthCheckNodePort: Invalid value: 30000: provided port is already allocated (to service default/np)"; !strings.Contains(err, want) {
		t.Errorf("duplicate healthCheckNodePort: %q", err)
	}

	// Kept across re-applies, by port number and protocol.
	res := mustApply(t, s, service("np", "  type: NodePort\n  ports: [{name: a, port: 80}, {name: b, port: 53, protocol: UDP, nodePort: 30053}, {name: c, port: 53, nodePort: 30053}]\n"))
	if res[0] != "service/np unchanged" {
		t.Errorf("re-apply: %v", res)
	}
	mustApply(t, s, service("lb", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports: [{name: https, port: 443}, {name: x, port: 8080}]\n"))
	if lb := getService(t, s, "lb"); lb.Spec.Ports[0].NodePort != 30001 || lb.Spec.HealthCheckNodePort != 30002 || lb.Spec.Ports[1].NodePort != 30003 {
		t.Errorf("lb after adding a port: %+v, healthCheckNodePort %d", lb.Spec.Ports, lb.Spec.HealthCheckNodePort)
	}
	// Dropping Local releases the health check port.
	mustApply(t, s, service("lb", "  type: LoadBalancer\n  ports: [{name: https, port: 443}, {name: x, port: 8080}]\n"))
	if hc := getService(t, s, "lb").Spec.HealthCheckNodePort; hc != 0 {
		t.Errorf("healthCheckNodePort %d after externalTrafficPolicy Cluster", hc)
	}

	// Type ClusterIP releases the NodePorts; so does deleting the Service.
	mustApply(t, s, service("np", "  ports: [{name: a, port: 80}, {name: b, port: 53, protocol: UDP}, {name: c, port: 53}]\n"))
	for _, p := range getService(t, s, "np").Spec.Ports {
		if p.NodePort != 0 {
			t.Errorf("ClusterIP Service kept nodePort %d", p.NodePort)
		}
	}
	mustApply(t, s, service("other", "  type: NodePort\n  ports: [{port: 80, nodePort: 30053}]\n"))
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindService, Namespace: "default", Name: "lb"}}); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, service("third", "  type: NodePort\n  ports: [{port: 80, nodePort: 30001}]\n"))
}

func TestClusterIPImmutable(t *testing.T) {
	s := newServiceStore(t, "", labOnly)
	mustApply(t, s, service("web", "  ports: [{port: 80}]\n"))
	ip := getService(t, s, "web").Spec.ClusterIP
	before := getService(t, s, "web")
	if res := mustApply(t, s, service("web", "  ports: [{port: 80}]\n")); res[0] != "service/web unchanged" {
		t.Errorf("re-apply without clusterIP: %v", res)
	}
	if getService(t, s, "web") != before {
		t.Error("an unchanged apply replaced the Service object")
	}
	if res := mustApply(t, s, service("web", "  clusterIP: "+ip+"\n  ports: [{port: 80}]\n")); res[0] != "service/web unchanged" {
		t.Errorf("re-apply with the same clusterIP: %v", res)
	}
	if res := mustApply(t, s, service("web", "  ports: [{port: 81}]\n")); res[0] != "service/web configured" || getService(t, s, "web").Spec.ClusterIP != ip {
		t.Errorf("port change: %v, clusterIP %s", res, getService(t, s, "web").Spec.ClusterIP)
	}
	err := applyErr(t, s, service("web", "  clusterIP: 10.96.7.7\n  ports: [{port: 81}]\n"))
	if want := `service/web: spec.clusterIP: Invalid value: "10.96.7.7": field is immutable: the Service has ` + ip; !strings.Contains(err, want) {
		t.Errorf("error %q, want %q", err, want)
	}
	err = applyErr(t, s, service("web", "  clusterIP: None\n  ports: [{port: 81}]\n"))
	if !strings.Contains(err, `spec.clusterIP: Invalid value: "None": field is immutable`) {
		t.Errorf("to headless: %q", err)
	}
	// ExternalName and back: the address is released, and a new one handed out.
	mustApply(t, s, service("web", "  type: ExternalName\n  externalName: example.com\n"))
	if svc := getService(t, s, "web"); svc.Spec.ClusterIP != "" || svc.Spec.ClusterIPs != nil {
		t.Errorf("ExternalName kept %q %v", svc.Spec.ClusterIP, svc.Spec.ClusterIPs)
	}
	mustApply(t, s, service("web", "  ports: [{port: 80}]\n"))
	if got := getService(t, s, "web").Spec.ClusterIP; got != "10.96.0.2" {
		t.Errorf("clusterIP after ExternalName = %s", got)
	}
}

func TestServiceApplyIsAllOrNothing(t *testing.T) {
	s := newServiceStore(t, "", labOnly)
	mustApply(t, s, service("taken", "  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n"))
	lastIP, lastPort := s.state.LastClusterIP, s.state.LastNodePort
	err := applyErr(t, s, service("good", "  type: NodePort\n  ports: [{port: 80}]\n")+service("bad", "  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n")+
		"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n")
	if want := "test.yaml: document 2 (line 9): service/bad: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated (to service default/taken)"; err != want {
		t.Errorf("error:\n%s\nwant:\n%s", err, want)
	}
	if len(s.Services()) != 1 || s.state.LastClusterIP != lastIP || s.state.LastNodePort != lastPort || s.state.Namespaces["dev"] != nil {
		t.Errorf("a failed apply changed the store: %d services, last IP %s port %d", len(s.Services()), s.state.LastClusterIP, s.state.LastNodePort)
	}
	mustApply(t, s, service("good", "  type: NodePort\n  ports: [{port: 80}]\n"))
	if svc := getService(t, s, "good"); svc.Spec.ClusterIP != "10.96.0.2" || svc.Spec.Ports[0].NodePort != 30000 {
		t.Errorf("good got %s and %d: the failed apply consumed something", svc.Spec.ClusterIP, svc.Spec.Ports[0].NodePort)
	}
	// A Service in a namespace that does not exist.
	err = applyErr(t, s, "---\napiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: nowhere}\nspec: {ports: [{port: 80}]}\n")
	if !strings.Contains(err, `service/x: metadata.namespace: Not found: namespaces "nowhere" not found`) {
		t.Errorf("missing namespace: %q", err)
	}
}

func TestServiceDefaultsStored(t *testing.T) {
	s := newServiceStore(t, "", labOnly)
	mustApply(t, s, service("web", "  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80}]\n"))
	svc := getService(t, s, "web")
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityNone || *svc.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack ||
		!slices.Equal(svc.Spec.IPFamilies, []corev1.IPFamily{corev1.IPv4Protocol}) || *svc.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster ||
		svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster || svc.Spec.Ports[0].TargetPort.IntVal != 80 || svc.UID == "" || svc.CreationTimestamp.IsZero() {
		t.Errorf("stored Service lacks its defaults: %+v", svc)
	}
}

func TestLoadBalancerStatus(t *testing.T) {
	s := newServiceStore(t, "", strings.Replace(labOnly, "[{name: a}, {name: b}]", "[{name: a}, {name: b}, {name: c, address: 192.168.1.9}]", 1))
	mustApply(t, s, service("lb", "  type: LoadBalancer\n  ports: [{port: 80}]\n")+service("web", "  ports: [{port: 80}]\n"))
	ingress := func(name string) []string {
		var out []string
		for _, in := range getService(t, s, name).Status.LoadBalancer.Ingress {
			out = append(out, in.IP)
			if in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeVIP {
				t.Errorf("ingress %s has ipMode %v", in.IP, in.IPMode)
			}
		}
		return out
	}
	if got := ingress("lb"); !slices.Equal(got, []string{"127.0.7.1", "127.0.7.2", "192.168.1.9"}) {
		t.Errorf("lb ingress = %v", got)
	}
	if got := ingress("web"); got != nil {
		t.Errorf("ClusterIP ingress = %v", got)
	}
	mustApply(t, s, strings.Replace(labOnly, "[{name: a}, {name: b}]", "[{name: a}, {name: c, address: 192.168.1.9}]", 1))
	if got := ingress("lb"); !slices.Equal(got, []string{"127.0.7.1", "192.168.1.9"}) {
		t.Errorf("lb ingress after removing node b = %v", got)
	}
	// The status survives a re-apply, and goes with the type.
	mustApply(t, s, service("lb", "  type: LoadBalancer\n  ports: [{port: 80}]\n"))
	if got := ingress("lb"); len(got) != 2 {
		t.Errorf("lb ingress after a re-apply = %v", got)
	}
	mustApply(t, s, service("lb", "  ports: [{port: 80}]\n"))
	if got := ingress("lb"); got != nil {
		t.Errorf("ingress after type ClusterIP = %v", got)
	}
}

func TestUnknownTargetPortName(t *testing.T) {
	s := newServiceStore(t, "", labOnly+podDoc("p1", "a", "{app: web}", "[{name: http, containerPort: 8080}]")+podDoc("p2", "b", "{app: web}", "[{name: dns, containerPort: 53, protocol: UDP}]"))
	err := applyErr(t, s, service("web", "  selector: {app: web}\n  ports: [{name: a, port: 80, targetPort: htp}, {name: b, port: 53, targetPort: http, protocol: UDP}]\n"))
	for _, want := range []string{
		`service/web: spec.ports[0].targetPort: Invalid value: "htp": none of the 2 pods the Service selects has a TCP container port of that name (their named TCP ports are http)`,
		`service/web: spec.ports[1].targetPort: Invalid value: "http": none of the 2 pods the Service selects has a UDP container port of that name (their named UDP ports are dns)`,
	} {
		if !strings.Contains(err, want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if len(s.Services()) != 0 {
		t.Error("the Service was applied")
	}
	// One pod declaring it is enough; no pod selected yet is fine too.
	mustApply(t, s, service("web", "  selector: {app: web}\n  ports: [{name: a, port: 80, targetPort: http}, {name: b, port: 53, targetPort: dns, protocol: UDP}]\n")+
		service("later", "  selector: {app: later}\n  ports: [{port: 80, targetPort: nothing-yet}]\n"))
}

func TestEndpointSlices(t *testing.T) {
	pods := podDoc("p1", "a", "{app: web}", "[{name: http, containerPort: 8080}]") +
		podDoc("p2", "b", "{app: web}", "[{name: http, containerPort: 9090}]") +
		podDoc("p3", "a", "{app: web}", "[{name: metrics, containerPort: 9100}]") +
		podDoc("p4", "b", "{app: web}", "[{name: http, containerPort: 8080}]") +
		podDoc("other", "b", "{app: other}", "[{name: http, containerPort: 8080}]")
	s := newServiceStore(t, "", labOnly+pods+service("web", "  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}, {name: raw, port: 81, targetPort: 7000}]\n"))

	// No pod has an IP yet: one placeholder slice.
	sl := slicesOf(s, "web")
	if len(sl) != 1 || len(sl[0].Endpoints) != 0 || sl[0].Ports != nil || !strings.HasPrefix(sl[0].Name, "web-") || len(sl[0].Name) != len("web-")+5 {
		t.Fatalf("placeholder: %+v", sl)
	}
	placeholder := sl[0]
	svc := getService(t, s, "web")
	if ref := sl[0].OwnerReferences; len(ref) != 1 || ref[0].Kind != "Service" || ref[0].Name != "web" || ref[0].UID != svc.UID || !*ref[0].Controller ||
		sl[0].Labels[discoveryv1.LabelManagedBy] != "endpointslice-controller.k8s.io" || sl[0].AddressType != discoveryv1.AddressTypeIPv4 {
		t.Errorf("slice metadata: %+v", sl[0].ObjectMeta)
	}

	setPod(t, s, "p1", "10.244.0.2", true)
	setPod(t, s, "p2", "10.244.1.2", false)
	setPod(t, s, "p3", "10.244.0.3", true)
	setPod(t, s, "other", "10.244.1.9", true)
	// Named ports resolve per pod: p1 and p2 differ, p3 has no http port.
	want := []string{
		"[http:8080/TCP,raw:7000/TCP] p1=10.244.0.2(true)",
		"[http:9090/TCP,raw:7000/TCP] p2=10.244.1.2(false)",
		"[raw:7000/TCP] p3=10.244.0.3(true)",
	}
	if got := endpointsOf(s, "web"); !slices.Equal(got, want) {
		t.Errorf("slices:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !slices.ContainsFunc(slicesOf(s, "web"), func(x *discoveryv1.EndpointSlice) bool { return x.Name == placeholder.Name && x.UID == placeholder.UID }) {
		t.Errorf("the placeholder %s was not reused", placeholder.Name)
	}
	for _, x := range slicesOf(s, "web") {
		e := x.Endpoints[0]
		if *e.Conditions.Serving != *e.Conditions.Ready || *e.Conditions.Terminating || e.NodeName == nil || e.TargetRef.Kind != "Pod" || e.TargetRef.Namespace != "default" || e.TargetRef.UID == "" {
			t.Errorf("endpoint %+v", e)
		}
	}

	// An unrelated change leaves the slices alone; a change of readiness replaces one slice,
	// keeping its name and UID.
	before := slicesOf(s, "web")
	setPod(t, s, "other", "10.244.1.9", false)
	if after := slicesOf(s, "web"); !slices.Equal(before, after) {
		t.Error("a pod the Service does not select changed its slices")
	}
	setPod(t, s, "p1", "10.244.0.2", true) // the same status again
	if after := slicesOf(s, "web"); !slices.Equal(before, after) {
		t.Error("an unchanged pod status changed the slices")
	}
	setPod(t, s, "p2", "10.244.1.2", true)
	after := slicesOf(s, "web")
	changed := 0
	for i := range after {
		if after[i] != before[i] {
			changed++
			if after[i].Name != before[i].Name || after[i].UID != before[i].UID || after[i].Generation != before[i].Generation+1 {
				t.Errorf("replaced slice %s/%s gen %d, was %s/%s gen %d", after[i].Name, after[i].UID, after[i].Generation, before[i].Name, before[i].UID, before[i].Generation)
			}
		}
	}
	if changed != 1 {
		t.Errorf("%d slices replaced, want 1", changed)
	}

	// A new pod joins the slice of its ports; a deleted or terminated one leaves.
	setPod(t, s, "p4", "10.244.1.3", true)
	want = []string{
		"[http:8080/TCP,raw:7000/TCP] p1=10.244.0.2(true) p4=10.244.1.3(true)",
		"[http:9090/TCP,raw:7000/TCP] p2=10.244.1.2(true)",
		"[raw:7000/TCP] p3=10.244.0.3(true)",
	}
	if got := endpointsOf(s, "web"); !slices.Equal(got, want) {
		t.Errorf("after p4:\n%s", strings.Join(got, "\n"))
	}
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindPod, Namespace: "default", Name: "p1"}}); err != nil {
		t.Fatal(err)
	}
	objs, _ := s.Get(cluster.KindPod, "default", "p3")
	p3 := objs[0].(*corev1.Pod)
	if err := s.UpdatePodStatus("default", "p3", p3.UID, corev1.PodStatus{Phase: corev1.PodSucceeded, PodIP: "10.244.0.3"}); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"[http:8080/TCP,raw:7000/TCP] p4=10.244.1.3(true)",
		"[http:9090/TCP,raw:7000/TCP] p2=10.244.1.2(true)",
	}
	if got := endpointsOf(s, "web"); !slices.Equal(got, want) {
		t.Errorf("after deleting p1 and p3 terminating:\n%s", strings.Join(got, "\n"))
	}

	// A slice deleted by hand is made again; deleting the Service deletes its slices.
	victim := slicesOf(s, "web")[0]
	res, err := s.Delete([]ObjectRef{{Kind: cluster.KindEndpointSlice, Namespace: "default", Name: victim.Name}})
	if err != nil || res[0] != fmt.Sprintf("endpointslice.discovery.k8s.io %q deleted", victim.Name) {
		t.Fatalf("delete slice: %v %v", res, err)
	}
	if got := endpointsOf(s, "web"); !slices.Equal(got, want) {
		t.Errorf("after deleting a slice:\n%s", strings.Join(got, "\n"))
	}
	for _, x := range slicesOf(s, "web") {
		if x.Name == victim.Name {
			t.Error("the deleted slice came back under its name")
		}
	}
	res, err = s.Delete([]ObjectRef{{Kind: cluster.KindService, Namespace: "default", Name: "web"}})
	if err != nil || res[0] != `service "web" deleted` {
		t.Fatalf("delete service: %v %v", res, err)
	}
	if n := len(s.EndpointSlices()); n != 0 {
		t.Errorf("%d slices left after deleting the Service", n)
	}
}

func TestEndpointSlicesManyPods(t *testing.T) {
	var pods strings.Builder
	for i := range 250 {
		pods.WriteString(podDoc(fmt.Sprintf("p%03d", i), "a", "{app: web}", "[]"))
	}
	s := newServiceStore(t, "", labOnly+pods.String()+service("web", "  selector: {app: web}\n  publishNotReadyAddresses: true\n  ports: [{port: 80}]\n"))
	for i := range 250 {
		setPod(t, s, fmt.Sprintf("p%03d", i), fmt.Sprintf("10.244.0.%d", i+2), i%2 == 0)
	}
	sl := slicesOf(s, "web")
	var sizes []int
	total := 0
	for _, x := range sl {
		sizes = append(sizes, len(x.Endpoints))
		total += len(x.Endpoints)
		for _, e := range x.Endpoints {
			if !*e.Conditions.Ready {
				t.Fatalf("publishNotReadyAddresses: endpoint %s not ready", e.Addresses[0])
			}
		}
	}
	slices.Sort(sizes)
	if total != 250 || sizes[len(sizes)-1] > 100 || len(sl) != 3 {
		t.Errorf("slice sizes %v, want 250 endpoints in 3 slices of at most 100", sizes)
	}
	// Serving still tells readiness.
	serving := 0
	for _, x := range sl {
		for _, e := range x.Endpoints {
			if *e.Conditions.Serving {
				serving++
			}
		}
	}
	if serving != 125 {
		t.Errorf("%d serving endpoints, want 125", serving)
	}
}

func TestEndpointSlicesHeadlessAndHostname(t *testing.T) {
	pod := "---\napiVersion: v1\nkind: Pod\nmetadata: {name: db-0, labels: {app: db}}\nspec:\n  hostname: db-0\n  subdomain: db\n  nodeName: a\n  containers: [{name: c, command: [sleep, infinity]}]\n"
	s := newServiceStore(t, "", labOnly+pod+strings.Replace(service("db", "  clusterIP: None\n  selector: {app: db}\n"), "metadata: {name: db}", "metadata: {name: db, labels: {tier: data}}", 1)+
		service("other", "  selector: {app: db}\n  ports: [{port: 5432}]\n"))
	setPod(t, s, "db-0", "10.244.0.7", true)
	if got := endpointsOf(s, "db"); !slices.Equal(got, []string{"[] db-0=10.244.0.7(true)@db-0"}) {
		t.Errorf("headless: %v", got)
	}
	sl := slicesOf(s, "db")[0]
	if _, ok := sl.Labels[cluster.LabelHeadless]; !ok || sl.Labels["tier"] != "data" || sl.Labels[discoveryv1.LabelServiceName] != "db" {
		t.Errorf("headless slice labels %v", sl.Labels)
	}
	// The hostname is only for the Service the subdomain names.
	if got := endpointsOf(s, "other"); !slices.Equal(got, []string{"[:5432/TCP] db-0=10.244.0.7(true)"}) {
		t.Errorf("other: %v", got)
	}
}

func TestUserEndpointSlices(t *testing.T) {
	s := newServiceStore(t, "", labOnly+service("ext", "  ports: [{name: db, port: 5432}]\n")+service("web", "  selector: {app: web}\n  ports: [{port: 80}]\n"))
	user := "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: ext-1, labels: {kubernetes.io/service-name: ext}}\naddressType: IPv4\nendpoints: [{addresses: [192.168.1.20]}]\nports: [{name: db, port: 5432}]\n"
	if res := mustApply(t, s, user); res[0] != "endpointslice.discovery.k8s.io/ext-1 created" {
		t.Errorf("apply user slice: %v", res)
	}
	if res := mustApply(t, s, user); res[0] != "endpointslice.discovery.k8s.io/ext-1 unchanged" {
		t.Errorf("re-apply user slice: %v", res)
	}
	if res := mustApply(t, s, strings.Replace(user, "192.168.1.20", "192.168.1.21", 1)); res[0] != "endpointslice.discovery.k8s.io/ext-1 configured" {
		t.Errorf("change user slice: %v", res)
	}
	if got := slicesOf(s, "ext"); len(got) != 1 || got[0].Endpoints[0].Addresses[0] != "192.168.1.21" || got[0].Generation != 2 {
		t.Errorf("ext slices: %+v", got)
	}
	// Taking the name of a slice the controller made is refused.
	managed := slicesOf(s, "web")[0].Name
	err := applyErr(t, s, strings.Replace(user, "name: ext-1", "name: "+managed, 1))
	if want := "endpointslice.discovery.k8s.io/" + managed + ": metadata.name: Forbidden: the lab's EndpointSlice controller made this slice for service default/web"; !strings.Contains(err, want) {
		t.Errorf("error %q, want %q", err, want)
	}
	// The controller leaves user slices alone, even when Services change.
	mustApply(t, s, service("web", "  selector: {app: web2}\n  ports: [{port: 80}]\n"))
	if got := slicesOf(s, "ext"); len(got) != 1 {
		t.Errorf("user slice gone: %v", got)
	}
}

func TestNamespaceDeletionTakesServices(t *testing.T) {
	s := newServiceStore(t, "", labOnly+"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n"+
		"---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: dev}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n"+
		"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: mine, namespace: dev, labels: {kubernetes.io/service-name: x}}\naddressType: IPv4\nendpoints: []\n"+
		service("stays", "  selector: {app: web}\n  ports: [{port: 80}]\n"))
	if n := len(s.EndpointSlices()); n != 3 {
		t.Fatalf("slices = %d, want 3", n)
	}
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindNamespace, Name: "dev"}}); err != nil {
		t.Fatal(err)
	}
	if len(s.Services()) != 1 || len(s.EndpointSlices()) != 1 || s.Services()[0].Name != "stays" {
		t.Errorf("after deleting namespace dev: %d services, %d slices", len(s.Services()), len(s.EndpointSlices()))
	}
}

func TestGetServicesAndSlices(t *testing.T) {
	s := newServiceStore(t, "", labOnly+"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n"+
		service("b", "  selector: {app: x}\n  ports: [{port: 80}]\n")+service("a", "  ports: [{port: 80}]\n")+
		"---\napiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: dev}\nspec: {ports: [{port: 80}]}\n")
	names := func(ns, name string) []string {
		objs, err := s.Get(cluster.KindService, ns, name)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range objs {
			svc := o.(*corev1.Service)
			out = append(out, svc.Namespace+"/"+svc.Name)
		}
		return out
	}
	if got := names("", ""); !slices.Equal(got, []string{"default/a", "default/b", "dev/a"}) {
		t.Errorf("all services: %v", got)
	}
	if got := names("default", ""); !slices.Equal(got, []string{"default/a", "default/b"}) {
		t.Errorf("default services: %v", got)
	}
	if got := names("dev", "a"); !slices.Equal(got, []string{"dev/a"}) {
		t.Errorf("dev/a: %v", got)
	}
	if got := names("", "a"); !slices.Equal(got, []string{"default/a", "dev/a"}) {
		t.Errorf("a in all namespaces: %v", got)
	}
	objs, _ := s.Get(cluster.KindEndpointSlice, "default", "")
	if len(objs) != 1 || objs[0].(*discoveryv1.EndpointSlice).Labels[discoveryv1.LabelServiceName] != "b" {
		t.Errorf("endpointslices: %v", objs)
	}
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindService, Namespace: "default", Name: "nope"}}); err == nil || !strings.Contains(err.Error(), `services "nope" not found`) {
		t.Errorf("delete missing service: %v", err)
	}
	// The accessors are cached per version and sorted.
	if a, b := s.Services(), s.Services(); &a[0] != &b[0] {
		t.Error("Services() built its list twice for one version")
	}
}

func TestServicesPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.json")
	s := newServiceStore(t, path, labOnly+podDoc("p1", "a", "{app: web}", "[{name: http, containerPort: 8080}]")+
		service("web", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n")+
		"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: mine, labels: {kubernetes.io/service-name: x}}\naddressType: IPv4\nendpoints: [{addresses: [1.2.3.4]}]\n")
	setPod(t, s, "p1", "10.244.0.2", true)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	reopened, err := OpenStore(path, 99)
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]any{{s.Services(), reopened.Services()}, {s.EndpointSlices(), reopened.EndpointSlices()}} {
		a, _ := json.Marshal(pair[0])
		b, _ := json.Marshal(pair[1])
		if string(a) != string(b) {
			t.Errorf("after reopening:\n%s\nwas:\n%s", b, a)
		}
	}
	// The reopened store goes on where it was: slices kept, the next address after the last.
	before := slicesOf(reopened, "web")
	setPod(t, reopened, "p1", "10.244.0.2", true)
	mustApply(t, reopened, service("next", "  type: NodePort\n  ports: [{port: 80}]\n"))
	if after := slicesOf(reopened, "web"); len(after) != 1 || after[0].Name != before[0].Name || after[0].UID != before[0].UID {
		t.Errorf("slices after reopening: %v, were %v", after, before)
	}
	if svc := getService(t, reopened, "next"); svc.Spec.ClusterIP != "10.96.0.2" || svc.Spec.Ports[0].NodePort != 30002 {
		t.Errorf("next: %s %d", svc.Spec.ClusterIP, svc.Spec.Ports[0].NodePort)
	}
}

func TestStateEncoderMatchesJSON(t *testing.T) {
	s := newServiceStore(t, "", labOnly+podDoc("p1", "a", "{app: web}", "[{name: http, containerPort: 8080}]")+podDoc("p2", "b", "{app: web}", "[{name: http, containerPort: 8080}]")+
		service("web", "  type: LoadBalancer\n  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n")+
		service("web2", "  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n")+
		"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: mine, labels: {kubernetes.io/service-name: x, odd: \"a-b\"}, annotations: {note: \"<&>\\\"quoted\\\"\"}}\naddressType: IPv4\nendpoints: [{addresses: [1.2.3.4]}]\n")
	setPod(t, s, "p1", "10.244.0.2", true)
	setPod(t, s, "p2", "10.244.1.2", false)
	var e stateEncoder
	for range 2 { // the second time from the cache
		var buf strings.Builder
		if err := e.encode(&buf, s.state); err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(s.state)
		if err != nil {
			t.Fatal(err)
		}
		var got, exp any
		if err := json.Unmarshal([]byte(buf.String()), &got); err != nil {
			t.Fatalf("the encoding is not JSON: %v\n%s", err, buf.String())
		}
		json.Unmarshal(want, &exp)
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(exp)
		if string(g) != string(w) {
			t.Fatalf("encoding differs from encoding/json:\n%s\nwant:\n%s", g, w)
		}
	}
	if len(e.cache) == 0 {
		t.Error("nothing cached")
	}
}

func TestUnchangedApplyIsNotCommitted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.json")
	file := labOnly + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev, labels: {a: b}}\n" +
		podDoc("p1", "a", "{app: web}", "[]") + service("web", "  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80}]\n") +
		"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: d}}\n  template:\n    metadata: {labels: {app: d}}\n    spec: {containers: [{name: c, command: [sleep, infinity]}]}\n"
	s := newServiceStore(t, path, file)
	ch, cancel := s.Subscribe()
	defer cancel()
	v := s.version
	res := mustApply(t, s, file)
	for _, r := range res {
		if !strings.HasSuffix(r, " unchanged") {
			t.Errorf("re-apply: %s", r)
		}
	}
	select {
	case <-ch:
		t.Error("an apply that changed nothing woke the subscribers")
	default:
	}
	if s.version != v {
		t.Errorf("an apply that changed nothing made version %d of %d", s.version, v)
	}
}

func TestServiceTables(t *testing.T) {
	s := newServiceStore(t, "", labOnly+podDoc("p1", "a", "{app: web}", "[{name: http, containerPort: 8080}]")+
		service("web", "  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}, {name: https, port: 443}]\n")+
		service("np", "  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, nodePort: 30080}]\n")+
		service("lb", "  type: LoadBalancer\n  ports: [{port: 80}]\n")+
		service("db", "  clusterIP: None\n  selector: {app: db}\n")+
		service("ext", "  type: ExternalName\n  externalName: example.com\n"))
	setPod(t, s, "p1", "10.244.0.2", true)
	svcs, _ := s.Get(cluster.KindService, "default", "")
	var b strings.Builder
	if err := printer.Table(&b, svcs, printer.Options{Wide: true, Now: s.now()}); err != nil {
		t.Fatal(err)
	}
	want := `NAME   TYPE           CLUSTER-IP   EXTERNAL-IP           PORT(S)          AGE   SELECTOR
db     ClusterIP      None         <none>                <none>           0s    app=db
ext    ExternalName   <none>       example.com           <none>           0s    <none>
lb     LoadBalancer   10.96.0.3    127.0.7.1,127.0.7.2   80:30000/TCP     0s    <none>
np     NodePort       10.96.0.2    <none>                80:30080/TCP     0s    app=web
web    ClusterIP      10.96.0.1    <none>                80/TCP,443/TCP   0s    app=web
`
	if b.String() != want {
		t.Errorf("podnet get svc -o wide:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	objs, _ := s.Get(cluster.KindEndpointSlice, "default", "")
	if err := printer.Table(&b, objs, printer.Options{Now: s.now()}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "NAME ADDRESSTYPE PORTS ENDPOINTS AGE" {
		t.Fatalf("podnet get endpointslices:\n%s", b.String())
	}
	var rows []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		rows = append(rows, strings.Join(f[1:], " ")) // the names are random
	}
	slices.Sort(rows)
	if want := []string{"IPv4 80 10.244.0.2 0s", "IPv4 8080,443 10.244.0.2 0s", "IPv4 <unset> <unset> 0s"}; !slices.Equal(rows, want) {
		t.Errorf("endpointslice rows %q, want %q", rows, want)
	}
}
