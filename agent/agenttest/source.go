// Package agenttest has fakes of the agent's boundary interfaces for tests: an in-memory Source
// and a NodeWriter that records what the agent publishes.
package agenttest

import (
	"maps"
	"sync"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/cluster"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

var (
	_ agent.Source     = (*Source)(nil)
	_ agent.NodeWriter = (*Source)(nil)
)

// Source is an in-memory desired state. Its zero value is empty and ready. Set replaces the
// objects and tells every subscriber; objects handed in must not be changed afterwards.
type Source struct {
	mu          sync.Mutex // guards the fields below
	nodes       []*corev1.Node
	services    []*corev1.Service
	slices      []*discoveryv1.EndpointSlice
	policies    []*networkingv1.NetworkPolicy
	namespaces  []*corev1.Namespace
	pods        []*corev1.Pod
	ingresses   []*networkingv1.Ingress
	secrets     []*corev1.Secret
	annotations map[string]map[string]string // by node: what the agent published

	changes cluster.Changes
}

// State is a whole desired state for Set.
type State struct {
	Nodes           []*corev1.Node
	Services        []*corev1.Service
	EndpointSlices  []*discoveryv1.EndpointSlice
	NetworkPolicies []*networkingv1.NetworkPolicy
	Namespaces      []*corev1.Namespace
	Pods            []*corev1.Pod
	Ingresses       []*networkingv1.Ingress
	Secrets         []*corev1.Secret
}

// Set replaces the state and notifies the subscribers.
func (s *Source) Set(st State) {
	s.mu.Lock()
	s.nodes, s.services, s.slices, s.policies = st.Nodes, st.Services, st.EndpointSlices, st.NetworkPolicies
	s.namespaces, s.pods, s.ingresses, s.secrets = st.Namespaces, st.Pods, st.Ingresses, st.Secrets
	s.mu.Unlock()
	s.changes.Notify()
}

func (s *Source) Nodes() []*corev1.Node       { s.mu.Lock(); defer s.mu.Unlock(); return s.nodes }
func (s *Source) Services() []*corev1.Service { s.mu.Lock(); defer s.mu.Unlock(); return s.services }
func (s *Source) EndpointSlices() []*discoveryv1.EndpointSlice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slices
}
func (s *Source) NetworkPolicies() []*networkingv1.NetworkPolicy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policies
}
func (s *Source) Namespaces() []*corev1.Namespace {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.namespaces
}
func (s *Source) Pods() []*corev1.Pod { s.mu.Lock(); defer s.mu.Unlock(); return s.pods }
func (s *Source) Ingresses() []*networkingv1.Ingress {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ingresses
}
func (s *Source) Secrets() []*corev1.Secret { s.mu.Lock(); defer s.mu.Unlock(); return s.secrets }

// Subscribe implements agent.Source.
func (s *Source) Subscribe() (<-chan struct{}, func()) { return s.changes.Subscribe() }

// UpdateNodeAnnotations implements agent.NodeWriter: it records the annotations.
func (s *Source) UpdateNodeAnnotations(node string, ann map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.annotations == nil {
		s.annotations = make(map[string]map[string]string)
	}
	if s.annotations[node] == nil {
		s.annotations[node] = make(map[string]string)
	}
	maps.Copy(s.annotations[node], ann)
	return nil
}

// Annotations returns a copy of what the agent published about node.
func (s *Source) Annotations(node string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.annotations[node])
}
