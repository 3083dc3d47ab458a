// Package proxy is a node's Service table: it decides, once per new flow,
// which backend (pod address and port) a connection to a Service takes, and it
// serves the node's NodePorts, load-balancer ports and health-check ports on
// host sockets.
//
// It is what kube-proxy is to a Kubernetes node, minus the kernel: the node
// agent converts Services and EndpointSlices into the plain structs of this
// package (Service, Port, Endpoint), hands them to Proxy.Update, and the data
// path asks Proxy.Pick for the backend of every new flow to a ClusterIP; the
// DNAT itself and the connection tracking that keeps established flows on their
// backend belong to the data path (package stack), not to this package. So
// proxy never imports gVisor or Kubernetes (a test forbids it), never does I/O
// for Pick, and never logs on the packet path.
//
// # The table
//
// Update builds an immutable table in O(total endpoints) — one clone of the
// Service slice, one slab for all port entries, one slab for all backend
// lists, presized maps — and swaps it in with an atomic.Pointer. Pick loads
// the pointer and does one map lookup keyed by a compact comparable struct
// (IPv4 address, port, protocol): no lock and no allocation for a Service
// without session affinity, and the cost does not grow with the number of
// Services (see README.md for the figures at 1 and 10,000 Services).
// Only IPv4 virtual addresses are served (the pod network is IPv4); an IPv6
// ClusterIP or load-balancer IP is skipped with a warning at Update.
//
// Only ready endpoints take new flows; duplicate endpoints of a port count
// once. A Service port with no usable endpoint answers NoEndpoint, and the
// data path refuses the flow at once (TCP RST, ICMP port unreachable), as
// kube-proxy's reject rules do. Endpoints that are serving but terminating are
// not modelled: the converter marks them not ready.
//
// # Spreading the load
//
// A new flow goes to a backend chosen uniformly at random among the usable
// ones, as kube-proxy's iptables mode does (its statistic-module chain gives
// each endpoint probability 1/n); Options.Rand makes the choice
// deterministic in tests. internalTrafficPolicy Local restricts ClusterIP
// traffic to this node's endpoints, externalTrafficPolicy Local restricts
// NodePort and load-balancer traffic the same way; with no local endpoint the
// flow gets NoEndpoint.
//
// sessionAffinity ClientIP pins a client address to the backend it was last
// given, per Service port, while the client opens a new flow within the
// timeout of its previous one (the timeout is measured from the last pick, as
// iptables' `recent --rcheck --seconds --reap` refreshes the entry on every
// new connection) and while that backend stays usable. A backend that leaves
// the ready set at Update loses its pins. The affinity state is bounded
// (Options.MaxAffinity, default 65,536 entries per Proxy): when it is full,
// expired entries go first (swept at most once a second), then the least
// recently used. Picks for an affinity Service take one mutex; the others
// never do.
//
// # NodePorts, load-balancer IPs and health checks
//
// NodePorts opens host sockets on the node's address (a loopback address
// such as 127.0.5.2 in the lab, so no host interface is needed): TCP and UDP
// on every NodePort, on the Service port of every Service whose load-balancer
// IPs include the node's address (as k3s's ServiceLB does), and kube-proxy's
// health-check HTTP server on the healthCheckNodePort of every Service with
// externalTrafficPolicy Local. A host socket cannot be DNAT'd, so these flows
// are terminated and spliced: each accepted TCP connection is given a backend
// by PickExternal and joined to a connection the Dialer opens through the
// node's data path, half-close carried both ways and a backend's reset
// carried back as a reset. A UDP client address gets a flow: a connected
// socket from the Dialer, replies written back from the listening socket,
// ended after an idle timeout.
//
// The source address the backend sees follows kube-proxy:
//
//   - externalTrafficPolicy Cluster: the node's own address in the pod
//     network (Dialer's invalid src), as kube-proxy masquerades such traffic
//     so that replies come back through the node that received it;
//   - externalTrafficPolicy Local: the client's address, when it is a
//     routable unicast address (not loopback, unspecified, link-local,
//     multicast or broadcast); otherwise the node's address, because a client
//     on the host's loopback cannot be represented inside a pod (the pod's
//     kernel drops a loopback source as martian).
//
// loadBalancerSourceRanges apply to traffic that arrived at a load-balancer
// IP (PickExternal answers Denied outside them); NodePort traffic is not
// filtered by them, as in kube-proxy.
//
// A Sync never drops an established TCP connection, even when its port goes
// away; UDP flows end with their port's socket (their replies leave through
// it). FlushUDP ends the UDP flows to backends that Update reported removed.
//
// Every goroutine of a NodePorts is owned by it: Close closes every listener
// and connection and waits for all of them. A Proxy starts no goroutines.
package proxy
