package printer

import (
	"bytes"
	"errors"
	"github.com/podnet/podnet/internal/depcheck"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// golden trims the leading newline of a raw-string table so that expected
// output can be written flush left.
func golden(s string) string { return strings.TrimPrefix(s, "\n") }

func pods() []runtime.Object {
	return []runtime.Object{
		runningPod("default", "web-1", "10.244.0.5", "node-a", 5*time.Minute),
		crashingPod("default", "web-2"),
		pendingPod("kube-system", "p"),
	}
}

func nodes() []runtime.Object {
	return []runtime.Object{
		readyNode("node-a", "127.0.1.1", "10.244.0.0/24", "pB0tZlVfwEoEG4Q0F6bKgNqjrwQy8m0VwCjWWxg4kCM=", 49*time.Hour),
		readyNode("node-b", "127.0.1.2", "10.244.1.0/24", "", 3*time.Hour),
	}
}

func TestTable(t *testing.T) {
	notReady := readyNode("node-c", "127.0.1.3", "", "", 90*time.Second)
	notReady.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}}
	notReady.Spec.Unschedulable = true
	notReady.Labels = map[string]string{
		"node-role.kubernetes.io/control-plane": "",
		"node-role.kubernetes.io/":              "", // no role: ignored
		"kubernetes.io/role":                    "worker",
	}
	notReady.Status.Addresses = append(notReady.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.9"})
	notReady.Status.NodeInfo = corev1.NodeSystemInfo{}

	ingresses := []runtime.Object{
		&networkingv1.Ingress{
			ObjectMeta: meta("default", "web", time.Hour),
			Spec: networkingv1.IngressSpec{
				IngressClassName: ptr("podnet"),
				Rules:            []networkingv1.IngressRule{{Host: "web.example"}},
			},
			Status: networkingv1.IngressStatus{LoadBalancer: networkingv1.IngressLoadBalancerStatus{
				Ingress: []networkingv1.IngressLoadBalancerIngress{{IP: "127.0.1.1"}},
			}},
		},
		&networkingv1.Ingress{
			ObjectMeta: meta("default", "many", time.Hour),
			Spec: networkingv1.IngressSpec{
				TLS: []networkingv1.IngressTLS{{Hosts: []string{"a.example"}}},
				Rules: []networkingv1.IngressRule{
					{Host: "a.example"}, {}, {Host: "b.example"}, {Host: "c.example"}, {Host: "d.example"},
				},
			},
			Status: networkingv1.IngressStatus{LoadBalancer: networkingv1.IngressLoadBalancerStatus{
				Ingress: []networkingv1.IngressLoadBalancerIngress{{IP: "192.168.100.201"}, {Hostname: "lb.example"}},
			}},
		},
		&networkingv1.Ingress{ObjectMeta: meta("default", "catch-all", time.Hour)},
	}
	ingressClasses := []runtime.Object{
		&networkingv1.IngressClass{ObjectMeta: meta("", "external-lb", 2*time.Hour), Spec: networkingv1.IngressClassSpec{
			Controller: "example.com/ingress-controller",
			Parameters: &networkingv1.IngressClassParametersReference{APIGroup: ptr("k8s.example.com"), Kind: "IngressParameters", Name: "external-lb"},
		}},
		&networkingv1.IngressClass{ObjectMeta: meta("", "local", 2*time.Hour), Spec: networkingv1.IngressClassSpec{
			Controller: "example.com/other",
			Parameters: &networkingv1.IngressClassParametersReference{Kind: "ConfigMap", Name: "p", Scope: ptr("Namespace"), Namespace: ptr("dev")},
		}},
		&networkingv1.IngressClass{ObjectMeta: meta("", "podnet", time.Hour), Spec: networkingv1.IngressClassSpec{Controller: "podnet.dev/ingress-controller"}},
	}
	secrets := []runtime.Object{
		&corev1.Secret{ObjectMeta: meta("default", "empty", time.Hour), Type: corev1.SecretTypeOpaque},
		&corev1.Secret{ObjectMeta: meta("default", "web-tls", time.Hour), Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": []byte("c"), "tls.key": []byte("k")}},
		&corev1.Secret{ObjectMeta: meta("dev", "untyped", time.Minute), Data: map[string][]byte{"a": nil}},
	}

	tests := []struct {
		name string
		objs []runtime.Object
		opts Options
		want string
	}{
		{
			name: "pods",
			objs: pods(),
			want: golden(`
NAME    READY   STATUS             RESTARTS      AGE
web-1   1/1     Running            0             5m
web-2   0/1     CrashLoopBackOff   4 (70s ago)   3h
p       0/2     Pending            0             12s
`),
		},
		{
			name: "pods wide",
			objs: pods(),
			opts: Options{Wide: true},
			want: golden(`
NAME    READY   STATUS             RESTARTS      AGE   IP           NODE     NOMINATED NODE   READINESS GATES
web-1   1/1     Running            0             5m    10.244.0.5   node-a   <none>           <none>
web-2   0/1     CrashLoopBackOff   4 (70s ago)   3h    10.244.1.7   node-b   <none>           <none>
p       0/2     Pending            0             12s   <none>       <none>   <none>           <none>
`),
		},
		{
			name: "pods all namespaces",
			objs: pods(),
			opts: Options{AllNamespaces: true},
			want: golden(`
NAMESPACE     NAME    READY   STATUS             RESTARTS      AGE
default       web-1   1/1     Running            0             5m
default       web-2   0/1     CrashLoopBackOff   4 (70s ago)   3h
kube-system   p       0/2     Pending            0             12s
`),
		},
		{
			name: "pods all namespaces wide without headers",
			objs: pods()[:1],
			opts: Options{AllNamespaces: true, Wide: true, NoHeaders: true},
			want: "default   web-1   1/1   Running   0     5m    10.244.0.5   node-a   <none>   <none>\n",
		},
		{
			name: "nodes",
			objs: append(nodes(), notReady),
			want: golden(`
NAME     STATUS                        ROLES                  AGE    VERSION
node-a   Ready                         <none>                 2d1h   v1.33.0-podnet
node-b   Ready                         <none>                 3h     v1.33.0-podnet
node-c   NotReady,SchedulingDisabled   control-plane,worker   90s    
`),
		},
		{
			name: "nodes wide",
			objs: append(nodes(), notReady),
			opts: Options{Wide: true},
			want: golden(`
NAME     STATUS                        ROLES                  AGE    VERSION          INTERNAL-IP   EXTERNAL-IP   OS-IMAGE                         KERNEL-VERSION   CONTAINER-RUNTIME   POD-CIDR        WIREGUARD-KEY
node-a   Ready                         <none>                 2d1h   v1.33.0-podnet   127.0.1.1     <none>        Debian GNU/Linux 12 (bookworm)   6.1.0-18-amd64   podnet://0.1.0      10.244.0.0/24   pB0tZlVfwEoEG4Q0F6bKgNqjrwQy8m0VwCjWWxg4kCM=
node-b   Ready                         <none>                 3h     v1.33.0-podnet   127.0.1.2     <none>        Debian GNU/Linux 12 (bookworm)   6.1.0-18-amd64   podnet://0.1.0      10.244.1.0/24   <none>
node-c   NotReady,SchedulingDisabled   control-plane,worker   90s                     127.0.1.3     203.0.113.9   <unknown>                        <unknown>        <unknown>           <none>          <none>
`),
		},
		{
			name: "nodes are cluster-scoped: no NAMESPACE column with -A",
			objs: nodes(),
			opts: Options{AllNamespaces: true},
			want: golden(`
NAME     STATUS   ROLES    AGE    VERSION
node-a   Ready    <none>   2d1h   v1.33.0-podnet
node-b   Ready    <none>   3h     v1.33.0-podnet
`),
		},
		{
			name: "namespaces",
			objs: []runtime.Object{
				&corev1.Namespace{ObjectMeta: meta("", "default", 49*time.Hour), Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}},
				&corev1.Namespace{ObjectMeta: meta("", "old", 30*time.Minute), Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}},
			},
			opts: Options{AllNamespaces: true},
			want: golden(`
NAME      STATUS        AGE
default   Active        2d1h
old       Terminating   30m
`),
		},
		{
			name: "services",
			objs: services(),
			want: golden(`
NAME         TYPE           CLUSTER-IP    EXTERNAL-IP        PORT(S)                     AGE
kubernetes   ClusterIP      10.96.0.1     <none>             443/TCP                     2d1h
web          NodePort       10.96.12.34   <none>             80:30080/TCP,53:30053/UDP   5m
headless     ClusterIP      None          <none>             <none>                      90s
lb           LoadBalancer   10.96.7.7     192.168.100.2...   8080:31000/TCP              10m
ext          ExternalName   <none>        example.com        <none>                      10m
`),
		},
		{
			name: "services wide all namespaces",
			objs: services(),
			opts: Options{Wide: true, AllNamespaces: true},
			want: golden(`
NAMESPACE   NAME         TYPE           CLUSTER-IP    EXTERNAL-IP                       PORT(S)                     AGE    SELECTOR
default     kubernetes   ClusterIP      10.96.0.1     <none>                            443/TCP                     2d1h   <none>
default     web          NodePort       10.96.12.34   <none>                            80:30080/TCP,53:30053/UDP   5m     app=web
default     headless     ClusterIP      None          <none>                            <none>                      90s    app=db,tier=data
default     lb           LoadBalancer   10.96.7.7     192.168.100.200,192.168.100.201   8080:31000/TCP              10m    <none>
default     ext          ExternalName   <none>        example.com                       <none>                      10m    <none>
`),
		},
		{
			name: "deployments",
			objs: []runtime.Object{deployment("default", "web", 3, 2, time.Hour), deployment("default", "db", 1, 1, 2*time.Minute)},
			want: golden(`
NAME   READY   UP-TO-DATE   AVAILABLE   AGE
web    2/3     3            2           60m
db     1/1     1            1           2m
`),
		},
		{
			name: "deployments wide",
			objs: func() []runtime.Object {
				d := deployment("default", "mixed", 2, 0, time.Minute)
				d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", Image: "busybox"}, {Name: "sidecar"}}
				return []runtime.Object{deployment("default", "web", 3, 2, time.Hour), d}
			}(),
			opts: Options{Wide: true},
			want: golden(`
NAME    READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS    IMAGES     SELECTOR
web     2/3     3            2           60m   web           <none>     app=web
mixed   0/2     2            0           60s   app,sidecar   busybox,   app=mixed
`),
		},
		{
			name: "endpointslices",
			objs: endpointSlices(),
			want: golden(`
NAME         ADDRESSTYPE   PORTS                   ENDPOINTS                                      AGE
web-abcde    IPv4          80                      10.244.0.5,10.244.1.7,10.244.2.9 + 2 more...   5m
empty-xyz    IPv4          <unset>                 <unset>                                        60s
many-ports   IPv6          1,named,* + 1 more...   fd00::1,fd00::2                                60s
`),
		},
		{
			name: "networkpolicies",
			objs: []runtime.Object{
				&networkingv1.NetworkPolicy{ObjectMeta: meta("default", "default-deny", time.Hour)},
				&networkingv1.NetworkPolicy{
					ObjectMeta: meta("prod", "allow-web", 3*time.Minute),
					Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{
						MatchLabels: map[string]string{"app": "web"},
						MatchExpressions: []metav1.LabelSelectorRequirement{
							{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}},
						},
					}},
				},
			},
			opts: Options{AllNamespaces: true},
			want: golden(`
NAMESPACE   NAME           POD-SELECTOR            AGE
default     default-deny   <none>                  60m
prod        allow-web      app=web,tier in (a,b)   3m
`),
		},
		{
			name: "ingresses",
			objs: ingresses,
			want: golden(`
NAME        CLASS    HOSTS                                       ADDRESS            PORTS     AGE
web         podnet   web.example                                 127.0.1.1          80        60m
many        <none>   a.example,b.example,c.example + 2 more...   192.168.100.2...   80, 443   60m
catch-all   <none>   *                                                              80        60m
`),
		},
		{
			name: "ingresses wide",
			objs: ingresses[1:2],
			opts: Options{Wide: true},
			want: golden(`
NAME   CLASS    HOSTS                                       ADDRESS                      PORTS     AGE
many   <none>   a.example,b.example,c.example + 2 more...   192.168.100.201,lb.example   80, 443   60m
`),
		},
		{
			name: "ingressclasses, all namespaces (they have none)",
			objs: ingressClasses,
			opts: Options{AllNamespaces: true},
			want: golden(`
NAME          CONTROLLER                       PARAMETERS                                      AGE
external-lb   example.com/ingress-controller   IngressParameters.k8s.example.com/external-lb   120m
local         example.com/other                ConfigMap/p                                     120m
podnet        podnet.dev/ingress-controller    <none>                                          60m
`),
		},
		{
			name: "secrets",
			objs: secrets,
			opts: Options{AllNamespaces: true},
			want: golden(`
NAMESPACE   NAME      TYPE                DATA   AGE
default     empty     Opaque              0      60m
default     web-tls   kubernetes.io/tls   2      60m
dev         untyped                       1      60s
`),
		},
		{
			name: "empty list prints nothing",
			objs: nil,
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Now = now
			var b bytes.Buffer
			if err := Table(&b, tt.objs, tt.opts); err != nil {
				t.Fatalf("Table: %v", err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("Table output mismatch\n got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestTableErrors(t *testing.T) {
	tests := []struct {
		name    string
		objs    []runtime.Object
		wantErr string
	}{
		{"unknown type", []runtime.Object{&corev1.ConfigMap{}}, "*v1.ConfigMap"},
		{"mixed types", []runtime.Object{pods()[0], nodes()[0]}, "*v1.Node in a list of *v1.Pod"},
		{"nil object", []runtime.Object{pods()[0], nil}, "object 1 is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := Table(&b, tt.objs, Options{Now: now})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Table error = %v, want one containing %q", err, tt.wantErr)
			}
			if b.Len() != 0 {
				t.Errorf("Table wrote %q despite the error", b.String())
			}
		})
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestTableWriteError(t *testing.T) {
	if err := Table(failingWriter{}, pods(), Options{Now: now}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Table error = %v, want the writer's error", err)
	}
}

func TestTableDefaultsNowToTimeNow(t *testing.T) {
	p := runningPod("default", "web", "10.244.0.5", "node-a", 0)
	p.CreationTimestamp = metav1.NewTime(time.Now().Add(-5 * time.Minute))
	var b bytes.Buffer
	if err := Table(&b, []runtime.Object{p}, Options{NoHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); !strings.HasSuffix(got, "   5m\n") {
		t.Errorf("AGE of a pod created 5 minutes ago: got line %q", got)
	}
}

func TestTableUnknownAge(t *testing.T) {
	p := runningPod("default", "web", "10.244.0.5", "node-a", 0)
	p.CreationTimestamp = metav1.Time{}
	var b bytes.Buffer
	if err := Table(&b, []runtime.Object{p}, Options{Now: now, NoHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); !strings.HasSuffix(got, "   <unknown>\n") {
		t.Errorf("AGE without creationTimestamp: got line %q", got)
	}
}

func TestTableSanitizesCells(t *testing.T) {
	p := pendingPod("default", "p")
	p.Status.Phase = ""
	p.Status.Reason = "Bad\nthing\x1b[31m"
	var b bytes.Buffer
	if err := Table(&b, []runtime.Object{p}, Options{Now: now, NoHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "p     0/2   Bad...   0     12s\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestTableDoesNotModifyObjects(t *testing.T) {
	objs := append(pods(), nodes()...)
	before := make([]runtime.Object, len(objs))
	for i, o := range objs {
		before[i] = o.DeepCopyObject()
	}
	var b bytes.Buffer
	_ = Table(&b, objs[:3], Options{Now: now, Wide: true, AllNamespaces: true})
	_ = Table(&b, objs[3:], Options{Now: now, Wide: true, AllNamespaces: true})
	for i := range objs {
		if !equalObjects(before[i], objs[i]) {
			t.Errorf("object %d was modified", i)
		}
	}
}

func TestNoResources(t *testing.T) {
	tests := []struct {
		ns   string
		all  bool
		want string
	}{
		{"default", false, "No resources found in default namespace."},
		{"kube-system", false, "No resources found in kube-system namespace."},
		{"default", true, "No resources found"},
		{"", false, "No resources found"},
	}
	for _, tt := range tests {
		if got := NoResources(tt.ns, tt.all); got != tt.want {
			t.Errorf("NoResources(%q, %v) = %q, want %q", tt.ns, tt.all, got, tt.want)
		}
	}
}

func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		if depcheck.IsOurs(dep) && dep != "github.com/podnet/podnet/printer" {
			return "printer must not depend on the rest of podnet"
		}
		return ""
	}, ".")
}
