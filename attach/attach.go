// Package attach is the protocol between a pod's runtime and the node agent: "here is a pod's
// network namespace, give it its network" and "take it back". The runtime owns the namespace and
// the containers; the agent owns everything of the network: the pod's address, its interface in
// the namespace, the data path behind it, and the release of all of it.
//
// There are two runtimes and one path. The lab's pod runtime (lab/podruntime) calls the agent's
// Attacher in-process; in Kubernetes mode podnet-cni, called by containerd, will carry the same
// Request and Result to the agent over a unix socket. Either way a pod goes from "here is a
// netns" to "traffic flows" through the same Attach.
//
// This package holds only the protocol's types and its boundary interface; it must never import
// the agent, a network stack or Kubernetes' client libraries.
package attach

import (
	"context"
	"net/netip"
)

// Request names one pod's network namespace.
type Request struct {
	// ID names the attachment: the pod sandbox's ID (CNI_CONTAINERID in Kubernetes mode, the
	// pod's UID in the lab). Required.
	ID string `json:"id"`
	// Namespace and Name name the pod (K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS), for logs
	// and for the DNS search path.
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// NetNS is the path of the pod's network namespace (CNI_NETNS): /proc/PID/ns/net, a bind
	// mount, or /proc/self/fd/N of a descriptor the agent's own process holds. Required.
	NetNS string `json:"netns"`
	// IfName is the interface to make there (CNI_IFNAME). Empty means eth0.
	IfName string `json:"ifName,omitempty"`
	// IP, if valid, is the address the pod had before (a restarted lab keeps its pods'
	// addresses). It is used if it is in the node's pod range and free; otherwise the pod gets
	// another.
	IP netip.Addr `json:"ip,omitzero"`
	// PortMappings are the pod's hostPorts (CNI's portMappings capability, which the kubelet
	// fills from the containers' ports): the agent serves each on the node's address.
	PortMappings []PortMapping `json:"portMappings,omitempty"`
}

// PortMapping is one hostPort: connections and datagrams to the node's address at HostPort go to
// the pod's ContainerPort, with the client's address kept.
type PortMapping struct {
	HostPort      uint16 `json:"hostPort"`
	ContainerPort uint16 `json:"containerPort"`
	// Protocol is "tcp" or "udp".
	Protocol string `json:"protocol"`
	// HostIP is the node address to serve on: empty, 0.0.0.0 or the node's own address.
	HostIP string `json:"hostIP,omitempty"`
}

// Result is the network Attach gave a pod (what a CNI result reports).
type Result struct {
	// Interface is the pod's interface and MAC its hardware address.
	Interface string `json:"interface"`
	MAC       string `json:"mac"`
	// IP is the pod's address, Gateway the node's gateway: the pod routes everything there.
	IP      netip.Addr `json:"ip"`
	Gateway netip.Addr `json:"gateway"`
	// MTU is the interface's MTU.
	MTU int `json:"mtu"`
	// DNS is the cluster DNS for a pod of the request's namespace, as the kubelet writes it into
	// resolv.conf for dnsPolicy ClusterFirst.
	DNS DNS `json:"dns"`
}

// DNS is a resolver configuration.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Attacher is the node agent, as runtimes see it. Its methods map onto CNI's verbs: ADD, DEL,
// CHECK, GC and STATUS.
type Attacher interface {
	// Attach gives the pod in req.NetNS its address and interface and connects it to the node's
	// data path. Attaching an ID that is attached already returns that attachment's Result if
	// the request names the same namespace, and an error otherwise. On error nothing of the
	// attempt is left: no address, interface or data-path state.
	Attach(ctx context.Context, req Request) (Result, error)
	// Detach removes what Attach made for the attachment id and releases its address. An ID
	// that is not attached is no error: Detach is idempotent, as CNI DEL is.
	Detach(ctx context.Context, id string) error
	// Check reports whether the attachment id is whole: attached to the namespace netns, its
	// interface there, up, with the pod's address. The error says what is missing.
	Check(ctx context.Context, id, netns string) error
	// GC detaches every attachment whose ID is not in keep (CNI's cni.dev/valid-attachments).
	GC(ctx context.Context, keep []string) error
	// Ready returns nil when the agent can attach pods, and otherwise why not.
	Ready(ctx context.Context) error
}
