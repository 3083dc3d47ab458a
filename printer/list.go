package printer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// List prints objs as the Kubernetes API would list them, the way kubectl
// -o json or -o yaml does: a v1 List whose items each carry their apiVersion,
// kind, metadata, spec and status. format is "json" (indented four spaces, as
// kubectl does) or "yaml". Keys are sorted, as in kubectl's output.
//
// An item without apiVersion and kind gets them from its Go type if it is one
// of the kinds Table supports; any other item must have them set.
func List(w io.Writer, objs []runtime.Object, format string) error {
	if err := checkFormat(format); err != nil {
		return err
	}
	items := make([]any, 0, len(objs))
	for i, obj := range objs {
		item, err := toMap(obj)
		if err != nil {
			return fmt.Errorf("print list: item %d: %w", i, err)
		}
		items = append(items, item)
	}
	list := map[string]any{
		"apiVersion": "v1",
		"kind":       "List",
		"items":      items,
		"metadata":   map[string]any{"resourceVersion": ""},
	}
	return write(w, list, format)
}

// Object prints one object in format "json" or "yaml", as kubectl -o json or
// -o yaml does when exactly one object was asked for by name: the object
// itself, not a List.
func Object(w io.Writer, obj runtime.Object, format string) error {
	if err := checkFormat(format); err != nil {
		return err
	}
	m, err := toMap(obj)
	if err != nil {
		return fmt.Errorf("print object: %w", err)
	}
	return write(w, m, format)
}

func checkFormat(format string) error {
	switch format {
	case "json", "yaml":
		return nil
	}
	return fmt.Errorf("unsupported output format %q: want json or yaml", format)
}

// toMap converts obj to its generic JSON form (as kubectl's unstructured
// objects) with apiVersion and kind set. obj is not modified.
func toMap(obj runtime.Object) (map[string]any, error) {
	if obj == nil {
		return nil, fmt.Errorf("nil object")
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Empty() {
		var ok bool
		if gvk, ok = kindOf(obj); !ok {
			return nil, fmt.Errorf("%T has no apiVersion and kind", obj)
		}
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep integers exact
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode %T: %w", obj, err)
	}
	m["apiVersion"], m["kind"] = gvk.ToAPIVersionAndKind()
	return m, nil
}

// kindOf returns the group, version and kind of the types Table supports.
func kindOf(obj runtime.Object) (schema.GroupVersionKind, bool) {
	var gv schema.GroupVersion
	var kind string
	switch obj.(type) {
	case *corev1.Pod:
		gv, kind = corev1.SchemeGroupVersion, "Pod"
	case *corev1.Node:
		gv, kind = corev1.SchemeGroupVersion, "Node"
	case *corev1.Namespace:
		gv, kind = corev1.SchemeGroupVersion, "Namespace"
	case *corev1.Service:
		gv, kind = corev1.SchemeGroupVersion, "Service"
	case *appsv1.Deployment:
		gv, kind = appsv1.SchemeGroupVersion, "Deployment"
	case *discoveryv1.EndpointSlice:
		gv, kind = discoveryv1.SchemeGroupVersion, "EndpointSlice"
	case *networkingv1.NetworkPolicy:
		gv, kind = networkingv1.SchemeGroupVersion, "NetworkPolicy"
	case *networkingv1.Ingress:
		gv, kind = networkingv1.SchemeGroupVersion, "Ingress"
	case *networkingv1.IngressClass:
		gv, kind = networkingv1.SchemeGroupVersion, "IngressClass"
	case *corev1.Secret:
		gv, kind = corev1.SchemeGroupVersion, "Secret"
	default:
		return schema.GroupVersionKind{}, false
	}
	return gv.WithKind(kind), true
}

// write encodes v as kubectl's JSON and YAML printers do.
func write(w io.Writer, v any, format string) error {
	var data []byte
	var err error
	switch format {
	case "json":
		data, err = json.MarshalIndent(v, "", "    ")
		data = append(data, '\n')
	case "yaml":
		data, err = yaml.Marshal(v)
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", format, err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", format, err)
	}
	return nil
}
