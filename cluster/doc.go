// Package cluster is podnet's object model: the kinds of objects podnet
// knows, the lab file that describes a local lab, and the rules those
// objects must follow.
//
// A lab file is a multi-document YAML (or JSON) stream: at most one Lab
// document, which describes the lab's network and its nodes, and standard
// Kubernetes manifests (Namespaces, Pods, Deployments, Services,
// EndpointSlices, NetworkPolicies, Ingresses, IngressClasses, Secrets).
// [Decode] reads it the
// way kubectl does, with sigs.k8s.io/yaml, so YAML 1.1 rules hold: an unquoted
// y, yes, on or true is the boolean true and n, no, off or false is false.
// Decode then checks it strictly, which kubectl leaves to the API server:
// unknown kinds, unknown and duplicate fields, values of the wrong type,
// invalid names and values, and objects defined twice are all errors. It
// reports every problem of the stream at once as a [*DecodeError], each
// naming the document, the object and the field at fault, so that a user can
// fix a file in one pass.
//
// Decode also fills in defaults (namespace "default", restartPolicy Always,
// one replica, a Service's defaults as the API server sets them, a
// NetworkPolicy's policyTypes and port protocols, a Secret's type, the Lab's
// network defaults), so that what the rest of podnet sees is complete. [SetDefaults] and [Validate] do the same for an object
// that did not come from a file; [ValidateLabChange] says which changes a
// running lab accepts.
//
// Validation covers what podnet needs to hold and what it does not support:
// a lab container is a command run from the host's filesystem, so `command`
// is required and the image is ignored; hostNetwork is rejected. Services
// are validated as the API server validates them, except that podnet
// rejects what its data path does not carry (SCTP, IPv6 and dual-stack,
// externalIPs, loadBalancerIP and loadBalancerClass) and a selector on an
// ExternalName Service. Whether a Service's clusterIP and NodePorts are free
// is the lab's to check when it allocates them. Ingresses, IngressClasses and
// Secrets are validated as the API server validates them, except that podnet
// rejects resource backends, which its controller cannot serve; a TLS
// Secret's certificate is not parsed (the Ingress controller reports a bad
// one). [ServedByPodnet] says which Ingresses are of podnet's class.
//
// Decode decodes the documents of a large stream in parallel, one goroutine
// per CPU, and waits for them before it returns.
//
// The package is pure: it does no I/O beyond the reader given to Decode,
// keeps no global state, and must never import a network stack (gVisor,
// wireguard-go) or reach the host's network configuration. Pod address
// allocation lives in the ipam subpackage.
package cluster
