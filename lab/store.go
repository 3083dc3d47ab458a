package lab

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/podnet/podnet/cluster"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// Store is the lab's desired state: the objects of the lab and the controllers that derive objects
// from others (Nodes from the Lab, Pods from Deployments, a node for every unscheduled Pod). Every
// change is all-or-nothing, is persisted before it is visible, and wakes the subscribers.
//
// Objects in the store are never modified in place: a change replaces the object, so readers may
// keep what they got.
type Store struct {
	path string // persistence file; "" means memory only
	now  func() time.Time

	mu     sync.Mutex // guards the fields below
	state  *state
	subs   map[int]chan struct{}
	nextID int
}

// state is one version of everything the store holds.
type state struct {
	LabNumber   int                           `json:"labNumber"`
	Lab         *cluster.Lab                  `json:"lab,omitempty"`
	Namespaces  map[string]*corev1.Namespace  `json:"namespaces"`
	Pods        map[string]*corev1.Pod        `json:"pods"`
	Deployments map[string]*appsv1.Deployment `json:"deployments"`
	Nodes       map[string]*corev1.Node       `json:"nodes"`
}

func newState(labNumber int) *state {
	return &state{
		LabNumber:   labNumber,
		Namespaces:  map[string]*corev1.Namespace{},
		Pods:        map[string]*corev1.Pod{},
		Deployments: map[string]*appsv1.Deployment{},
		Nodes:       map[string]*corev1.Node{},
	}
}

// clone copies the maps (not the objects, which are immutable).
func (s *state) clone() *state {
	c := *s
	c.Namespaces = cloneMap(s.Namespaces)
	c.Pods = cloneMap(s.Pods)
	c.Deployments = cloneMap(s.Deployments)
	c.Nodes = cloneMap(s.Nodes)
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
	s := &Store{path: path, now: time.Now, state: newState(labNumber), subs: map[int]chan struct{}{}}
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
	s.state = st
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
func (s *Store) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	id := s.nextID
	s.nextID++
	s.subs[id] = ch
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
	}
}

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
		problems = append(problems, fmt.Sprintf("%s: %s: %s", d.Position(), cluster.ObjectName(d.Object), fmt.Sprintf(format, a...)))
	}
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
			next.Lab = o.DeepCopy()
		case *corev1.Namespace:
			old := next.Namespaces[o.Name]
			n := o.DeepCopy()
			results = append(results, name+" "+verb(old != nil, old != nil && equality.Semantic.DeepEqual(old.Labels, n.Labels) && equality.Semantic.DeepEqual(old.Annotations, n.Annotations)))
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
				n.UID, n.CreationTimestamp, n.Generation, n.Status = old.UID, old.CreationTimestamp, old.Generation, old.Status
				if !equality.Semantic.DeepEqual(old.Spec, n.Spec) {
					n.Generation++
				}
			}
			next.Deployments[k] = n
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
	if len(problems) > 0 {
		return nil, &ApplyError{Problems: problems}
	}
	if err := s.reconcileLocked(next); err != nil {
		return nil, err
	}
	if err := s.commitLocked(next); err != nil {
		return nil, err
	}
	return results, nil
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
		case cluster.KindNode, cluster.KindLab:
			return nil, fmt.Errorf("%s %q cannot be deleted: change the Lab document's nodes, or run podnet lab down", r.Kind.Plural(), r.Name)
		default:
			return nil, fmt.Errorf("%s cannot be deleted: the lab has no such objects", r.Kind.Plural())
		}
		if !found {
			missing = append(missing, fmt.Sprintf("%s %q not found", r.Kind.Plural(), r.Name))
			continue
		}
		results = append(results, fmt.Sprintf("%s %q deleted", strings.ToLower(string(r.Kind)), r.Name))
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
	return s.commitLocked(next)
}

func (s *Store) commitLocked(next *state) error {
	if s.path != "" {
		b, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("save lab state: %w", err)
		}
		tmp := s.path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return fmt.Errorf("save lab state: %w", err)
		}
		if err := os.Rename(tmp, s.path); err != nil {
			return fmt.Errorf("save lab state: %w", err)
		}
	}
	s.state = next
	for _, ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return nil
}

// reconcileLocked runs the lab's controllers over next: Nodes follow the Lab, Deployments own
// their replicas, every pod gets a node.
func (s *Store) reconcileLocked(next *state) error {
	if err := s.syncNodes(next); err != nil {
		return err
	}
	s.syncDeployments(next)
	s.schedule(next)
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
	return s.commitLocked(next)
}
