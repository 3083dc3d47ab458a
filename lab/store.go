package lab

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podnet/podnet/cluster"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// Store is the lab's desired state: the objects of the lab and the controllers that derive objects
// from others (Nodes from the Lab, Pods from Deployments, a node for every unscheduled Pod,
// EndpointSlices from Services and pods, Ingress status from the nodes), and the NetworkPolicies,
// Ingresses, IngressClasses and Secrets the node agents use. Every change is all-or-nothing and
// wakes the subscribers.
//
// What a user changes (Apply, Delete) is persisted before it is visible: those calls return once
// the state file holds it. What the node agents report (pod status, node annotations) is
// persisted in the background instead, soon after it is visible, coalescing a burst of reports
// into one write: with 10,000 Services, writing the state takes long enough (see
// stateEncoder) that holding the lock for it on every probe result would slow down everything
// that reads the store, and a report lost in a crash is made again by the agent. Flush waits for
// the background writes.
//
// Objects in the store are never modified in place: a change replaces the object, so readers may
// keep what they got.
type Store struct {
	path    string // persistence file; "" means memory only
	now     func() time.Time
	changes cluster.Changes // the subscribers, woken on every committed state

	mu    sync.Mutex // guards the fields below
	state *state
	// version counts the committed states; the state file holds version written.
	version uint64
	// pending is set when a committed state waits for a background write; writing while the
	// goroutine that writes them runs.
	pending, writing bool
	writers          sync.WaitGroup // the background writer
	// resyncAll makes the next reconcile derive every Service's EndpointSlices afresh (after a
	// load, when what was persisted may be out of date).
	resyncAll bool

	writeMu  sync.Mutex   // guards the fields below; taken after mu when both are
	enc      stateEncoder // encodes states for the state file
	written  uint64       // the version the state file holds
	writeErr error        // of the last background write, until a write succeeds
}

// state is one version of everything the store holds.
type state struct {
	LabNumber      int                                   `json:"labNumber"`
	Lab            *cluster.Lab                          `json:"lab,omitempty"`
	Namespaces     map[string]*corev1.Namespace          `json:"namespaces"`
	Pods           map[string]*corev1.Pod                `json:"pods"`
	Deployments    map[string]*appsv1.Deployment         `json:"deployments"`
	Nodes          map[string]*corev1.Node               `json:"nodes"`
	Services       map[string]*corev1.Service            `json:"services"`
	EndpointSlices map[string]*discoveryv1.EndpointSlice `json:"endpointSlices"`
	// NetworkPolicies holds the policies as the user applied them, defaulted; a state written
	// before NetworkPolicies existed has none.
	NetworkPolicies map[string]*networkingv1.NetworkPolicy `json:"networkPolicies"`
	// Ingresses holds the Ingresses as applied (defaulted, the class given at creation) with the
	// status the lab gives them; IngressClasses, by name, the lab's own class and the users';
	// Secrets, the Secrets with stringData merged into data. A state written before they existed
	// has none.
	Ingresses      map[string]*networkingv1.Ingress      `json:"ingresses"`
	IngressClasses map[string]*networkingv1.IngressClass `json:"ingressClasses"`
	Secrets        map[string]*corev1.Secret             `json:"secrets"`
	// LastClusterIP and LastNodePort are the cluster IP and NodePort handed out last: the search
	// for a free one starts after them (see services.go).
	LastClusterIP string `json:"lastClusterIP,omitempty"`
	LastNodePort  int32  `json:"lastNodePort,omitempty"`

	// What follows is derived from the maps above, built when first needed and shared by the
	// versions that do not change what it derives from. It is never persisted and never modified
	// once built: a change builds a new one.
	derived
}

// derived is what a state derives from its objects.
type derived struct {
	// serviceList and sliceList are the Services and EndpointSlices sorted by namespace/name;
	// nil means not built. The Service controllers (reconcileLocked) drop them when the maps
	// change: every change of Services and EndpointSlices goes through reconcileLocked.
	serviceList []*corev1.Service
	sliceList   []*discoveryv1.EndpointSlice
	// selectors groups the Services with a selector by namespace and selector; nil means not
	// built. Dropped with serviceList.
	selectors map[string][]*selectorGroup
	// sliceOwners maps a Service's key to the keys of the EndpointSlices the controller made for
	// it, sorted; nil means not built. The EndpointSlice controller keeps it current.
	sliceOwners map[string][]string
	// reconciled is set once the Service controllers have run over this version.
	reconciled bool

	// lists holds the sorted lists of objects the node agents read. Unlike the above, clone
	// drops it: publishLocked carries each list over to the next version when its map holds the
	// same objects.
	lists objectLists
}

// objectLists are a state's pods, namespaces, NetworkPolicies, Ingresses, IngressClasses and
// Secrets, sorted by key; a nil list is not built.
type objectLists struct {
	pods           []*corev1.Pod
	namespaces     []*corev1.Namespace
	policies       []*networkingv1.NetworkPolicy
	ingresses      []*networkingv1.Ingress
	ingressClasses []*networkingv1.IngressClass
	secrets        []*corev1.Secret
}

func newState(labNumber int) *state {
	return &state{
		LabNumber:      labNumber,
		Namespaces:     map[string]*corev1.Namespace{},
		Pods:           map[string]*corev1.Pod{},
		Deployments:    map[string]*appsv1.Deployment{},
		Nodes:          map[string]*corev1.Node{},
		Services:       map[string]*corev1.Service{},
		EndpointSlices: map[string]*discoveryv1.EndpointSlice{},

		NetworkPolicies: map[string]*networkingv1.NetworkPolicy{},
		Ingresses:       map[string]*networkingv1.Ingress{},
		IngressClasses:  map[string]*networkingv1.IngressClass{},
		Secrets:         map[string]*corev1.Secret{},
	}
}

// clone copies the maps (not the objects, which are immutable). The derived data is shared.
func (s *state) clone() *state {
	c := *s
	c.Namespaces = cloneMap(s.Namespaces)
	c.Pods = cloneMap(s.Pods)
	c.Deployments = cloneMap(s.Deployments)
	c.Nodes = cloneMap(s.Nodes)
	c.Services = cloneMap(s.Services)
	c.EndpointSlices = cloneMap(s.EndpointSlices)
	c.NetworkPolicies = cloneMap(s.NetworkPolicies)
	c.Ingresses = cloneMap(s.Ingresses)
	c.IngressClasses = cloneMap(s.IngressClasses)
	c.Secrets = cloneMap(s.Secrets)
	c.reconciled = false
	c.lists = objectLists{}
	return &c
}

func cloneMap[V any](m map[string]V) map[string]V {
	c := make(map[string]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func key(ns, name string) string { return ns + "/" + name }

// OpenStore loads the store persisted at path, or starts an empty one numbered labNumber if there
// is none. An empty path keeps the store in memory.
func OpenStore(path string, labNumber int) (*Store, error) {
	s := &Store{path: path, now: time.Now, state: newState(labNumber)}
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	st := newState(labNumber)
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("read lab state %s: %w", path, err)
	}
	// A state written before Services existed has null maps.
	if st.Services == nil {
		st.Services = map[string]*corev1.Service{}
	}
	if st.EndpointSlices == nil {
		st.EndpointSlices = map[string]*discoveryv1.EndpointSlice{}
	}
	if st.NetworkPolicies == nil {
		st.NetworkPolicies = map[string]*networkingv1.NetworkPolicy{}
	}
	if st.Ingresses == nil {
		st.Ingresses = map[string]*networkingv1.Ingress{}
	}
	if st.IngressClasses == nil {
		st.IngressClasses = map[string]*networkingv1.IngressClass{}
	}
	if st.Secrets == nil {
		st.Secrets = map[string]*corev1.Secret{}
	}
	if st.Lab != nil {
		// A lab made before IngressClasses existed gets its own now; it is persisted with the
		// next change.
		ensurePodnetIngressClass(st, metav1.NewTime(s.now()))
	}
	s.state = st
	s.resyncAll = true
	return s, nil
}

// Lab returns the Lab document and its parsed network, or nil before the first apply.
func (s *Store) Lab() (*cluster.Lab, cluster.Network) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Lab == nil {
		return nil, cluster.Network{}
	}
	n, _ := s.state.Lab.Network()
	return s.state.Lab, n
}

// Subscribe implements agent.Source.
func (s *Store) Subscribe() (<-chan struct{}, func()) { return s.changes.Subscribe() }

// NodePods implements agent.Source.
func (s *Store) NodePods(node string) []*corev1.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*corev1.Pod
	for _, p := range s.state.Pods {
		if p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	return out
}

// Nodes returns the lab's nodes in the Lab document's order.
func (s *Store) Nodes() []*corev1.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodesLocked()
}

// Services returns every Service, sorted by namespace and name. The objects and the returned
// slice are shared: callers must not modify them. A changed Service is a new object, so an
// unchanged pointer means an unchanged Service.
func (s *Store) Services() []*corev1.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.services()
}

// EndpointSlices returns every EndpointSlice, sorted by namespace and name. The objects and the
// returned slice are shared: callers must not modify them. A changed EndpointSlice is a new
// object, so an unchanged pointer means an unchanged EndpointSlice.
func (s *Store) EndpointSlices() []*discoveryv1.EndpointSlice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.endpointSlices()
}

// services returns st's Services sorted, building the list once per version that changes them.
func (st *state) services() []*corev1.Service {
	if st.serviceList == nil {
		st.serviceList = sortedObjects(st.Services)
	}
	return st.serviceList
}

// endpointSlices returns st's EndpointSlices sorted, building the list once per version that
// changes them.
func (st *state) endpointSlices() []*discoveryv1.EndpointSlice {
	if st.sliceList == nil {
		st.sliceList = sortedObjects(st.EndpointSlices)
	}
	return st.sliceList
}

// sortedObjects returns the values of m sorted by their keys (namespace/name), never nil.
func sortedObjects[V any](m map[string]V) []V {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// "/" sorts before the characters of names, so key order is namespace, then name order.
	slices.Sort(keys)
	out := make([]V, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func (s *Store) nodesLocked() []*corev1.Node {
	var out []*corev1.Node
	if s.state.Lab == nil {
		return nil
	}
	for _, n := range s.state.Lab.Spec.Nodes {
		if node := s.state.Nodes[n.Name]; node != nil {
			out = append(out, node)
		}
	}
	return out
}

// Get returns the objects of kind, in namespace ns ("" means all namespaces) and with the given
// name ("" means all), sorted by namespace and name.
func (s *Store) Get(kind cluster.Kind, ns, name string) ([]runtime.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []runtime.Object
	add := func(objNS, objName string, o runtime.Object) {
		if (ns == "" || objNS == ns || !kind.Namespaced()) && (name == "" || objName == name) {
			out = append(out, o)
		}
	}
	st := s.state
	switch kind {
	case cluster.KindPod:
		for _, o := range st.Pods {
			add(o.Namespace, o.Name, o)
		}
	case cluster.KindDeployment:
		for _, o := range st.Deployments {
			add(o.Namespace, o.Name, o)
		}
	case cluster.KindNamespace:
		for _, o := range st.Namespaces {
			add("", o.Name, o)
		}
	case cluster.KindNode:
		for _, o := range s.nodesLocked() {
			add("", o.Name, o)
		}
		return out, nil // in the Lab's order
	case cluster.KindService:
		if ns != "" && name != "" {
			if o := st.Services[key(ns, name)]; o != nil {
				out = append(out, o)
			}
			return out, nil
		}
		for _, o := range st.services() {
			add(o.Namespace, o.Name, o)
		}
		return out, nil // sorted
	case cluster.KindEndpointSlice:
		if ns != "" && name != "" {
			if o := st.EndpointSlices[key(ns, name)]; o != nil {
				out = append(out, o)
			}
			return out, nil
		}
		for _, o := range st.endpointSlices() {
			add(o.Namespace, o.Name, o)
		}
		return out, nil // sorted
	case cluster.KindNetworkPolicy:
		if ns != "" && name != "" {
			if o := st.NetworkPolicies[key(ns, name)]; o != nil {
				out = append(out, o)
			}
			return out, nil
		}
		for _, o := range st.networkPolicies() {
			add(o.Namespace, o.Name, o)
		}
		return out, nil // sorted
	case cluster.KindIngress:
		if ns != "" && name != "" {
			if o := st.Ingresses[key(ns, name)]; o != nil {
				out = append(out, o)
			}
			return out, nil
		}
		for _, o := range st.ingresses() {
			add(o.Namespace, o.Name, o)
		}
		return out, nil // sorted
	case cluster.KindIngressClass:
		for _, o := range st.ingressClasses() {
			add("", o.Name, o)
		}
		return out, nil // sorted
	case cluster.KindSecret:
		if ns != "" && name != "" {
			if o := st.Secrets[key(ns, name)]; o != nil {
				out = append(out, o)
			}
			return out, nil
		}
		for _, o := range st.secrets() {
			add(o.Namespace, o.Name, o)
		}
		return out, nil // sorted
	default:
		return nil, nil // kinds that later issues bring: none exist yet
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].(metav1.Object), out[j].(metav1.Object)
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
	return out, nil
}

// Apply creates or updates the objects of docs, all or nothing, and returns what it did for each,
// as kubectl prints it ("pod/web-1 created").
func (s *Store) Apply(docs []cluster.Document) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.state.clone()
	now := metav1.NewTime(s.now())
	var results []string
	var problems []string
	bad := func(d cluster.Document, format string, a ...any) {
		problems = append(problems, problemf(d, format, a...))
	}
	var applied []*serviceApply
	var createdIngresses []createdIngress
	for _, d := range docs {
		name := cluster.ObjectName(d.Object)
		switch o := d.Object.(type) {
		case *cluster.Lab:
			switch {
			case next.Lab == nil:
				results = append(results, name+" created")
			case equality.Semantic.DeepEqual(next.Lab.Spec, o.Spec):
				results = append(results, name+" unchanged")
			default:
				if errs := cluster.ValidateLabChange(next.Lab, o); len(errs) > 0 {
					bad(d, "%v", errs.ToAggregate())
					continue
				}
				results = append(results, name+" configured")
			}
			if next.Lab == nil || !equality.Semantic.DeepEqual(next.Lab, o) {
				next.Lab = o.DeepCopy() // else kept: an unchanged object stays the same object
			}
		case *corev1.Namespace:
			old := next.Namespaces[o.Name]
			n := o.DeepCopy()
			same := old != nil && equality.Semantic.DeepEqual(old.Labels, n.Labels) && equality.Semantic.DeepEqual(old.Annotations, n.Annotations)
			results = append(results, name+" "+verb(old != nil, same))
			if same {
				continue
			}
			if old != nil {
				old = old.DeepCopy()
				old.Labels, old.Annotations = n.Labels, n.Annotations
				n = old
			} else {
				n.UID, n.CreationTimestamp = uuid.NewUUID(), now
				n.Status.Phase = corev1.NamespaceActive
			}
			next.Namespaces[n.Name] = n
		case *corev1.Pod:
			k := key(o.Namespace, o.Name)
			old := next.Pods[k]
			if old == nil {
				n := o.DeepCopy()
				n.UID, n.CreationTimestamp = uuid.NewUUID(), now
				n.Status = corev1.PodStatus{Phase: corev1.PodPending}
				next.Pods[k] = n
				results = append(results, name+" created")
				continue
			}
			spec := o.Spec.DeepCopy()
			if spec.NodeName == "" {
				spec.NodeName = old.Spec.NodeName
			}
			if !equality.Semantic.DeepEqual(*spec, old.Spec) {
				bad(d, "spec: Forbidden: pod updates may not change fields other than labels and annotations (delete the pod and apply it again)")
				continue
			}
			same := equality.Semantic.DeepEqual(old.Labels, o.Labels) && equality.Semantic.DeepEqual(old.Annotations, o.Annotations)
			results = append(results, name+" "+verb(true, same))
			if !same {
				n := old.DeepCopy()
				n.Labels, n.Annotations = o.Labels, o.Annotations
				next.Pods[k] = n
			}
		case *appsv1.Deployment:
			k := key(o.Namespace, o.Name)
			old := next.Deployments[k]
			n := o.DeepCopy()
			if old == nil {
				n.UID, n.CreationTimestamp, n.Generation = uuid.NewUUID(), now, 1
				results = append(results, name+" created")
			} else {
				same := equality.Semantic.DeepEqual(old.Spec, n.Spec) && equality.Semantic.DeepEqual(old.Labels, n.Labels)
				results = append(results, name+" "+verb(true, same))
				if same && equality.Semantic.DeepEqual(old.Annotations, n.Annotations) {
					continue
				}
				n.UID, n.CreationTimestamp, n.Generation, n.Status = old.UID, old.CreationTimestamp, old.Generation, old.Status
				if !equality.Semantic.DeepEqual(old.Spec, n.Spec) {
					n.Generation++
				}
			}
			next.Deployments[k] = n
		case *corev1.Service:
			k := key(o.Namespace, o.Name)
			old := next.Services[k]
			n, errs := prepareService(o, old, now)
			for _, e := range errs {
				bad(d, "%s", e)
			}
			next.Services[k] = n
			applied = append(applied, &serviceApply{doc: d, key: k, svc: n, old: old, result: len(results)})
			results = append(results, "") // known once its addresses and ports are
		case *discoveryv1.EndpointSlice:
			k := key(o.Namespace, o.Name)
			old := next.EndpointSlices[k]
			if old != nil {
				if svc, ok := controllerSliceOwner(old); ok {
					bad(d, "metadata.name: Forbidden: the lab's EndpointSlice controller made this slice for service %s: choose another name", svc)
					continue
				}
			}
			n := o.DeepCopy()
			if old == nil {
				n.UID, n.CreationTimestamp, n.Generation = uuid.NewUUID(), now, 1
				results = append(results, name+" created")
				next.EndpointSlices[k] = n
				continue
			}
			n.UID, n.CreationTimestamp, n.Generation = old.UID, old.CreationTimestamp, old.Generation
			if equality.Semantic.DeepEqual(n, old) {
				results = append(results, name+" unchanged")
				continue
			}
			n.Generation++
			results = append(results, name+" configured")
			next.EndpointSlices[k] = n
		case *networkingv1.NetworkPolicy:
			k := key(o.Namespace, o.Name)
			n, verb := applyNetworkPolicy(o, next.NetworkPolicies[k], now)
			results = append(results, name+" "+verb)
			next.NetworkPolicies[k] = n
		case *networkingv1.Ingress:
			k := key(o.Namespace, o.Name)
			n, verb := applyIngress(o, next.Ingresses[k], now)
			results = append(results, name+" "+verb)
			next.Ingresses[k] = n
			if verb == "created" {
				createdIngresses = append(createdIngresses, createdIngress{doc: d, key: k})
			}
		case *networkingv1.IngressClass:
			n, verb, errs := applyIngressClass(o, next.IngressClasses[o.Name], now)
			for _, e := range errs {
				bad(d, "%s", e)
			}
			results = append(results, name+" "+verb)
			next.IngressClasses[o.Name] = n
		case *corev1.Secret:
			k := key(o.Namespace, o.Name)
			n, verb, errs := applySecret(o, next.Secrets[k], now)
			for _, e := range errs {
				bad(d, "%s", e)
			}
			results = append(results, name+" "+verb)
			next.Secrets[k] = n
		default:
			bad(d, "kind %T cannot be applied to a lab", d.Object)
		}
	}
	if next.Lab == nil {
		return nil, errors.New("the lab has no Lab document yet: the first file applied to a lab must contain one (kind: Lab, apiVersion: " + cluster.LabAPIVersion + ")")
	}
	// References between objects, checked against the whole new state.
	nodes := map[string]bool{}
	for _, n := range next.Lab.Spec.Nodes {
		nodes[n.Name] = true
	}
	if _, ok := next.Namespaces["default"]; !ok {
		next.Namespaces["default"] = &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: "default", UID: uuid.NewUUID(), CreationTimestamp: now},
			Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
		}
	}
	ensurePodnetIngressClass(next, now)
	problems = append(problems, admitIngresses(next, createdIngresses)...)
	for _, d := range docs {
		m, ok := d.Object.(metav1.Object)
		if !ok || m.GetNamespace() == "" {
			continue
		}
		if _, ok := next.Namespaces[m.GetNamespace()]; !ok {
			bad(d, "metadata.namespace: Not found: namespaces %q not found", m.GetNamespace())
		}
		if p, ok := d.Object.(*corev1.Pod); ok && p.Spec.NodeName != "" && !nodes[p.Spec.NodeName] {
			bad(d, "spec.nodeName: Not found: %q is not a node of lab %s", p.Spec.NodeName, next.Lab.Name)
		}
		if dep, ok := d.Object.(*appsv1.Deployment); ok && dep.Spec.Template.Spec.NodeName != "" && !nodes[dep.Spec.Template.Spec.NodeName] {
			bad(d, "spec.template.spec.nodeName: Not found: %q is not a node of lab %s", dep.Spec.Template.Spec.NodeName, next.Lab.Name)
		}
	}
	if len(problems) == 0 && len(applied) > 0 {
		problems = allocateServices(next, applied)
	}
	if len(problems) > 0 {
		return nil, &ApplyError{Problems: problems}
	}
	for _, sa := range applied {
		verb := "created"
		if sa.old != nil {
			verb = "configured"
			if equality.Semantic.DeepEqual(sa.old.Spec, sa.svc.Spec) && equality.Semantic.DeepEqual(sa.old.Labels, sa.svc.Labels) &&
				equality.Semantic.DeepEqual(sa.old.Annotations, sa.svc.Annotations) {
				verb = "unchanged"
				next.Services[sa.key] = sa.old // no new version: nothing changed
			}
		}
		results[sa.result] = cluster.ObjectName(sa.doc.Object) + " " + verb
		sa.unchanged = verb == "unchanged"
	}
	if err := s.reconcileLocked(next); err != nil {
		return nil, err
	}
	if problems := checkTargetPortNames(next, applied); len(problems) > 0 {
		return nil, &ApplyError{Problems: problems}
	}
	if sameObjects(s.state, next) {
		return results, nil // nothing to persist, nobody to wake
	}
	if err := s.commitLocked(next); err != nil {
		return nil, err
	}
	return results, nil
}

// sameObjects reports whether two versions of the state hold the same objects.
func sameObjects(a, b *state) bool {
	return a.Lab == b.Lab && a.LabNumber == b.LabNumber && a.LastClusterIP == b.LastClusterIP && a.LastNodePort == b.LastNodePort &&
		sameValues(a.Namespaces, b.Namespaces) && sameValues(a.Pods, b.Pods) && sameValues(a.Deployments, b.Deployments) &&
		sameValues(a.Nodes, b.Nodes) && sameValues(a.Services, b.Services) && sameValues(a.EndpointSlices, b.EndpointSlices) &&
		sameValues(a.NetworkPolicies, b.NetworkPolicies) && sameValues(a.Ingresses, b.Ingresses) &&
		sameValues(a.IngressClasses, b.IngressClasses) && sameValues(a.Secrets, b.Secrets)
}

// sameValues reports whether two maps of objects hold the same objects (pointers).
func sameValues[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// ApplyError lists every problem of an apply; nothing of it took effect.
type ApplyError struct{ Problems []string }

func (e *ApplyError) Error() string { return strings.Join(e.Problems, "\n") }

func verb(existed, same bool) string {
	switch {
	case !existed:
		return "created"
	case same:
		return "unchanged"
	default:
		return "configured"
	}
}

// Delete removes objects, all or nothing: if one of them does not exist, nothing is deleted. It
// returns kubectl's lines ("pod \"web-1\" deleted").
func (s *Store) Delete(refs []ObjectRef) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.state.clone()
	var results, missing []string
	for _, r := range refs {
		k := key(r.Namespace, r.Name)
		var found bool
		switch r.Kind {
		case cluster.KindPod:
			_, found = next.Pods[k]
			delete(next.Pods, k)
		case cluster.KindDeployment:
			_, found = next.Deployments[k]
			delete(next.Deployments, k)
		case cluster.KindService:
			_, found = next.Services[k]
			delete(next.Services, k) // its addresses and ports are free again; the controller removes its slices
		case cluster.KindEndpointSlice:
			_, found = next.EndpointSlices[k] // the controller makes its own again
			delete(next.EndpointSlices, k)
		case cluster.KindNetworkPolicy:
			_, found = next.NetworkPolicies[k]
			delete(next.NetworkPolicies, k)
		case cluster.KindIngress:
			_, found = next.Ingresses[k]
			delete(next.Ingresses, k)
		case cluster.KindIngressClass:
			if r.Name == cluster.IngressClassName {
				return nil, fmt.Errorf(`ingressclasses %q is forbidden: the lab's own IngressClass may not be deleted`, r.Name)
			}
			_, found = next.IngressClasses[r.Name]
			delete(next.IngressClasses, r.Name)
		case cluster.KindSecret:
			_, found = next.Secrets[k]
			delete(next.Secrets, k)
		case cluster.KindNamespace:
			if r.Name == "default" {
				return nil, errors.New(`namespaces "default" is forbidden: this namespace may not be deleted`)
			}
			_, found = next.Namespaces[r.Name]
			delete(next.Namespaces, r.Name)
			// Everything in the namespace goes with it.
			for pk, p := range next.Pods {
				if p.Namespace == r.Name {
					delete(next.Pods, pk)
				}
			}
			for dk, d := range next.Deployments {
				if d.Namespace == r.Name {
					delete(next.Deployments, dk)
				}
			}
			for sk, svc := range next.Services {
				if svc.Namespace == r.Name {
					delete(next.Services, sk)
				}
			}
			for sk, sl := range next.EndpointSlices {
				if sl.Namespace == r.Name {
					delete(next.EndpointSlices, sk)
				}
			}
			for pk, np := range next.NetworkPolicies {
				if np.Namespace == r.Name {
					delete(next.NetworkPolicies, pk)
				}
			}
			for ik, ing := range next.Ingresses {
				if ing.Namespace == r.Name {
					delete(next.Ingresses, ik)
				}
			}
			for sk, sec := range next.Secrets {
				if sec.Namespace == r.Name {
					delete(next.Secrets, sk)
				}
			}
		case cluster.KindNode, cluster.KindLab:
			return nil, fmt.Errorf("%s %q cannot be deleted: change the Lab document's nodes, or run podnet lab down", r.Kind.Plural(), r.Name)
		default:
			return nil, fmt.Errorf("%s cannot be deleted: the lab has no such objects", r.Kind.Plural())
		}
		if !found {
			missing = append(missing, fmt.Sprintf("%s %q not found", r.Kind.Plural(), r.Name))
			continue
		}
		results = append(results, fmt.Sprintf("%s %q deleted", deletedKind(r.Kind), r.Name))
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s (nothing was deleted)", strings.Join(missing, "; "))
	}
	if err := s.reconcileLocked(next); err != nil {
		return nil, err
	}
	if err := s.commitLocked(next); err != nil {
		return nil, err
	}
	return results, nil
}

// deletedKind is how kubectl names a kind when it reports a deletion: "pod", "deployment.apps",
// "endpointslice.discovery.k8s.io".
func deletedKind(k cluster.Kind) string {
	s := strings.ToLower(string(k))
	if g := k.Group(); g != "" {
		s += "." + g
	}
	return s
}

// ObjectRef names one object.
type ObjectRef struct {
	Kind      cluster.Kind `json:"kind"`
	Namespace string       `json:"namespace,omitempty"`
	Name      string       `json:"name"`
}

// UpdatePodStatus implements agent.StatusWriter.
func (s *Store) UpdatePodStatus(namespace, name string, uid types.UID, status corev1.PodStatus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key(namespace, name)
	old := s.state.Pods[k]
	if old == nil || old.UID != uid {
		return nil
	}
	next := s.state.clone()
	p := old.DeepCopy()
	p.Status = status
	next.Pods[k] = p
	if err := s.reconcileLocked(next); err != nil {
		return err
	}
	s.commitLaterLocked(next)
	return nil
}

// commitLocked makes next the current state, once it is persisted, and wakes the subscribers.
func (s *Store) commitLocked(next *state) error {
	if err := s.save(next, s.version+1); err != nil {
		return err
	}
	s.publishLocked(next)
	s.pending = false // next is newer than anything waiting
	return nil
}

// commitLaterLocked makes next the current state at once, wakes the subscribers, and persists it
// in the background.
func (s *Store) commitLaterLocked(next *state) {
	s.publishLocked(next)
	if s.path == "" {
		return
	}
	s.pending = true
	if !s.writing {
		s.writing = true
		s.writers.Add(1)
		go s.writeBehind()
	}
}

func (s *Store) publishLocked(next *state) {
	next.carryLists(s.state)
	next.carryIngressLists(s.state)
	s.state = next
	s.version++
	if next.reconciled {
		s.resyncAll = false
	}
	s.changes.Notify()
}

// writeBehind writes the current state until no newer one is pending.
func (s *Store) writeBehind() {
	defer s.writers.Done()
	for {
		s.mu.Lock()
		if !s.pending {
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.pending = false
		st, v := s.state, s.version
		s.mu.Unlock()
		// A committed state is never modified, so it is encoded without holding mu.
		if err := s.save(st, v); err != nil {
			s.writeMu.Lock()
			s.writeErr = err
			s.writeMu.Unlock()
		}
	}
}

// Flush waits until every committed change is in the state file, and returns the error of a
// background write that failed since the last successful one.
func (s *Store) Flush() error {
	s.writers.Wait()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.writeErr
}

// save writes st, version v, to the state file, unless the file holds a later version.
func (s *Store) save(st *state, v uint64) error {
	if s.path == "" {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.written >= v {
		return nil
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save lab state: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = s.enc.encode(w, st)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save lab state: %w", err)
	}
	s.written, s.writeErr = v, nil
	return nil
}

// stateEncoder writes a state as encoding/json would, but encodes each object only once: objects
// are immutable, so the JSON of an object it encoded for an earlier version is still right. A
// lab of 10,000 Services and their EndpointSlices of 10 endpoints is about 40 MB of JSON; on two
// cores, encoding all of it takes 110 ms, writing the cached encodings 8 ms
// (BenchmarkEncodeState10kServices).
//
// The EndpointSlice controller shares one array of endpoints between the slices of Services that
// select alike (10,000 Services of the same pods have one); its JSON is cached too.
type stateEncoder struct {
	cache map[any][]byte // object pointer, or endpointArray -> its JSON
	fresh map[any][]byte // the cache being built by encode
	buf   []byte
}

// endpointArray identifies an array of endpoints that slices share.
type endpointArray struct {
	first *discoveryv1.Endpoint
	n     int
}

// encode writes st to w.
func (e *stateEncoder) encode(w io.Writer, st *state) error {
	e.fresh = make(map[any][]byte, len(e.cache))
	defer func() { e.fresh = nil }()
	b := e.buf[:0]
	b = append(b, `{"labNumber":`...)
	b = strconv.AppendInt(b, int64(st.LabNumber), 10)
	var err error
	if st.Lab != nil {
		b = append(b, `,"lab":`...)
		if b, err = e.object(w, b, st.Lab); err != nil {
			return err
		}
	}
	for _, m := range []struct {
		name string
		add  func([]byte) ([]byte, error)
	}{
		{"namespaces", func(b []byte) ([]byte, error) { return encodeObjects(e, w, b, st.Namespaces) }},
		{"pods", func(b []byte) ([]byte, error) { return encodeObjects(e, w, b, st.Pods) }},
		{"deployments", func(b []byte) ([]byte, error) { return encodeObjects(e, w, b, st.Deployments) }},
		{"nodes", func(b []byte) ([]byte, error) { return encodeObjects(e, w, b, st.Nodes) }},
		{"services", func(b []byte) ([]byte, error) { return encodeObjects(e, w, b, st.Services) }},
		{"endpointSlices", func(b []byte) ([]byte, error) { return encodeObjects(e, w, b, st.EndpointSlices) }},
		{"networkPolicies", func(b []byte) ([]byte, error) { return encodeObjects(e, w, b, st.NetworkPolicies) }},
		{"ingresses", func(b []byte) ([]byte, error) { return encodeObjects(e, w, b, st.Ingresses) }},
		{"ingressClasses", func(b []byte) ([]byte, error) { return encodeObjects(e, w, b, st.IngressClasses) }},
		{"secrets", func(b []byte) ([]byte, error) { return encodeObjects(e, w, b, st.Secrets) }},
	} {
		b = append(b, `,"`...)
		b = append(b, m.name...)
		b = append(b, `":`...)
		if b, err = m.add(b); err != nil {
			return err
		}
	}
	if st.LastClusterIP != "" {
		b = append(b, `,"lastClusterIP":`...)
		b = appendJSONString(b, st.LastClusterIP)
	}
	if st.LastNodePort != 0 {
		b = append(b, `,"lastNodePort":`...)
		b = strconv.AppendInt(b, int64(st.LastNodePort), 10)
	}
	b = append(b, '}')
	_, err = w.Write(b)
	e.buf = b[:0]
	e.cache = e.fresh
	return err
}

// object appends the JSON of obj, a pointer, to b, writing b out to w when it is large.
func (e *stateEncoder) object(w io.Writer, b []byte, obj any) ([]byte, error) {
	j, ok := e.cache[obj]
	if !ok {
		var err error
		if j, err = e.marshal(obj); err != nil {
			return nil, err
		}
	}
	e.fresh[obj] = j
	if len(b)+len(j) > 1<<16 {
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
		b = b[:0]
		if _, err := w.Write(j); err != nil {
			return nil, err
		}
		return b, nil
	}
	return append(b, j...), nil
}

// marshal returns the JSON of obj, as json.Marshal.
func (e *stateEncoder) marshal(obj any) ([]byte, error) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || len(sl.Endpoints) == 0 {
		return json.Marshal(obj)
	}
	arr := endpointArray{&sl.Endpoints[0], len(sl.Endpoints)}
	eps, ok := e.fresh[arr]
	if !ok {
		if eps, ok = e.cache[arr]; !ok {
			var err error
			if eps, err = json.Marshal(sl.Endpoints); err != nil {
				return nil, err
			}
		}
		e.fresh[arr] = eps
	}
	c := *sl
	c.Endpoints = nil
	j, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	// A null can only be the value of a field, and a slice has one field called endpoints.
	const null = `"endpoints":null`
	i := bytes.Index(j, []byte(null))
	if i < 0 {
		return nil, fmt.Errorf("encode endpointslice %s/%s: no endpoints field", sl.Namespace, sl.Name)
	}
	out := make([]byte, 0, len(j)+len(eps))
	out = append(out, j[:i+len(`"endpoints":`)]...)
	out = append(out, eps...)
	return append(out, j[i+len(null):]...), nil
}

// encodeObjects appends a map of objects as a JSON object.
func encodeObjects[V any](e *stateEncoder, w io.Writer, b []byte, m map[string]V) ([]byte, error) {
	b = append(b, '{')
	first := true
	var err error
	for k, v := range m {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, k)
		b = append(b, ':')
		if b, err = e.object(w, b, v); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// reconcileLocked runs the lab's controllers over next, the version that follows s.state: Nodes
// follow the Lab, Deployments own their replicas, every pod gets a node, LoadBalancer Services
// and the Ingresses podnet serves get the nodes' addresses and Services with a selector get
// EndpointSlices.
func (s *Store) reconcileLocked(next *state) error {
	if err := s.syncNodes(next); err != nil {
		return err
	}
	s.syncDeployments(next)
	s.schedule(next)
	s.syncServices(s.state, next, s.resyncAll)
	syncIngressStatus(s.state, next, s.resyncAll)
	return nil
}

// syncNodes makes one Node per node of the Lab, each with a pod CIDR (kept once given) and an
// address, and removes Nodes (and their pods) that left the Lab.
func (s *Store) syncNodes(next *state) error {
	lab := next.Lab
	netw, err := lab.Network()
	if err != nil {
		return err
	}
	want := map[string]cluster.LabNode{}
	for _, n := range lab.Spec.Nodes {
		want[n.Name] = n
	}
	for name := range next.Nodes {
		if _, ok := want[name]; !ok {
			delete(next.Nodes, name)
			for k, p := range next.Pods {
				if p.Spec.NodeName == name {
					delete(next.Pods, k)
				}
			}
		}
	}
	usedCIDR := map[string]bool{}
	usedAddr := map[string]bool{}
	for _, n := range next.Nodes {
		usedCIDR[n.Spec.PodCIDR] = true
		usedAddr[nodeAddress(n)] = true
	}
	for i, ln := range lab.Spec.Nodes {
		if _, ok := next.Nodes[ln.Name]; ok {
			continue
		}
		var cidr netip.Prefix
		for idx := 0; ; idx++ {
			c, err := cluster.NodePodCIDR(netw.ClusterCIDR, idx)
			if err != nil {
				return fmt.Errorf("lab %s: node %s: no free /24 left in clusterCIDR %s", lab.Name, ln.Name, netw.ClusterCIDR)
			}
			if !usedCIDR[c.String()] {
				cidr = c
				break
			}
		}
		usedCIDR[cidr.String()] = true
		addr := ln.Address
		if addr == "" {
			for h := i + 1; h < 255; h++ {
				a := fmt.Sprintf("127.0.%d.%d", next.LabNumber, h)
				if !usedAddr[a] {
					addr = a
					break
				}
			}
		}
		usedAddr[addr] = true
		next.Nodes[ln.Name] = &corev1.Node{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
			ObjectMeta: metav1.ObjectMeta{
				Name: ln.Name, UID: uuid.NewUUID(), CreationTimestamp: metav1.NewTime(s.now()),
				Labels: map[string]string{"kubernetes.io/hostname": ln.Name, "kubernetes.io/os": "linux"},
			},
			Spec: corev1.NodeSpec{PodCIDR: cidr.String(), PodCIDRs: []string{cidr.String()}},
			Status: corev1.NodeStatus{
				Addresses: []corev1.NodeAddress{
					{Type: corev1.NodeInternalIP, Address: addr},
					{Type: corev1.NodeHostName, Address: ln.Name},
				},
				Conditions: []corev1.NodeCondition{{
					Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "PodnetAgentReady",
					Message: "podnet node agent is running", LastTransitionTime: metav1.NewTime(s.now()),
				}},
				NodeInfo: corev1.NodeSystemInfo{
					OperatingSystem: "linux", Architecture: "amd64",
					KubeletVersion: "podnet", ContainerRuntimeVersion: "podnet-sandbox://v1alpha1", OSImage: "host",
				},
			},
		}
	}
	return nil
}

// nodeAddress returns a Node's InternalIP.
func nodeAddress(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// syncDeployments gives each Deployment exactly spec.replicas pods of its current template,
// removes pods whose Deployment is gone, and updates each Deployment's status.
func (s *Store) syncDeployments(next *state) {
	owned := map[types.UID][]*corev1.Pod{}
	for k, p := range next.Pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.Kind != "Deployment" {
			continue
		}
		if _, ok := next.Deployments[key(p.Namespace, ref.Name)]; !ok || next.Deployments[key(p.Namespace, ref.Name)].UID != ref.UID {
			delete(next.Pods, k)
			continue
		}
		owned[ref.UID] = append(owned[ref.UID], p)
	}
	for dk, d := range next.Deployments {
		hash := templateHash(&d.Spec.Template)
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		var current []*corev1.Pod
		for _, p := range owned[d.UID] {
			if p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash {
				delete(next.Pods, key(p.Namespace, p.Name)) // an old template: replaced
				continue
			}
			current = append(current, p)
		}
		// Scale down: the newest pods go first.
		sort.Slice(current, func(i, j int) bool {
			return current[i].CreationTimestamp.Before(&current[j].CreationTimestamp) ||
				(current[i].CreationTimestamp.Equal(&current[j].CreationTimestamp) && current[i].Name < current[j].Name)
		})
		for int32(len(current)) > replicas {
			last := current[len(current)-1]
			delete(next.Pods, key(last.Namespace, last.Name))
			current = current[:len(current)-1]
		}
		for int32(len(current)) < replicas {
			p := s.podFromTemplate(d, hash)
			for next.Pods[key(p.Namespace, p.Name)] != nil {
				p = s.podFromTemplate(d, hash)
			}
			next.Pods[key(p.Namespace, p.Name)] = p
			current = append(current, p)
		}
		var ready int32
		for _, p := range current {
			if podReady(p) {
				ready++
			}
		}
		st := appsv1.DeploymentStatus{
			ObservedGeneration:  d.Generation,
			Replicas:            int32(len(current)),
			UpdatedReplicas:     int32(len(current)),
			ReadyReplicas:       ready,
			AvailableReplicas:   ready,
			UnavailableReplicas: int32(len(current)) - ready,
		}
		if !equality.Semantic.DeepEqual(st, d.Status) {
			n := d.DeepCopy()
			n.Status = st
			next.Deployments[dk] = n
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// templateHash is the pod-template-hash of a Deployment's template, as the label that
// distinguishes its ReplicaSets: a short, stable hash of the template.
func templateHash(t *corev1.PodTemplateSpec) string {
	b, _ := json.Marshal(t)
	h := fnv.New32a()
	h.Write(b)
	return safeEncode(fmt.Sprintf("%d", h.Sum32()))
}

// safeEncode maps a string onto the alphabet Kubernetes uses for generated names (no vowels, no
// easily confused characters).
func safeEncode(s string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	out := make([]byte, len(s))
	for i := 0; i < len(s); i++ {
		out[i] = alphabet[int(s[i])%len(alphabet)]
	}
	return string(out)
}

func randomSuffix() string {
	b := make([]byte, 5)
	rand.Read(b)
	return safeEncode(string(b))
}

func (s *Store) podFromTemplate(d *appsv1.Deployment, hash string) *corev1.Pod {
	t := d.Spec.Template.DeepCopy()
	lbl := map[string]string{}
	for k, v := range t.Labels {
		lbl[k] = v
	}
	lbl[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	rsName := d.Name + "-" + hash
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              rsName + "-" + randomSuffix(),
			Namespace:         d.Namespace,
			Labels:            lbl,
			Annotations:       t.Annotations,
			UID:               uuid.NewUUID(),
			CreationTimestamp: metav1.NewTime(s.now()),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID,
				Controller: ptr(true), BlockOwnerDeletion: ptr(true),
			}},
		},
		Spec:   t.Spec,
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
}

func ptr[T any](v T) *T { return &v }

// schedule binds every pod without a node to the node with the fewest pods (ties: Lab order).
func (s *Store) schedule(next *state) {
	if next.Lab == nil || len(next.Lab.Spec.Nodes) == 0 {
		return
	}
	count := map[string]int{}
	var pending []*corev1.Pod
	for _, p := range next.Pods {
		if p.Spec.NodeName == "" {
			pending = append(pending, p)
		} else {
			count[p.Spec.NodeName]++
		}
	}
	slices.SortFunc(pending, func(a, b *corev1.Pod) int { return strings.Compare(key(a.Namespace, a.Name), key(b.Namespace, b.Name)) })
	for _, p := range pending {
		best := ""
		for _, n := range next.Lab.Spec.Nodes {
			if best == "" || count[n.Name] < count[best] {
				best = n.Name
			}
		}
		n := p.DeepCopy()
		n.Spec.NodeName = best
		count[best]++
		setPodCondition(n, corev1.PodScheduled)
		next.Pods[key(n.Namespace, n.Name)] = n
	}
}

func setPodCondition(p *corev1.Pod, t corev1.PodConditionType) {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{
		Type: t, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now(),
	})
}

// UpdateNodeAnnotations sets annotations of a Node (a node agent publishes its WireGuard key and
// endpoint this way). Annotations not named are kept; a Node that is gone is ignored.
func (s *Store) UpdateNodeAnnotations(node string, ann map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.state.Nodes[node]
	if old == nil {
		return nil
	}
	same := true
	for k, v := range ann {
		if old.Annotations[k] != v {
			same = false
		}
	}
	if same {
		return nil
	}
	next := s.state.clone()
	n := old.DeepCopy()
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	for k, v := range ann {
		n.Annotations[k] = v
	}
	next.Nodes[node] = n
	s.commitLaterLocked(next)
	return nil
}
