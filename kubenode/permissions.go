package kubenode

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Permission is one thing a node's agent does on the API server.
type Permission struct {
	Verb, Group, Resource, Subresource string
	// Why says what the agent needs it for, in the error when it is missing.
	Why string
}

func (p Permission) String() string {
	r := p.Resource
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	if p.Group != "" {
		r += "." + p.Group
	}
	return p.Verb + " " + r
}

// Permissions are everything `podnet node` does on the API server; deploy/podnet.yaml's
// ClusterRole grants exactly these (a test holds them together).
func Permissions() []Permission {
	var ps []Permission
	watch := func(group, resource, why string) {
		for _, v := range []string{"list", "watch"} {
			ps = append(ps, Permission{Verb: v, Group: group, Resource: resource, Why: why})
		}
	}
	watch("", "nodes", "WireGuard peers and pod CIDRs")
	watch("", "namespaces", "NetworkPolicy namespace selectors")
	watch("", "pods", "pod addresses, labels and named ports")
	watch("", "services", "Services and cluster DNS")
	watch("discovery.k8s.io", "endpointslices", "Service endpoints")
	watch("networking.k8s.io", "networkpolicies", "NetworkPolicy")
	watch("networking.k8s.io", "ingresses", "Ingress")
	watch("networking.k8s.io", "ingressclasses", "which Ingresses are podnet's")
	watch("", "secrets", "Ingress TLS certificates (type kubernetes.io/tls only)")
	ps = append(ps,
		Permission{Verb: "list", Group: "networking.k8s.io", Resource: "servicecidrs", Why: "the Services' range"},
		Permission{Verb: "patch", Resource: "nodes", Why: "publish the node's WireGuard key and endpoint"},
		Permission{Verb: "patch", Resource: "nodes", Subresource: "status", Why: "set the Node's NetworkUnavailable condition"},
		Permission{Verb: "patch", Resource: "services", Subresource: "status", Why: "give LoadBalancer Services the nodes' addresses"},
		Permission{Verb: "patch", Group: "networking.k8s.io", Resource: "ingresses", Subresource: "status", Why: "give podnet's Ingresses the nodes' addresses"},
	)
	for _, v := range []string{"get", "create", "update"} {
		ps = append(ps, Permission{Verb: v, Group: "coordination.k8s.io", Resource: "leases", Why: "choose the one node that writes the cluster-wide status"})
	}
	return ps
}

// checkPermissions asks the API server (SelfSubjectAccessReview) whether this client may do
// everything in Permissions, and names every one it may not.
func checkPermissions(ctx context.Context, client kubernetes.Interface) error {
	var missing []string
	for _, p := range Permissions() {
		review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: p.Verb, Group: p.Group, Resource: p.Resource, Subresource: p.Subresource,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("check permissions (%s): %w", p, err)
		}
		if !review.Status.Allowed {
			missing = append(missing, fmt.Sprintf("%s (%s)", p, p.Why))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the API server refuses this node agent %d permissions that podnet needs (deploy/podnet.yaml's ClusterRole grants them): %s",
			len(missing), strings.Join(missing, "; "))
	}
	return nil
}
