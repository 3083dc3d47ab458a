// Package graph draws a cluster's network as a picture: its nodes as boxes
// with their pods inside, its Services, the NetworkPolicies that select
// pods and the peers their ingress rules allow, and the flows of the flow
// log, green when allowed and red when denied. It is the core of
// `podnet lab graph` (and, with --kubeconfig, of the same picture of a real
// cluster), so that a person sees at a glance what talks to what and what
// is denied.
//
// Build turns the API objects and the flows into a Graph, a plain model
// with exported fields that callers and tests can inspect; WriteDOT renders
// it as Graphviz source and WriteSVG as a standalone SVG 1.1 image with a
// layout of its own: node boxes as columns side by side, pods stacked inside
// them, Services in a row above, addresses that are not pods in a row below,
// a legend at the bottom.
//
// The package is pure: it fetches nothing, opens no file or socket, starts
// no goroutine, keeps no mutable state and never runs Graphviz (which need
// not be installed); it writes only to the io.Writer it is given. Its output
// is deterministic: the same objects and flows, in any order, give the same
// bytes, so that tests can compare pictures and people can diff them.
//
// # What is drawn
//
//   - A pod is drawn when it is bound to a node and not terminal (Succeeded
//     or Failed). A pod whose node is not among the given nodes gets a box
//     of its own for that node, marked as not listed.
//   - A Service selects, with a grey "selects" edge, the drawn pods of its
//     namespace that its selector matches. Services without a selector and
//     ExternalName Services have no such edges.
//   - A NetworkPolicy marks the pods it selects (each pod lists the policies
//     selecting it). For every ingress rule, a dashed green edge "allowed by
//     POLICY" runs from every pod its podSelector/namespaceSelector peers
//     match to every pod the policy selects; an ipBlock peer becomes an
//     address labelled with its CIDR, and a rule without peers an address
//     "any address". Edges between the same two ends are collapsed into one
//     that names every policy. A peer matching more than GroupPods pods, or
//     a policy selecting more, is drawn as one group of pods, so that
//     "allow from the whole namespace" is a few edges and not a mesh.
//     Egress rules are not drawn as edges (the picture would double); their
//     policies still mark the pods.
//   - Namespace selectors are matched against the standard label
//     kubernetes.io/metadata.name only, which the API server sets on every
//     namespace: Build gets no Namespace objects, so a selector on any other
//     namespace label selects nothing here.
//   - A flow becomes a solid edge per distinct source, destination, port,
//     protocol and verdict, with a count when it was seen more than once. A
//     flow through a Service is drawn from its source to the backend pod
//     with the Service named in the label ("via ns/name"): the verdict
//     belongs to the pod pair, and the Service's own edges already show
//     which pods it selects. Sources and destinations that are addresses of
//     no drawn pod become addresses in the bottom row (a node's address is
//     labelled with the node's name); a Service's ClusterIP is the Service.
//
// Policy edges are capped at MaxPolicyEdges and flow edges at MaxFlowEdges
// (denied and frequent flows kept first); Graph.Notes says what was left
// out, and both renderers show the notes.
package graph
