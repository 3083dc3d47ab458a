package kubenode

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/podnet/podnet/cluster"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseName is the coordination.k8s.io Lease that chooses the one agent making the cluster-wide
// writes: the status of LoadBalancer Services and of podnet's Ingresses.
const LeaseName = "podnet-status"

// statusSource is what the status writer reads: the informers' view.
type statusSource interface {
	Nodes() []*corev1.Node
	Services() []*corev1.Service
	Ingresses() []*networkingv1.Ingress // podnet's only
	Subscribe() (<-chan struct{}, func())
}

// serviceAddresses are the addresses every podnet node serves LoadBalancer ports and Ingress on:
// the address of each node's WireGuard endpoint (its --node-address), in the order of the Nodes'
// names. A node without podnet running has none.
func serviceAddresses(nodes []*corev1.Node) []string {
	var out []string
	for _, n := range nodes {
		ep, err := netip.ParseAddrPort(n.Annotations[cluster.AnnotationWireGuardEndpoint])
		if err != nil {
			continue
		}
		out = append(out, ep.Addr().String())
	}
	return out
}

// wantServiceStatus is the status.loadBalancer.ingress podnet gives svc, and whether podnet owns
// it: a LoadBalancer Service of no other loadBalancerClass gets every node's address, as k3s's
// ServiceLB gives it, and podnet serves its ports there.
func wantServiceStatus(svc *corev1.Service, addrs []string) ([]corev1.LoadBalancerIngress, bool) {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.LoadBalancerClass != nil {
		return nil, false
	}
	vip := corev1.LoadBalancerIPModeVIP
	var out []corev1.LoadBalancerIngress
	for _, a := range addrs {
		out = append(out, corev1.LoadBalancerIngress{IP: a, IPMode: &vip})
	}
	return out, true
}

// wantIngressStatus is the status.loadBalancer.ingress of an Ingress podnet serves.
func wantIngressStatus(addrs []string) []networkingv1.IngressLoadBalancerIngress {
	var out []networkingv1.IngressLoadBalancerIngress
	for _, a := range addrs {
		out = append(out, networkingv1.IngressLoadBalancerIngress{IP: a})
	}
	return out
}

// syncStatus writes the status of every LoadBalancer Service and podnet Ingress whose status is
// not what podnet serves; it returns the errors joined, each naming its object.
func syncStatus(ctx context.Context, client kubernetes.Interface, src statusSource) error {
	addrs := serviceAddresses(src.Nodes())
	var errs []error
	for _, svc := range src.Services() {
		want, ours := wantServiceStatus(svc, addrs)
		if !ours || equality.Semantic.DeepEqual(svc.Status.LoadBalancer.Ingress, want) {
			continue
		}
		if err := patchStatus(ctx, func(p []byte) error {
			_, err := client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, p, metav1.PatchOptions{}, "status")
			return err
		}, want); err != nil {
			errs = append(errs, fmt.Errorf("Service %s/%s status.loadBalancer: %w", svc.Namespace, svc.Name, err))
		}
	}
	want := wantIngressStatus(addrs)
	for _, ing := range src.Ingresses() {
		if equality.Semantic.DeepEqual(ing.Status.LoadBalancer.Ingress, want) {
			continue
		}
		if err := patchStatus(ctx, func(p []byte) error {
			_, err := client.NetworkingV1().Ingresses(ing.Namespace).Patch(ctx, ing.Name, types.MergePatchType, p, metav1.PatchOptions{}, "status")
			return err
		}, want); err != nil {
			errs = append(errs, fmt.Errorf("Ingress %s/%s status.loadBalancer: %w", ing.Namespace, ing.Name, err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d status writes failed: %v", len(errs), errs)
}

// patchStatus sends a merge patch that sets status.loadBalancer.ingress to ingress (a JSON null
// for none, which clears it).
func patchStatus[T any](ctx context.Context, patch func([]byte) error, ingress []T) error {
	var v any = ingress
	if len(ingress) == 0 {
		v = nil
	}
	p, err := json.Marshal(map[string]any{"status": map[string]any{"loadBalancer": map[string]any{"ingress": v}}})
	if err != nil {
		return err
	}
	return patch(p)
}

// runStatusWriter takes part in the election of the Lease namespace/LeaseName as identity, and
// while it leads keeps the cluster-wide status in step with the Source, until ctx ends; then it
// gives the Lease up at once.
func runStatusWriter(ctx context.Context, client kubernetes.Interface, src statusSource, namespace, identity string, log *slog.Logger) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: LeaseName},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			ReleaseOnCancel: true,
			Name:            LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					log.Info("this node writes the cluster-wide status (Lease " + namespace + "/" + LeaseName + ")")
					followStatus(ctx, client, src, log)
				},
				OnStoppedLeading: func() { log.Info("this node no longer writes the cluster-wide status") },
			},
		})
	}
}

// followStatus writes the status after every change of the Source until ctx ends; a failed write
// is tried again 5 s later.
func followStatus(ctx context.Context, client kubernetes.Interface, src statusSource, log *slog.Logger) {
	changed, cancel := src.Subscribe()
	defer cancel()
	retry := time.NewTimer(0)
	defer retry.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-retry.C:
		}
		err := syncStatus(ctx, client, src)
		msg := ""
		if err != nil {
			msg = err.Error()
			retry.Reset(5 * time.Second)
		}
		if msg != lastErr && ctx.Err() == nil {
			lastErr = msg
			if err != nil {
				log.Warn("cluster-wide status", "err", err)
			}
		}
	}
}
