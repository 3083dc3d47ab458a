package cluster

// Annotations podnet sets on Node objects. In the lab the node agents publish them through the
// lab's store; in Kubernetes mode, on the API server's Node objects.
const (
	// AnnotationWireGuardKey is the node's WireGuard public key (base64, as wg(8) prints it).
	AnnotationWireGuardKey = "podnet.dev/wireguard-public-key"
	// AnnotationWireGuardEndpoint is the node's WireGuard UDP endpoint, address:port.
	AnnotationWireGuardEndpoint = "podnet.dev/wireguard-endpoint"
)
