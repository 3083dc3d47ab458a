package printer

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// equalObjects compares API objects as the API machinery does (times by
// instant, not by location).
func equalObjects(a, b runtime.Object) bool { return apiequality.Semantic.DeepEqual(a, b) }

// allKinds returns one object of every kind Table supports, none with
// apiVersion and kind set.
func allKinds() []runtime.Object {
	objs := []runtime.Object{
		runningPod("default", "web-1", "10.244.0.5", "node-a", 5*time.Minute),
		crashingPod("default", "web-2"),
		nodes()[0],
		&corev1.Namespace{ObjectMeta: meta("", "default", time.Hour), Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}},
		deployment("default", "web", 3, 2, time.Hour),
		&networkingv1.NetworkPolicy{ObjectMeta: meta("default", "deny", time.Hour)},
		&networkingv1.Ingress{ObjectMeta: meta("default", "web", time.Hour), Spec: networkingv1.IngressSpec{IngressClassName: ptr("podnet")}},
		&networkingv1.IngressClass{ObjectMeta: meta("", "podnet", time.Hour), Spec: networkingv1.IngressClassSpec{Controller: "podnet.dev/ingress-controller"}},
		&corev1.Secret{ObjectMeta: meta("default", "tls", time.Hour), Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("cert"), "tls.key": {0, 0xff}}},
	}
	objs = append(objs, services()...)
	return append(objs, endpointSlices()...)
}

// decoded is a v1 List as the tests read it back.
type decoded struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   map[string]any    `json:"metadata"`
	Items      []json.RawMessage `json:"items"`
}

// decodeItem decodes one item into a new object of want's type and checks
// its apiVersion and kind.
func decodeItem(t *testing.T, raw []byte, want runtime.Object) runtime.Object {
	t.Helper()
	var tm metav1.TypeMeta
	if err := json.Unmarshal(raw, &tm); err != nil {
		t.Fatalf("decode type meta: %v", err)
	}
	gvk, ok := kindOf(want)
	if !ok {
		t.Fatalf("no kind for %T", want)
	}
	if wantAV, wantKind := gvk.ToAPIVersionAndKind(); tm.APIVersion != wantAV || tm.Kind != wantKind {
		t.Errorf("item of %T has apiVersion %q kind %q, want %q %q", want, tm.APIVersion, tm.Kind, wantAV, wantKind)
	}
	got := want.DeepCopyObject()
	// Clear got so that decoding fills it from scratch.
	switch o := got.(type) {
	case *corev1.Pod:
		*o = corev1.Pod{}
	case *corev1.Node:
		*o = corev1.Node{}
	case *corev1.Namespace:
		*o = corev1.Namespace{}
	case *corev1.Service:
		*o = corev1.Service{}
	case *appsv1.Deployment:
		*o = appsv1.Deployment{}
	case *discoveryv1.EndpointSlice:
		*o = discoveryv1.EndpointSlice{}
	case *networkingv1.NetworkPolicy:
		*o = networkingv1.NetworkPolicy{}
	case *networkingv1.Ingress:
		*o = networkingv1.Ingress{}
	case *networkingv1.IngressClass:
		*o = networkingv1.IngressClass{}
	case *corev1.Secret:
		*o = corev1.Secret{}
	}
	if err := json.Unmarshal(raw, got); err != nil {
		t.Fatalf("decode %T: %v", want, err)
	}
	// The printed item carries apiVersion and kind; the original does not.
	got.GetObjectKind().SetGroupVersionKind(want.GetObjectKind().GroupVersionKind())
	return got
}

func TestListRoundTrip(t *testing.T) {
	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			objs := allKinds()
			var b bytes.Buffer
			if err := List(&b, objs, format); err != nil {
				t.Fatalf("List: %v", err)
			}
			data := b.Bytes()
			if format == "yaml" {
				var err error
				if data, err = yaml.YAMLToJSON(data); err != nil {
					t.Fatalf("output is not YAML: %v\n%s", err, b.String())
				}
			}
			var list decoded
			if err := json.Unmarshal(data, &list); err != nil {
				t.Fatalf("output is not a list: %v\n%s", err, b.String())
			}
			if list.APIVersion != "v1" || list.Kind != "List" {
				t.Errorf("list apiVersion %q kind %q, want v1 List", list.APIVersion, list.Kind)
			}
			if rv, ok := list.Metadata["resourceVersion"]; !ok || rv != "" {
				t.Errorf("list metadata = %v, want resourceVersion \"\"", list.Metadata)
			}
			if len(list.Items) != len(objs) {
				t.Fatalf("list has %d items, want %d", len(list.Items), len(objs))
			}
			for i, obj := range objs {
				got := decodeItem(t, list.Items[i], obj)
				if !equalObjects(got, obj) {
					t.Errorf("item %d (%T) does not round-trip:\n got %+v\nwant %+v", i, obj, got, obj)
				}
			}
		})
	}
}

func TestListCarriesStatus(t *testing.T) {
	var b bytes.Buffer
	if err := List(&b, []runtime.Object{services()[1], runningPod("default", "web-1", "10.244.0.5", "node-a", time.Minute)}, "json"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"podIP": "10.244.0.5"`,
		`"phase": "Running"`,
		`"type": "Ready"`,
		`"clusterIP": "10.96.12.34"`,
		`"nodePort": 30080`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %s:\n%s", want, b.String())
		}
	}
}

func TestListLayout(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: meta("", "default", time.Hour), Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
	tests := []struct {
		format string
		objs   []runtime.Object
		want   string
	}{
		{"json", nil, golden(`
{
    "apiVersion": "v1",
    "items": [],
    "kind": "List",
    "metadata": {
        "resourceVersion": ""
    }
}
`)},
		{"yaml", nil, golden(`
apiVersion: v1
items: []
kind: List
metadata:
  resourceVersion: ""
`)},
		{"json", []runtime.Object{ns}, golden(`
{
    "apiVersion": "v1",
    "items": [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "creationTimestamp": "2025-06-01T11:00:00Z",
                "name": "default"
            },
            "spec": {},
            "status": {
                "phase": "Active"
            }
        }
    ],
    "kind": "List",
    "metadata": {
        "resourceVersion": ""
    }
}
`)},
		{"yaml", []runtime.Object{ns}, golden(`
apiVersion: v1
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    creationTimestamp: "2025-06-01T11:00:00Z"
    name: default
  spec: {}
  status:
    phase: Active
kind: List
metadata:
  resourceVersion: ""
`)},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := List(&b, tt.objs, tt.format); err != nil {
			t.Fatalf("List(%d objects, %s): %v", len(tt.objs), tt.format, err)
		}
		if b.String() != tt.want {
			t.Errorf("List(%d objects, %s):\n got:\n%s\nwant:\n%s", len(tt.objs), tt.format, b.String(), tt.want)
		}
	}
}

func TestObject(t *testing.T) {
	pod := runningPod("default", "web-1", "10.244.0.5", "node-a", 5*time.Minute)
	orig := pod.DeepCopy()

	var b bytes.Buffer
	if err := Object(&b, pod, "yaml"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "apiVersion: v1\nkind: Pod\nmetadata:\n") {
		t.Errorf("Object yaml does not start with the pod's own apiVersion, kind and metadata:\n%s", b.String())
	}
	if !equalObjects(pod, orig) {
		t.Errorf("Object modified its argument")
	}

	b.Reset()
	if err := Object(&b, pod, "json"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"Pod\",\n") || !strings.HasSuffix(b.String(), "}\n") {
		t.Errorf("Object json layout:\n%s", b.String())
	}
	got := decodeItem(t, b.Bytes(), pod)
	if !equalObjects(got, pod) {
		t.Errorf("Object json does not round-trip:\n got %+v\nwant %+v", got, pod)
	}
}

func TestObjectKeepsSetKind(t *testing.T) {
	// A kind Table does not know is printed if it says what it is.
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta("default", "cfg", time.Hour),
		Data:       map[string]string{"a": "<b>&"},
	}
	var b bytes.Buffer
	if err := Object(&b, cm, "json"); err != nil {
		t.Fatal(err)
	}
	// kubectl's JSON printer escapes HTML characters, as encoding/json does.
	if !strings.Contains(b.String(), `"kind": "ConfigMap"`) || !strings.Contains(b.String(), `"a": "\u003cb\u003e\u0026"`) {
		t.Errorf("unexpected output:\n%s", b.String())
	}
}

func TestListErrors(t *testing.T) {
	tests := []struct {
		name    string
		objs    []runtime.Object
		format  string
		wantErr string
	}{
		{"bad format", nil, "wide", `unsupported output format "wide"`},
		{"unknown kind", []runtime.Object{&corev1.ConfigMap{}}, "json", "*v1.ConfigMap has no apiVersion and kind"},
		{"nil item", []runtime.Object{nil}, "yaml", "item 0: nil object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := List(&b, tt.objs, tt.format)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("List error = %v, want one containing %q", err, tt.wantErr)
			}
			if b.Len() != 0 {
				t.Errorf("List wrote %q despite the error", b.String())
			}
		})
	}
	if err := Object(&bytes.Buffer{}, allKinds()[0], "table"); err == nil {
		t.Error("Object accepted format \"table\"")
	}
	if err := List(failingWriter{}, nil, "json"); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("List error = %v, want the writer's error", err)
	}
}

func TestSecretDataIsBase64(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: meta("default", "tls", time.Hour), Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("cert"), "tls.key": []byte("key")}}
	for format, want := range map[string][]string{
		"json": {`"apiVersion": "v1"`, `"kind": "Secret"`, `"tls.crt": "Y2VydA=="`, `"tls.key": "a2V5"`, `"type": "kubernetes.io/tls"`},
		"yaml": {"apiVersion: v1\n", "kind: Secret\n", "data:\n  tls.crt: Y2VydA==\n  tls.key: a2V5\n", "type: kubernetes.io/tls\n"},
	} {
		var b bytes.Buffer
		if err := Object(&b, s, format); err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("-o %s:\n%s\nwant it to contain %q", format, b.String(), w)
			}
		}
		if strings.Contains(b.String(), "stringData") {
			t.Errorf("-o %s shows stringData:\n%s", format, b.String())
		}
	}
}
