package policy

import (
	"net/netip"
	"strconv"
)

// Protocol is an IP protocol number.
type Protocol uint8

// The protocols a NetworkPolicy port can name.
const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

// String returns the protocol's name as NetworkPolicy spells it ("TCP"),
// or "proto N" for any other number.
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	}
	return "proto " + strconv.Itoa(int(p))
}

// Direction is the side of a flow a verdict is about.
type Direction uint8

const (
	// Ingress judges a flow at its destination pod.
	Ingress Direction = iota
	// Egress judges a flow at its source pod.
	Egress
)

// String returns "ingress" or "egress".
func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return "direction " + strconv.Itoa(int(d))
}

// Pod is what policy needs of a pod. Pods whose IP is not valid are
// ignored; an empty Namespace means "default". The node agent must leave
// out hostNetwork pods: their address is the node's, and NetworkPolicy does
// not apply to them.
type Pod struct {
	Namespace, Name string
	IP              netip.Addr
	Labels          map[string]string
	// Ports are the containers' ports, which named ports resolve against.
	Ports []NamedPort
}

// NamedPort is one container port. A zero Protocol means TCP, as in a
// container spec.
type NamedPort struct {
	Name     string
	Protocol Protocol
	Port     uint16
}

// Namespace is what policy needs of a namespace. The label
// kubernetes.io/metadata.name=<Name>, which the API server sets on every
// namespace, is implied: Compile adds it when it is missing. A namespace
// that pods or policies name but that is not given has only that label.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Flow is a new connection: from Src to Dst:Port (the destination port)
// over Proto. For protocols without ports (ICMP), Port is 0 and only rules
// without ports can match.
type Flow struct {
	Src, Dst netip.Addr
	Proto    Protocol
	Port     uint16
}

// String renders f as "10.0.0.1 -> 10.0.0.2:80/TCP".
func (f Flow) String() string {
	return f.Src.String() + " -> " + netip.AddrPortFrom(f.Dst, f.Port).String() + "/" + f.Proto.String()
}

// PolicySet names a set of policies of one Table: Table.Policies returns
// their names. 0 is the empty set. A PolicySet is valid only with the Table
// that returned it.
type PolicySet uint32
