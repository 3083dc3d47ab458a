package lab

import (
	"fmt"
	"slices"
	"strings"

	"github.com/podnet/podnet/cluster"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// Ingresses and IngressClasses in the store.
//
// The lab has an IngressClass of its own, cluster.IngressClassName ("podnet"), served by
// podnet's controller and marked as the default class; it is made with the default namespace.
// Its labels and annotations may be changed by applying it (so it can be unmarked as the
// default), but not its spec, and it cannot be deleted. Users may add IngressClasses of their
// own.
//
// As the API server's DefaultIngressClass admission plugin does, an Ingress created without
// spec.ingressClassName and without the legacy annotation kubernetes.io/ingress.class gets the
// default class's name; an apply fails if more than one class is marked as the default. An
// update without a class keeps the one the Ingress has, as kubectl apply would.
//
// The store is also the Ingresses' load-balancer controller: every Ingress podnet's controller
// serves (cluster.ServedByPodnet) gets the nodes' addresses in status.loadBalancer.ingress, in
// the Lab's node order, as LoadBalancer Services do; the others get none. It is done again when
// the nodes or the IngressClasses change. A status in an applied Ingress is ignored.

// applyIngress returns the object to store for an applied Ingress o (decoded, so defaulted and
// validated) given the stored one, old (nil if none), and kubectl's verb for it. It keeps the
// UID, creation time and status of old, counts spec changes in Generation, and keeps old's class
// when o names none. An apply that changes nothing returns old itself. A new Ingress without a
// class gets the default class later (admitIngresses), once the apply's IngressClasses are known.
func applyIngress(o, old *networkingv1.Ingress, now metav1.Time) (*networkingv1.Ingress, string) {
	n := o.DeepCopy()
	n.TypeMeta = metav1.TypeMeta{APIVersion: cluster.KindIngress.APIVersion(), Kind: cluster.KindIngress.String()}
	n.Status = networkingv1.IngressStatus{} // set by the lab, never by a user
	if old == nil {
		n.UID, n.CreationTimestamp, n.Generation = uuid.NewUUID(), now, 1
		return n, "created"
	}
	if cluster.IngressClassOf(n) == "" {
		n.Spec.IngressClassName = old.Spec.IngressClassName
	}
	sameSpec := equality.Semantic.DeepEqual(old.Spec, n.Spec)
	if sameSpec && equality.Semantic.DeepEqual(old.Labels, n.Labels) && equality.Semantic.DeepEqual(old.Annotations, n.Annotations) {
		return old, "unchanged"
	}
	n.UID, n.CreationTimestamp, n.Generation, n.Status = old.UID, old.CreationTimestamp, old.Generation, old.Status
	if !sameSpec {
		n.Generation++
	}
	return n, "configured"
}

// applyIngressClass is applyIngress for an IngressClass. It returns the problems that make the
// update impossible: a changed spec.controller (immutable, as in Kubernetes), or a changed spec
// of the lab's own class.
func applyIngressClass(o, old *networkingv1.IngressClass, now metav1.Time) (*networkingv1.IngressClass, string, []string) {
	var problems []string
	if o.Name == cluster.IngressClassName && !equality.Semantic.DeepEqual(o.Spec, cluster.PodnetIngressClass().Spec) {
		problems = append(problems, fmt.Sprintf("spec: Forbidden: ingressclass %s is the lab's own, served by %s: its spec cannot change (its labels and annotations can)",
			cluster.IngressClassName, cluster.IngressController))
	}
	if old != nil && o.Spec.Controller != old.Spec.Controller && o.Name != cluster.IngressClassName {
		problems = append(problems, fmt.Sprintf("spec.controller: Invalid value: %q: field is immutable: the class has %s (delete it to change it)",
			o.Spec.Controller, old.Spec.Controller))
	}
	n := o.DeepCopy()
	n.TypeMeta = metav1.TypeMeta{APIVersion: cluster.KindIngressClass.APIVersion(), Kind: cluster.KindIngressClass.String()}
	if old == nil {
		n.UID, n.CreationTimestamp, n.Generation = uuid.NewUUID(), now, 1
		return n, "created", problems
	}
	sameSpec := equality.Semantic.DeepEqual(old.Spec, n.Spec)
	if sameSpec && equality.Semantic.DeepEqual(old.Labels, n.Labels) && equality.Semantic.DeepEqual(old.Annotations, n.Annotations) {
		return old, "unchanged", problems
	}
	n.UID, n.CreationTimestamp, n.Generation = old.UID, old.CreationTimestamp, old.Generation
	if !sameSpec {
		n.Generation++
	}
	return n, "configured", problems
}

// ensurePodnetIngressClass adds the lab's IngressClass to st if it has none.
func ensurePodnetIngressClass(st *state, now metav1.Time) {
	if _, ok := st.IngressClasses[cluster.IngressClassName]; ok {
		return
	}
	c := cluster.PodnetIngressClass()
	c.UID, c.CreationTimestamp, c.Generation = uuid.NewUUID(), now, 1
	st.IngressClasses[c.Name] = c
}

// createdIngress is an Ingress an apply creates, waiting for the default class.
type createdIngress struct {
	doc cluster.Document
	key string
}

// admitIngresses gives the Ingresses an apply creates without a class the name of next's
// default IngressClass, as the DefaultIngressClass admission plugin does. It returns a problem
// for each such Ingress when more than one class is marked as the default.
func admitIngresses(next *state, created []createdIngress) []string {
	var defaults []string
	for name, c := range next.IngressClasses {
		if cluster.IsDefaultIngressClass(c) {
			defaults = append(defaults, name)
		}
	}
	slices.Sort(defaults)
	var problems []string
	for _, ci := range created {
		ing := next.Ingresses[ci.key]
		if cluster.IngressClassOf(ing) != "" {
			continue
		}
		if _, ok := ing.Annotations[cluster.AnnotationIngressClass]; ok {
			continue // an empty legacy annotation stops the plugin too
		}
		switch len(defaults) {
		case 0:
		case 1:
			name := defaults[0]
			ing.Spec.IngressClassName = &name // ing is new in this apply: nobody holds it yet
		default:
			problems = append(problems, problemf(ci.doc, "spec.ingressClassName: Forbidden: %d IngressClasses are marked as the default (%s), only 1 allowed: set spec.ingressClassName, or remove the annotation %s from all but one",
				len(defaults), strings.Join(defaults, ", "), networkingv1.AnnotationIsDefaultIngressClass))
		}
	}
	return problems
}

// syncIngressStatus sets status.loadBalancer.ingress of every Ingress podnet serves to the
// nodes' addresses, in the Lab's node order, and clears it on the others. It looks at the
// Ingresses that changed from prev to next, or at all of them when all is set or the nodes or
// the IngressClasses changed.
func syncIngressStatus(prev, next *state, all bool) {
	all = all || nodesChanged(prev, next) || !sameValues(prev.IngressClasses, next.IngressClasses)
	if !all && sameValues(prev.Ingresses, next.Ingresses) {
		return
	}
	var addrs []networkingv1.IngressLoadBalancerIngress
	for _, n := range next.Lab.Spec.Nodes {
		if node := next.Nodes[n.Name]; node != nil {
			if addr := nodeAddress(node); addr != "" {
				addrs = append(addrs, networkingv1.IngressLoadBalancerIngress{IP: addr})
			}
		}
	}
	classes := next.ingressClasses()
	for k, ing := range next.Ingresses {
		if !all && prev.Ingresses[k] == ing {
			continue
		}
		want := addrs
		if !cluster.ServedByPodnet(ing, classes) {
			want = nil
		}
		if equality.Semantic.DeepEqual(ing.Status.LoadBalancer.Ingress, want) {
			continue
		}
		n := ing.DeepCopy()
		n.Status.LoadBalancer.Ingress = slices.Clone(want)
		next.Ingresses[k] = n
	}
}

// Ingresses returns every Ingress, sorted by namespace and name, as applied and defaulted, with
// the status the lab gives it. The objects and the returned slice are shared: callers must not
// modify them. A changed Ingress (its spec, metadata or status) is a new object and an unchanged
// one stays the same object, so an unchanged pointer means an unchanged Ingress; the slice is
// built once for each version of the state that changes the Ingresses.
func (s *Store) Ingresses() []*networkingv1.Ingress {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.ingresses()
}

// IngressClasses returns every IngressClass, the lab's own (cluster.IngressClassName) among
// them once the lab has a Lab document, sorted by name. The objects and the returned slice are
// shared: callers must not modify them. A changed IngressClass is a new object, so an unchanged
// pointer means an unchanged IngressClass; the slice is built once for each version of the
// state that changes the IngressClasses.
func (s *Store) IngressClasses() []*networkingv1.IngressClass {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.ingressClasses()
}

// ingresses returns st's Ingresses sorted, building the list once per version that changes them.
func (st *state) ingresses() []*networkingv1.Ingress {
	if st.lists.ingresses == nil {
		st.lists.ingresses = sortedObjects(st.Ingresses)
	}
	return st.lists.ingresses
}

// ingressClasses returns st's IngressClasses sorted, building the list once per version that
// changes them.
func (st *state) ingressClasses() []*networkingv1.IngressClass {
	if st.lists.ingressClasses == nil {
		st.lists.ingressClasses = sortedObjects(st.IngressClasses)
	}
	return st.lists.ingressClasses
}

// carryIngressLists gives st, the version that follows prev, the sorted lists of Ingresses,
// IngressClasses and Secrets prev built whose maps hold the same objects in st, as carryLists
// does for the others.
func (st *state) carryIngressLists(prev *state) {
	if prev == nil || prev == st {
		return
	}
	if l := prev.lists.ingresses; l != nil && st.lists.ingresses == nil && sameValues(prev.Ingresses, st.Ingresses) {
		st.lists.ingresses = l
	}
	if l := prev.lists.ingressClasses; l != nil && st.lists.ingressClasses == nil && sameValues(prev.IngressClasses, st.IngressClasses) {
		st.lists.ingressClasses = l
	}
	if l := prev.lists.secrets; l != nil && st.lists.secrets == nil && sameValues(prev.Secrets, st.Secrets) {
		st.lists.secrets = l
	}
}

// AnnotationIngressProblems is where the lab reports, on an Ingress, the problems the node agents'
// Ingress controllers found in it (one per line); it is removed when there are none.
const AnnotationIngressProblems = "podnet.dev/problems"

// SetIngressProblems records the problems of each Ingress (keyed "namespace/name") as its
// AnnotationIngressProblems annotation, and clears it on the Ingresses not in problems. Only
// Ingresses whose annotation changes are replaced.
func (s *Store) SetIngressProblems(problems map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next *state
	for k, ing := range s.state.Ingresses {
		want := strings.Join(problems[k], "\n")
		if ing.Annotations[AnnotationIngressProblems] == want {
			continue
		}
		if next == nil {
			next = s.state.clone()
		}
		n := ing.DeepCopy()
		if want == "" {
			delete(n.Annotations, AnnotationIngressProblems)
		} else {
			if n.Annotations == nil {
				n.Annotations = map[string]string{}
			}
			n.Annotations[AnnotationIngressProblems] = want
		}
		next.Ingresses[k] = n
	}
	if next != nil {
		s.commitLaterLocked(next)
	}
}
