package cluster

import (
	"fmt"
	"reflect"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
)

// Kind is the kind of an object podnet knows, spelled as in an object's
// `kind` field.
type Kind string

// The kinds podnet knows.
const (
	KindLab           Kind = "Lab"
	KindNamespace     Kind = "Namespace"
	KindNode          Kind = "Node"
	KindPod           Kind = "Pod"
	KindDeployment    Kind = "Deployment"
	KindService       Kind = "Service"
	KindEndpointSlice Kind = "EndpointSlice"
	KindNetworkPolicy Kind = "NetworkPolicy"
	KindIngress       Kind = "Ingress"
	KindIngressClass  Kind = "IngressClass"
	KindSecret        Kind = "Secret"
)

// kindInfo is what podnet knows of a kind.
type kindInfo struct {
	kind       Kind
	group      string // API group; "" for the core group
	version    string
	plural     string
	shortNames []string
	namespaced bool
}

// kinds lists the kinds podnet knows, in the order kubectl's help lists
// similar resources. It is never modified.
var kinds = []kindInfo{
	{kind: KindPod, version: "v1", plural: "pods", shortNames: []string{"po"}, namespaced: true},
	{kind: KindService, version: "v1", plural: "services", shortNames: []string{"svc"}, namespaced: true},
	{kind: KindEndpointSlice, group: "discovery.k8s.io", version: "v1", plural: "endpointslices", namespaced: true},
	{kind: KindNetworkPolicy, group: "networking.k8s.io", version: "v1", plural: "networkpolicies", shortNames: []string{"netpol"}, namespaced: true},
	{kind: KindIngress, group: "networking.k8s.io", version: "v1", plural: "ingresses", shortNames: []string{"ing"}, namespaced: true},
	{kind: KindIngressClass, group: "networking.k8s.io", version: "v1", plural: "ingressclasses"},
	{kind: KindSecret, version: "v1", plural: "secrets", namespaced: true},
	{kind: KindDeployment, group: "apps", version: "v1", plural: "deployments", shortNames: []string{"deploy"}, namespaced: true},
	{kind: KindNode, version: "v1", plural: "nodes", shortNames: []string{"no"}},
	{kind: KindNamespace, version: "v1", plural: "namespaces", shortNames: []string{"ns"}},
	{kind: KindLab, group: LabGroup, version: LabVersion, plural: "labs"},
}

func lookupKind(k Kind) (kindInfo, bool) {
	for _, ki := range kinds {
		if ki.kind == k {
			return ki, true
		}
	}
	return kindInfo{}, false
}

// ParseKind returns the kind a user means by s, spelled as kubectl spells
// resource types, case-insensitively: plural ("pods"), singular ("pod"),
// short name ("po"), and the plural or singular qualified by the API group,
// with or without its version ("deployments.apps", "deployment.v1.apps").
func ParseKind(s string) (Kind, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	resource, group, _ := strings.Cut(name, ".")
	version := ""
	if v, g, ok := strings.Cut(group, "."); ok && strings.HasPrefix(v, "v") && len(v) > 1 && v[1] >= '0' && v[1] <= '9' {
		version, group = v, g
	}
	for _, ki := range kinds {
		singular := strings.ToLower(string(ki.kind))
		if group == "" {
			if resource == ki.plural || resource == singular {
				return ki.kind, nil
			}
			for _, short := range ki.shortNames {
				if resource == short {
					return ki.kind, nil
				}
			}
			continue
		}
		if group == ki.group && (version == "" || version == ki.version) && (resource == ki.plural || resource == singular) {
			return ki.kind, nil
		}
	}
	var known []string
	for _, ki := range kinds {
		known = append(known, ki.plural)
	}
	return "", fmt.Errorf("podnet doesn't have a resource type %q (it has %s)", s, strings.Join(known, ", "))
}

// String returns k as spelled in an object's kind field.
func (k Kind) String() string { return string(k) }

// Plural returns the plural lower-case resource name, as in `podnet get
// pods`. It returns "" for a kind podnet does not know.
func (k Kind) Plural() string {
	ki, _ := lookupKind(k)
	return ki.plural
}

// Namespaced reports whether objects of kind k live in a namespace.
func (k Kind) Namespaced() bool {
	ki, _ := lookupKind(k)
	return ki.namespaced
}

// Group returns the API group of k: "" for the core group, "apps",
// "networking.k8s.io", ...
func (k Kind) Group() string {
	ki, _ := lookupKind(k)
	return ki.group
}

// APIVersion returns the apiVersion objects of kind k are written with, as
// "v1" or "apps/v1". It returns "" for a kind podnet does not know.
func (k Kind) APIVersion() string {
	ki, ok := lookupKind(k)
	switch {
	case !ok:
		return ""
	case ki.group == "":
		return ki.version
	default:
		return ki.group + "/" + ki.version
	}
}

// qualified returns the lower-case singular kind qualified by its group, the
// way kubectl names objects: "pod", "deployment.apps". A Lab is plain "lab".
func (k Kind) qualified() string {
	s := strings.ToLower(string(k))
	if g := k.Group(); g != "" && k != KindLab {
		s += "." + g
	}
	return s
}

// KindOf returns the kind of obj, from its Go type (for the types podnet
// knows) or else its TypeMeta. It returns false if neither tells.
func KindOf(obj runtime.Object) (Kind, bool) {
	switch obj.(type) {
	case *Lab:
		return KindLab, true
	case *corev1.Namespace:
		return KindNamespace, true
	case *corev1.Node:
		return KindNode, true
	case *corev1.Pod:
		return KindPod, true
	case *appsv1.Deployment:
		return KindDeployment, true
	case *corev1.Service:
		return KindService, true
	case *discoveryv1.EndpointSlice:
		return KindEndpointSlice, true
	case *networkingv1.NetworkPolicy:
		return KindNetworkPolicy, true
	case *networkingv1.Ingress:
		return KindIngress, true
	case *networkingv1.IngressClass:
		return KindIngressClass, true
	case *corev1.Secret:
		return KindSecret, true
	}
	if obj == nil {
		return "", false
	}
	if k := obj.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return Kind(k), true
	}
	return "", false
}

// ObjectName returns obj's kind and name as kubectl prints them:
// "pod/web-1", "deployment.apps/web", "namespace/dev", "lab/demo". An
// object without a name is just its kind ("pod").
func ObjectName(obj runtime.Object) string {
	if v := reflect.ValueOf(obj); !v.IsValid() || (v.Kind() == reflect.Pointer && v.IsNil()) {
		return "object"
	}
	k, _ := KindOf(obj)
	prefix := k.qualified()
	if prefix == "" {
		prefix = "object"
	}
	m, err := meta.Accessor(obj)
	if err != nil || m.GetName() == "" {
		return prefix
	}
	return prefix + "/" + m.GetName()
}
