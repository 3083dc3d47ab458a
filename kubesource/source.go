// Package kubesource is the node agent's Source on a real Kubernetes API server: client-go shared
// informers for Nodes, Namespaces, Pods, Services, EndpointSlices, NetworkPolicies, Ingresses,
// IngressClasses and TLS Secrets, kept in memory and handed to the agent as sorted lists.
//
// Contract, beyond agent.Source's:
//
//   - Nothing is handed out before every informer has synced: until then every list is empty
//     and no change is signalled, so an agent programs nothing from a partial view
//     (WaitForSync tells when the view is whole).
//   - Every list is sorted by namespace, then name, whatever order the informers' stores keep:
//     nothing downstream depends on the order a lister returns objects in. A list is rebuilt
//     only after an event of its kind and shared until the next one.
//   - Ingresses are those served by podnet's IngressClass (cluster.ServedByPodnet), and Secrets
//     only those of type kubernetes.io/tls (the Ingress controller's certificates; no other
//     Secret is ever listed or held).
//
// The objects are the informers' own: callers must never modify them.
package kubesource

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/podnet/podnet/cluster"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Source follows the cluster through shared informers. New makes it, Start starts the informers,
// WaitForSync waits until they have synced.
type Source struct {
	factory informers.SharedInformerFactory
	tls     informers.SharedInformerFactory // Secrets of type kubernetes.io/tls only

	nodes          *list[*corev1.Node]
	namespaces     *list[*corev1.Namespace]
	pods           *list[*corev1.Pod]
	services       *list[*corev1.Service]
	slices         *list[*discoveryv1.EndpointSlice]
	policies       *list[*networkingv1.NetworkPolicy]
	ingresses      *list[*networkingv1.Ingress]
	ingressClasses *list[*networkingv1.IngressClass]
	secrets        *list[*corev1.Secret]
	all            []lister

	mu     sync.Mutex // guards synced
	synced bool

	changes cluster.Changes
}

// New makes a Source on client. Resync is the informers' resync period; zero means none.
func New(client kubernetes.Interface, resync time.Duration) *Source {
	s := &Source{
		factory: informers.NewSharedInformerFactory(client, resync),
		tls: informers.NewSharedInformerFactoryWithOptions(client, resync,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = "type=" + string(corev1.SecretTypeTLS)
			})),
	}
	s.nodes = newList[*corev1.Node](s, s.factory.Core().V1().Nodes().Informer())
	s.namespaces = newList[*corev1.Namespace](s, s.factory.Core().V1().Namespaces().Informer())
	s.pods = newList[*corev1.Pod](s, s.factory.Core().V1().Pods().Informer())
	s.services = newList[*corev1.Service](s, s.factory.Core().V1().Services().Informer())
	s.slices = newList[*discoveryv1.EndpointSlice](s, s.factory.Discovery().V1().EndpointSlices().Informer())
	s.policies = newList[*networkingv1.NetworkPolicy](s, s.factory.Networking().V1().NetworkPolicies().Informer())
	s.ingresses = newList[*networkingv1.Ingress](s, s.factory.Networking().V1().Ingresses().Informer())
	s.ingressClasses = newList[*networkingv1.IngressClass](s, s.factory.Networking().V1().IngressClasses().Informer())
	s.secrets = newList[*corev1.Secret](s, s.tls.Core().V1().Secrets().Informer())
	s.all = []lister{s.nodes, s.namespaces, s.pods, s.services, s.slices, s.policies, s.ingresses, s.ingressClasses, s.secrets}
	return s
}

// Start starts the informers; they stop when ctx ends.
func (s *Source) Start(ctx context.Context) {
	s.factory.Start(ctx.Done())
	s.tls.Start(ctx.Done())
}

// WaitForSync blocks until every informer has synced, then makes the lists visible and tells the
// subscribers; it fails when ctx ends first, naming the kinds that had not synced.
func (s *Source) WaitForSync(ctx context.Context) error {
	for !s.informersSynced() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubesource: caches not synced (%v): %w", s.unsynced(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.mu.Lock()
	s.synced = true
	s.mu.Unlock()
	s.changes.Notify()
	return nil
}

func (s *Source) informersSynced() bool {
	for _, l := range s.all {
		if !l.hasSynced() {
			return false
		}
	}
	return true
}

func (s *Source) unsynced() []string {
	var kinds []string
	for _, l := range s.all {
		if !l.hasSynced() {
			kinds = append(kinds, l.kind())
		}
	}
	return kinds
}

// Synced reports whether WaitForSync has seen every informer synced.
func (s *Source) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// changed is called by the informers' handlers; nothing is signalled before the sync.
func (s *Source) changed() {
	if s.Synced() {
		s.changes.Notify()
	}
}

// Subscribe implements agent.Source.
func (s *Source) Subscribe() (<-chan struct{}, func()) { return s.changes.Subscribe() }

// Nodes implements agent.Source.
func (s *Source) Nodes() []*corev1.Node { return s.nodes.get() }

// Namespaces implements agent.Source.
func (s *Source) Namespaces() []*corev1.Namespace { return s.namespaces.get() }

// Pods implements agent.Source.
func (s *Source) Pods() []*corev1.Pod { return s.pods.get() }

// NodePods returns the pods bound to node, sorted.
func (s *Source) NodePods(node string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range s.pods.get() {
		if p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	return out
}

// Services implements agent.Source.
func (s *Source) Services() []*corev1.Service { return s.services.get() }

// EndpointSlices implements agent.Source.
func (s *Source) EndpointSlices() []*discoveryv1.EndpointSlice { return s.slices.get() }

// NetworkPolicies implements agent.Source.
func (s *Source) NetworkPolicies() []*networkingv1.NetworkPolicy { return s.policies.get() }

// IngressClasses returns every IngressClass, sorted by name.
func (s *Source) IngressClasses() []*networkingv1.IngressClass { return s.ingressClasses.get() }

// Ingresses implements agent.Source: the Ingresses podnet serves.
func (s *Source) Ingresses() []*networkingv1.Ingress {
	classes := s.ingressClasses.get()
	var out []*networkingv1.Ingress
	for _, ing := range s.ingresses.get() {
		if cluster.ServedByPodnet(ing, classes) {
			out = append(out, ing)
		}
	}
	return out
}

// Secrets implements agent.Source: the Secrets of type kubernetes.io/tls. (The informer asks the
// API server for those only; the filter here holds where a server ignores the field selector.)
func (s *Source) Secrets() []*corev1.Secret {
	var out []*corev1.Secret
	for _, sec := range s.secrets.get() {
		if sec.Type == corev1.SecretTypeTLS {
			out = append(out, sec)
		}
	}
	return out
}

// lister is what Source needs of every list, whatever its kind.
type lister interface {
	hasSynced() bool
	kind() string
}

// list keeps one kind's sorted list, rebuilt on demand after an event of the kind.
type list[T metav1.Object] struct {
	src      *Source
	informer cache.SharedIndexInformer
	synced   cache.InformerSynced

	mu     sync.Mutex // guards sorted, dirty
	sorted []T
	dirty  bool
}

func newList[T metav1.Object](src *Source, inf cache.SharedIndexInformer) *list[T] {
	l := &list[T]{src: src, informer: inf, dirty: true}
	mark := func() {
		l.mu.Lock()
		l.dirty = true
		l.mu.Unlock()
		src.changed()
	}
	reg, _ := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { mark() },
		UpdateFunc: func(any, any) { mark() },
		DeleteFunc: func(any) { mark() },
	})
	l.synced = inf.HasSynced
	if reg != nil {
		// Synced once the handler has seen the initial list too, not only the store.
		l.synced = reg.HasSynced
	}
	return l
}

func (l *list[T]) hasSynced() bool { return l.synced() }

func (l *list[T]) kind() string {
	var zero T
	return fmt.Sprintf("%T", zero)
}

// get returns the sorted list; empty until the Source has synced.
func (l *list[T]) get() []T {
	if !l.src.Synced() {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dirty {
		items := l.informer.GetStore().List()
		out := make([]T, 0, len(items))
		for _, it := range items {
			if o, ok := it.(T); ok {
				out = append(out, o)
			}
		}
		sort.Slice(out, func(i, j int) bool {
			if a, b := out[i].GetNamespace(), out[j].GetNamespace(); a != b {
				return a < b
			}
			return out[i].GetName() < out[j].GetName()
		})
		l.sorted, l.dirty = out, false
	}
	return l.sorted
}
