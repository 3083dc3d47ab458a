// Package policy compiles Kubernetes NetworkPolicies (networking.k8s.io/v1)
// into verdict tables that a node agent consults once per new flow.
//
// The node agent calls Compile on every change of policies, namespaces or
// pods and swaps the resulting Table in atomically; its data path asks
// Table.Allows about every new connection — egress at the source pod's
// node, ingress at the destination pod's node, after Service translation so
// that rules see the backend pod — and its connection tracking lets the
// replies and later packets of an allowed connection pass without asking
// again. So this package is pure: it never imports gVisor, never opens a
// socket or a file, starts no goroutine and keeps no mutable state (a test
// forbids the imports and the go statements). Its inputs are the policies
// as the API defines them and small structs for pods and namespaces.
//
// # Semantics
//
// The package implements the API reference and the Kubernetes
// documentation; where they leave room it follows the upstream e2e model
// (kubernetes/test/e2e/network/netpol) and Calico:
//
//   - A policy selects the pods of its namespace that its podSelector
//     matches (empty: all of them). Its policyTypes default, when unset, to
//     Ingress plus Egress if it has egress rules. A pod selected by a policy
//     with a type is isolated in that direction; an isolated pod accepts
//     (or sends) only what some rule of some policy selecting it allows —
//     the rules of all such policies add up. A pod no policy isolates is
//     not restricted, nor is an address that is not a pod.
//   - A rule matches when one of its peers and one of its ports match. No
//     peers: every address, pod or not. A peer with only a podSelector:
//     pods of the policy's namespace; only a namespaceSelector: all pods of
//     the namespaces it selects (kubernetes.io/metadata.name is implied on
//     every namespace); both: pods matching the podSelector in those
//     namespaces.
//   - ipBlock matches addresses in its cidr and outside every except, and
//     that includes pod IPs. This is the choice of Calico and of the
//     upstream e2e tests (which expect an ipBlock to reach pods); Cilium
//     matches only addresses outside the cluster. Traffic to and from
//     addresses that are not pods — the node gateway, the outside world —
//     is judged by the same rules, so only ipBlock peers and rules without
//     peers match it.
//   - Ports: none means every port of every protocol (ICMP included).
//     An entry's protocol defaults to TCP; without a port it matches every
//     port of that protocol; a numeric port matches it, or the range up to
//     endPort. A named port is resolved against the destination pod's
//     container ports of that protocol: the selected pod for ingress, the
//     peer pod for egress. A destination that is not a known pod cannot
//     match a named port.
//   - A pod's traffic to itself (Src == Dst) is always allowed, as the
//     documentation says ("a pod cannot block access to itself") and the
//     upstream tests expect.
//
// The documentation also says that traffic between a pod and its own node
// is always allowed (kubelet probes). Table does not know node addresses:
// the node agent should not ask about flows between a pod and its node.
// hostNetwork pods are outside NetworkPolicy, and the agent must not pass
// them to Compile (their address is the node's).
//
// Policies are expected to be valid — the lab's decoder and the API server
// run Validate — but Compile accepts anything without panicking: a part of
// a policy that validation would reject matches nothing. An unparsable
// cidr or except empties its ipBlock (a broken except must not widen a
// block); an unknown protocol or an endPort below its port empties that
// port entry; a malformed selector selects nothing; a peer with ipBlock and
// a selector, or with nothing, matches nothing.
//
// # The table
//
// Compile evaluates every label selector once per namespace it applies to
// and interns what repeats — 1,000 policies usually share a few hundred
// selectors: a peer's pods become a set of pod indices (a bitmap, or a
// sorted list when sparse) built once per distinct peer list and shared,
// ipBlocks become sorted address ranges, port lists become sorted ranges.
// Every pod gets, per direction, the list of rules (peer matcher, port
// matcher, policy) of the policies isolating it, in namespace/name and rule
// order, with ingress named ports resolved for that pod; pods with equal
// lists share one. Allows looks up the judged pod by address (a map keyed
// by the IPv4 address as a number), scans its list and stops at the first
// rule that matches: no allocation, no lock.
//
// For the deny counters of the data path, Allows returns a PolicySet: on a
// denial, all the policies that isolate the pod; on an allow by a rule, the
// first policy (in namespace/name order) with a matching rule. Explain
// reports every matching rule, for `podnet policy explain`.
package policy
