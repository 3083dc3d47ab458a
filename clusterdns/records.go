package clusterdns

import "net/netip"

// Records is the cluster's DNS data: what the node agent converts from the
// Services, EndpointSlices, Pods and Namespaces it watches. Update keeps
// references to its slices: the caller must not modify a Records (nor any
// slice reachable from it) after handing it over; build a new one for the
// next Update.
type Records struct {
	Services []Service
	Pods     []Pod
	// Namespaces lists namespaces that exist. It is optional: a namespace
	// that holds a Service or a Pod exists anyway. An existing namespace's
	// <ns>.svc.<domain> and <ns>.pod.<domain> answer NODATA, a missing one's
	// NXDOMAIN, as CoreDNS does.
	Namespaces []string
}

// Service is what the DNS needs of a Kubernetes Service.
type Service struct {
	Namespace, Name string
	// ClusterIPs are spec.clusterIPs: empty for headless and ExternalName
	// Services. A Service that is neither headless nor ExternalName and has
	// no ClusterIP yet has a name but no addresses (NODATA).
	ClusterIPs []netip.Addr
	// Headless is clusterIP: None. Its name answers the addresses of its
	// Endpoints instead of a virtual IP.
	Headless bool
	// ExternalName is the CNAME target of a Service of type ExternalName;
	// "" for every other type.
	ExternalName string
	// Ports are the Service's ports: named ones get SRV records.
	Ports []Port
	// Endpoints are used for headless Services only (ignored otherwise):
	// ready and not-ready ones; only the ready ones are answered unless
	// PublishNotReady is set.
	Endpoints []Endpoint
	// PublishNotReady is spec.publishNotReadyAddresses.
	PublishNotReady bool
}

// Port is a port of a Service or of an endpoint.
type Port struct {
	Name     string // "" for an unnamed port (no SRV name of its own)
	Protocol string // "TCP", "UDP" or "SCTP" (any case); "" means TCP
	Port     uint16
}

// Endpoint is one address behind a headless Service.
type Endpoint struct {
	Addr netip.Addr
	// Hostname is the endpoint's hostname (the pod's spec.hostname when its
	// spec.subdomain names the Service), "" if none: the endpoint is then
	// named by its dashed address (10-244-1-5), as CoreDNS names it.
	Hostname string
	Ready    bool
	// Ports are the endpoint's resolved ports, named as the Service's
	// ports are: the port numbers of its SRV records. If nil, the Service's
	// Ports are used.
	Ports []Port
	// PodNamespace and PodName name the pod behind the endpoint, if any.
	PodNamespace, PodName string
}

// Pod is what the DNS needs of a pod on the pod network.
type Pod struct {
	Namespace, Name string
	IP              netip.Addr
	// Hostname and Subdomain are spec.hostname and spec.subdomain. A pod that
	// sets both is named <hostname>.<subdomain>.<ns>.svc.<domain> while a
	// headless Service <subdomain> exists in its namespace.
	Hostname, Subdomain string
}
