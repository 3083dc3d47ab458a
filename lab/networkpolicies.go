package lab

import (
	"github.com/podnet/podnet/cluster"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// applyNetworkPolicy returns the object to store for an applied policy o (decoded, so defaulted
// and validated) given the stored one, old (nil if none), and kubectl's verb for it. As the API
// server, it keeps the UID and creation time of old and counts spec changes in Generation. An
// apply that changes nothing returns old itself, so the agents see the same pointer.
func applyNetworkPolicy(o, old *networkingv1.NetworkPolicy, now metav1.Time) (*networkingv1.NetworkPolicy, string) {
	n := o.DeepCopy()
	n.TypeMeta = metav1.TypeMeta{APIVersion: cluster.KindNetworkPolicy.APIVersion(), Kind: cluster.KindNetworkPolicy.String()}
	if old == nil {
		n.UID, n.CreationTimestamp, n.Generation = uuid.NewUUID(), now, 1
		return n, "created"
	}
	sameSpec := equality.Semantic.DeepEqual(old.Spec, n.Spec)
	if sameSpec && equality.Semantic.DeepEqual(old.Labels, n.Labels) && equality.Semantic.DeepEqual(old.Annotations, n.Annotations) {
		return old, "unchanged"
	}
	n.UID, n.CreationTimestamp, n.Generation = old.UID, old.CreationTimestamp, old.Generation
	if !sameSpec {
		n.Generation++
	}
	return n, "configured"
}

// NetworkPolicies returns every NetworkPolicy, sorted by namespace and name, as applied and
// defaulted (policyTypes and port protocols filled in). The objects and the returned slice are
// shared: callers must not modify them. A changed policy is a new object and an unchanged one
// stays the same object, so an unchanged pointer means an unchanged policy; the slice is built
// once for each version of the state that changes the policies.
func (s *Store) NetworkPolicies() []*networkingv1.NetworkPolicy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.networkPolicies()
}

// Namespaces returns every Namespace, sorted by name. The objects and the returned slice are
// shared: callers must not modify them. A changed Namespace (its labels, say) is a new object,
// so an unchanged pointer means an unchanged Namespace; the slice is built once for each
// version of the state that changes the namespaces.
func (s *Store) Namespaces() []*corev1.Namespace {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	if st.lists.namespaces == nil {
		st.lists.namespaces = sortedObjects(st.Namespaces)
	}
	return st.lists.namespaces
}

// Pods returns every pod of the lab, on every node, sorted by namespace and name. The objects
// and the returned slice are shared: callers must not modify them. A changed pod (its status,
// labels or node) is a new object, so an unchanged pointer means an unchanged pod; the slice is
// built once for each version of the state that changes the pods.
func (s *Store) Pods() []*corev1.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	if st.lists.pods == nil {
		st.lists.pods = sortedObjects(st.Pods)
	}
	return st.lists.pods
}

// networkPolicies returns st's NetworkPolicies sorted, building the list once per version that
// changes them.
func (st *state) networkPolicies() []*networkingv1.NetworkPolicy {
	if st.lists.policies == nil {
		st.lists.policies = sortedObjects(st.NetworkPolicies)
	}
	return st.lists.policies
}

// carryLists gives st, the version that follows prev, the sorted lists prev built whose maps
// hold the same objects in st. A list nobody asked for is not compared.
func (st *state) carryLists(prev *state) {
	if prev == nil || prev == st {
		return
	}
	if l := prev.lists.pods; l != nil && st.lists.pods == nil && sameValues(prev.Pods, st.Pods) {
		st.lists.pods = l
	}
	if l := prev.lists.namespaces; l != nil && st.lists.namespaces == nil && sameValues(prev.Namespaces, st.Namespaces) {
		st.lists.namespaces = l
	}
	if l := prev.lists.policies; l != nil && st.lists.policies == nil && sameValues(prev.NetworkPolicies, st.NetworkPolicies) {
		st.lists.policies = l
	}
}
