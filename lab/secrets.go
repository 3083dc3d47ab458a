package lab

import (
	"fmt"
	"maps"

	"github.com/podnet/podnet/cluster"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// applySecret returns the object to store for an applied Secret o (decoded, so defaulted and
// validated) given the stored one, old (nil if none), kubectl's verb for it, and the problems
// that make the update impossible. As the API server, it merges stringData into data (stringData
// wins) and stores no stringData, keeps the UID and creation time of old, and refuses to change
// the type, or the data of a Secret marked immutable, or to unmark it. An apply that changes
// nothing returns old itself, so the agents see the same pointer.
func applySecret(o, old *corev1.Secret, now metav1.Time) (*corev1.Secret, string, []string) {
	n := o.DeepCopy()
	n.TypeMeta = metav1.TypeMeta{APIVersion: cluster.KindSecret.APIVersion(), Kind: cluster.KindSecret.String()}
	if len(n.StringData) > 0 {
		n.Data = maps.Clone(cluster.MergeSecretStringData(n))
		n.StringData = nil
	}
	if old == nil {
		n.UID, n.CreationTimestamp = uuid.NewUUID(), now
		return n, "created", nil
	}
	var problems []string
	if n.Type != old.Type {
		problems = append(problems, fmt.Sprintf("type: Invalid value: %q: field is immutable: the Secret has type %s (delete it to change it)", n.Type, old.Type))
	}
	if old.Immutable != nil && *old.Immutable {
		const msg = "field is immutable when `immutable` is set (delete the Secret to change it)"
		if n.Immutable == nil || !*n.Immutable {
			problems = append(problems, "immutable: Forbidden: "+msg)
		}
		if !equality.Semantic.DeepEqual(old.Data, n.Data) {
			problems = append(problems, "data: Forbidden: "+msg)
		}
	}
	if equality.Semantic.DeepEqual(old.Data, n.Data) && equality.Semantic.DeepEqual(old.Immutable, n.Immutable) && old.Type == n.Type &&
		equality.Semantic.DeepEqual(old.Labels, n.Labels) && equality.Semantic.DeepEqual(old.Annotations, n.Annotations) {
		return old, "unchanged", problems
	}
	n.UID, n.CreationTimestamp = old.UID, old.CreationTimestamp
	return n, "configured", problems
}

// Secrets returns every Secret, sorted by namespace and name, as stored: stringData merged into
// data. The objects and the returned slice are shared: callers must not modify them (nor the
// byte slices of their data). A changed Secret is a new object and an unchanged one stays the
// same object, so an unchanged pointer means an unchanged Secret; the slice is built once for
// each version of the state that changes the Secrets.
func (s *Store) Secrets() []*corev1.Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.secrets()
}

// secrets returns st's Secrets sorted, building the list once per version that changes them.
func (st *state) secrets() []*corev1.Secret {
	if st.lists.secrets == nil {
		st.lists.secrets = sortedObjects(st.Secrets)
	}
	return st.lists.secrets
}
