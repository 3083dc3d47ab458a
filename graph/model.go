package graph

// Flow is one connection from the flow log: a source and destination as
// "namespace/pod" when they are pods, or an IP address otherwise; the
// Service it went through (namespace/name) if any; port and protocol;
// whether it was allowed; the policies that decided. Service may also be
// given as "namespace/name:port", as the node agents' flow log writes it,
// or as the Service's address.
type Flow struct {
	Source, Dest, Service string
	Port                  uint16
	Protocol              string // TCP, UDP, SCTP
	Allowed               bool
	Policies              []string
}

// Limits that keep a picture readable. When more edges would be drawn,
// Build keeps this many and says in Graph.Notes how many it left out.
const (
	// MaxPolicyEdges caps the "allowed by" edges of NetworkPolicies, which
	// grow with the product of peers and selected pods.
	MaxPolicyEdges = 200
	// MaxFlowEdges caps the flow edges; denied flows are kept first, then
	// the most frequent.
	MaxFlowEdges = 300
	// GroupPods is the most pods a policy edge end stands for one by one:
	// a peer that matches more pods, or a policy that selects more, is
	// drawn as one AddressPodGroup, so that a policy such as "allow from
	// the whole namespace" draws a few edges instead of a mesh.
	GroupPods = 4
)

// Colours of the edges, as CSS hex colours (used by both renderers).
const (
	ColorSelects = "#868e96" // grey: a Service selects a pod
	ColorAllowed = "#2f9e44" // green: an allowed flow, or a policy that allows
	ColorDenied  = "#e03131" // red: a denied flow
)

// Graph is the model of one picture. Every slice is sorted, so that two
// Graphs built from the same objects are equal and render to the same
// bytes. IDs (Pod.ID, Service.ID, Address.ID) are unique across the Graph
// and are what Edge.From and Edge.To refer to.
type Graph struct {
	// Nodes are the cluster's nodes by name, each with its pods.
	Nodes []Node
	// Services are by namespace/name.
	Services []Service
	// Addresses are the ends of edges that are no drawn pod or Service:
	// outside and node addresses of flows, pods that are not drawn, groups
	// of pods, ipBlocks of policies; by Kind, then ID.
	Addresses []Address
	// Policies are the NetworkPolicies by namespace/name, with the pods
	// they select.
	Policies []Policy
	// Edges are by Kind, then From, To and the rest of their key.
	Edges []Edge
	// Notes are sentences about what the picture leaves out or could not
	// read (a malformed selector, edges over a cap), for the reader.
	Notes []string
}

// Node is one cluster box.
type Node struct {
	Name string
	// PodCIDR is node.Spec.PodCIDR, "" when unset.
	PodCIDR string
	// Unlisted is true for a node that pods name but that was not among
	// the nodes given to Build.
	Unlisted bool
	// Pods are the node's drawn pods by namespace/name.
	Pods []Pod
}

// Pod is one pod inside its node's box.
type Pod struct {
	ID              string // PodID(Namespace, Name)
	Namespace, Name string
	// IP is the pod's primary address, "" when it has none yet.
	IP string
	// Node is the name of the node the pod runs on.
	Node string
	// Policies are the namespace/names of the NetworkPolicies that select
	// the pod, sorted.
	Policies []string
}

// Service is one Service shape.
type Service struct {
	ID              string // ServiceID(Namespace, Name)
	Namespace, Name string
	// Type is the Service's type; ClusterIP when the spec leaves it empty.
	Type string
	// ClusterIP is spec.clusterIP ("None" for a headless Service), or the
	// external name of an ExternalName Service.
	ClusterIP string
	// Ports are the Service's ports as kubectl shows them: "80/TCP", or
	// "80:30080/TCP" with a node port.
	Ports []string
	// HasSelector is false for Services that select no pods themselves:
	// ExternalName Services and Services without a selector.
	HasSelector bool
}

// AddressKind says what an Address stands for.
type AddressKind int

// The kinds of Address, in the order the bottom row shows them.
const (
	// AddressOutside is an IP address of a flow that is no drawn pod,
	// Service or node.
	AddressOutside AddressKind = iota
	// AddressNode is the address of a node, seen in a flow.
	AddressNode
	// AddressMissingPod is a pod that a flow names but that is not drawn
	// (gone, terminal, or not yet on a node), or a Service a flow names
	// that was not given.
	AddressMissingPod
	// AddressPodGroup stands for more than GroupPods pods at one end of
	// policy edges: the pods a peer matches, or those a policy selects.
	// Address.Pods lists them.
	AddressPodGroup
	// AddressBlock is the ipBlock peer of a policy rule.
	AddressBlock
	// AddressAny stands for every source: a policy rule without peers.
	AddressAny
)

// String returns the kind's name as the legend and the DOT comments use it.
func (k AddressKind) String() string {
	switch k {
	case AddressOutside:
		return "outside"
	case AddressNode:
		return "node"
	case AddressMissingPod:
		return "not drawn"
	case AddressPodGroup:
		return "pod group"
	case AddressBlock:
		return "ipBlock"
	case AddressAny:
		return "any"
	}
	return "unknown"
}

// Address is an edge end that is no drawn pod or Service.
type Address struct {
	ID   string
	Kind AddressKind
	// Address is the IP, the CIDR (with " except ..." for an ipBlock with
	// exceptions), or the namespace/name of a missing pod.
	Address string
	// Label is what the shape shows, lines separated by "\n".
	Label string
	// Pods are, for an AddressPodGroup, the IDs of its pods, sorted.
	Pods []string
}

// Policy is one NetworkPolicy as the picture knows it.
type Policy struct {
	Name string // namespace/name
	// Pods are the IDs of the drawn pods the policy selects, sorted.
	Pods []string
	// Ingress and Egress are the policy's effective types: those listed in
	// spec.policyTypes, or Ingress plus Egress if it has egress rules.
	Ingress, Egress bool
}

// EdgeKind says what an Edge shows.
type EdgeKind int

// The kinds of Edge, in the order they are listed and drawn.
const (
	// EdgeSelects runs from a Service to a pod its selector selects (grey).
	EdgeSelects EdgeKind = iota
	// EdgePolicy runs from a peer an ingress rule allows to a pod the
	// policy selects (dashed green).
	EdgePolicy
	// EdgeFlow is a connection of the flow log (solid; green when allowed,
	// red when denied).
	EdgeFlow
)

// String returns "selects", "policy" or "flow".
func (k EdgeKind) String() string {
	switch k {
	case EdgeSelects:
		return "selects"
	case EdgePolicy:
		return "policy"
	case EdgeFlow:
		return "flow"
	}
	return "unknown"
}

// Edge is one arrow of the picture. The fields after Dashed apply to some
// kinds only, as their comments say.
type Edge struct {
	Kind     EdgeKind
	From, To string // IDs of a Pod, Service or Address
	// Label is the edge's text, lines separated by "\n".
	Label string
	// Color is ColorSelects, ColorAllowed or ColorDenied.
	Color string
	// Dashed is true for policy edges.
	Dashed bool

	// Policies are, on a policy edge, the policies whose rules allow From
	// to reach To; on a denied flow, the policies the flow log says denied
	// it. Sorted.
	Policies []string
	// Ports are, on a policy edge, the ports the allowing rules name
	// ("80/TCP", "8000-8080/TCP", "http/TCP", "*/UDP"), sorted; nil when
	// some rule allows every port.
	Ports []string

	// Port and Protocol are the flow's destination port and protocol.
	Port     uint16
	Protocol string
	// Allowed is the flow's verdict.
	Allowed bool
	// Via are the Services (namespace/name) the flow went through, sorted.
	Via []string
	// Count is how many flows of the log the edge stands for.
	Count int
}

// PodID is the ID of the pod namespace/name in a Graph.
func PodID(namespace, name string) string { return "pod:" + namespace + "/" + name }

// ServiceID is the ID of the Service namespace/name in a Graph.
func ServiceID(namespace, name string) string { return "svc:" + namespace + "/" + name }

// Pod returns the drawn pod with the given ID, or nil.
func (g *Graph) Pod(id string) *Pod {
	for i := range g.Nodes {
		for j := range g.Nodes[i].Pods {
			if g.Nodes[i].Pods[j].ID == id {
				return &g.Nodes[i].Pods[j]
			}
		}
	}
	return nil
}

// EdgesOf returns the edges of kind k, in the Graph's order.
func (g *Graph) EdgesOf(k EdgeKind) []Edge {
	var out []Edge
	for _, e := range g.Edges {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}
