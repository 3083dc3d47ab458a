// Package kubenode runs the node agent for a real Kubernetes cluster (`podnet node`): the agent on
// the cluster's informers (package kubesource), its WireGuard key and endpoint published as
// annotations of its Node, the Node's NetworkUnavailable condition set False once its network is
// up, and the attach protocol served on a unix socket for podnet-cni.
//
// It programs nothing before the informers have synced and the controller-manager has given the
// Node its pod CIDR. It must never run containers: the kubelet and containerd do.
package kubenode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/internal/scavenge"
	"github.com/podnet/podnet/kubesource"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Options configures a node.
type Options struct {
	// Client reaches the API server. Required.
	Client kubernetes.Interface
	// NodeName is this node's Node. Required.
	NodeName string
	// NodeAddress is where the node's WireGuard port listens. Invalid means the Node's first
	// InternalIP.
	NodeAddress netip.Addr
	// ClusterCIDR is the pods' range (the controller-manager's --cluster-cidr). Required.
	ClusterCIDR netip.Prefix
	// ServiceCIDR is the Services' range. Invalid means the IPv4 range of the cluster's
	// networking.k8s.io/v1 ServiceCIDR "kubernetes" (the API server's
	// --service-cluster-ip-range).
	ServiceCIDR netip.Prefix
	// ClusterDNS is where pods ask DNS (the kubelet's clusterDNS); ClusterDomain its domain.
	// Invalid means the ClusterIP of kube-system/kube-dns when that Service exists, else the
	// tenth address of ServiceCIDR; empty means cluster.local.
	ClusterDNS    netip.Addr
	ClusterDomain string
	// MTU is the pods' MTU. Zero means 1420 (room for WireGuard on a 1500-byte underlay).
	MTU int
	// StateDir holds the node's WireGuard key. Required.
	StateDir string
	// RunDir holds the records of the attached pods and the connection-tracking table, which an
	// agent started after this one takes back (agent.Options.RunDir). Empty means StateDir.
	RunDir string
	// Socket is the unix socket podnet-cni reaches the agent on. Required.
	Socket string
	// LeaseNamespace holds the Lease (LeaseName) that chooses the one agent writing the status
	// of LoadBalancer Services and podnet Ingresses. Empty means podnet-system.
	LeaseNamespace string
	// IngressHTTPPort and IngressHTTPSPort are where the node's Ingress controller listens, on
	// the node's address; both zero means none.
	IngressHTTPPort, IngressHTTPSPort uint16
	// NodeInterface is the node's own interface to its pods and Services, made in the agent's
	// network namespace (the node's). Empty means DefaultNodeInterface.
	NodeInterface string
	// MetricsAddr is where the node serves its Prometheus metrics (GET /metrics) and GET /healthz
	// over HTTP, as host:port; a host left empty (":9962") means the node's address. "" or "0"
	// means no metrics server. An address that cannot be opened is logged and left closed; the
	// node runs on.
	MetricsAddr string
	// DisableFlows turns the node's flow log off (agent.Options.DisableFlows).
	DisableFlows bool
	// MaxNewFlowsPerPod bounds the new flows a pod may start a second (agent.Options).
	MaxNewFlowsPerPod int
	// Logger receives the node's logs. Nil means discard.
	Logger *slog.Logger
}

// DefaultNodeInterface is the name of the node's own interface to its pods.
const DefaultNodeInterface = "podnet0"

// Run runs the node until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Client == nil || o.NodeName == "" || o.StateDir == "" || o.Socket == "" || !o.ClusterCIDR.IsValid() {
		return errors.New("podnet node: Client, NodeName, ClusterCIDR, StateDir and Socket are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = "cluster.local"
	}
	if o.MTU == 0 {
		o.MTU = 1420
	}
	if o.NodeInterface == "" {
		o.NodeInterface = DefaultNodeInterface
	}
	if o.LeaseNamespace == "" {
		o.LeaseNamespace = "podnet-system"
	}
	if _, _, err := metricsListenAddr(o.MetricsAddr, netip.IPv4Unspecified()); err != nil {
		return fmt.Errorf("podnet node %s: %w", o.NodeName, err)
	}
	log := o.Logger
	// Memory a flood made the agent take goes back to the system once it is over.
	scavengeCtx, stopScavenge := context.WithCancel(ctx)
	scavenged := make(chan struct{})
	go func() {
		defer close(scavenged)
		scavenge.Run(scavengeCtx, scavenge.DefaultInterval, scavenge.DefaultThreshold)
	}()
	defer func() { stopScavenge(); <-scavenged }()
	if err := checkPermissions(ctx, o.Client); err != nil {
		return fmt.Errorf("podnet node %s: %w", o.NodeName, err)
	}
	if !o.ServiceCIDR.IsValid() {
		var err error
		if o.ServiceCIDR, err = serviceCIDR(ctx, o.Client); err != nil {
			return fmt.Errorf("podnet node %s: %w", o.NodeName, err)
		}
	}
	src := kubesource.New(o.Client, 0)
	srcCtx, stopSource := context.WithCancel(ctx)
	defer stopSource()
	src.Start(srcCtx)
	log.Info("waiting for the informers to sync")
	if err := src.WaitForSync(ctx); err != nil {
		return fmt.Errorf("podnet node %s: %w", o.NodeName, err)
	}
	node, err := waitForPodCIDR(ctx, src, o.NodeName, log)
	if err != nil {
		return err
	}
	podCIDR, err := netip.ParsePrefix(node.Spec.PodCIDR)
	if err != nil {
		return fmt.Errorf("podnet node %s: spec.podCIDR %q: %w", o.NodeName, node.Spec.PodCIDR, err)
	}
	if !o.NodeAddress.IsValid() {
		if o.NodeAddress, err = internalIP(node); err != nil {
			return err
		}
	}
	if !o.ClusterDNS.IsValid() {
		o.ClusterDNS = clusterDNS(src, o.ServiceCIDR)
	}
	reg := newRegistry()
	a, err := agent.New(agent.Options{
		NodeName:    o.NodeName,
		NodeAddress: o.NodeAddress,
		PodCIDR:     podCIDR,
		Network: cluster.Network{
			ClusterCIDR: o.ClusterCIDR,
			ServiceCIDR: o.ServiceCIDR,
			DNSIP:       o.ClusterDNS,
			Domain:      o.ClusterDomain,
			MTU:         o.MTU,
		},
		Source:            src,
		Nodes:             nodeWriter{o.Client},
		StateDir:          o.StateDir,
		RunDir:            o.RunDir,
		Logger:            log,
		Registerer:        reg,
		NodeInterface:     o.NodeInterface,
		IngressHTTPPort:   o.IngressHTTPPort,
		IngressHTTPSPort:  o.IngressHTTPSPort,
		DisableFlows:      o.DisableFlows,
		MaxNewFlowsPerPod: o.MaxNewFlowsPerPod,
	})
	if err != nil {
		return fmt.Errorf("podnet node %s: %w", o.NodeName, err)
	}
	a.Start()
	defer a.Close()
	metricsAddr := "none"
	if addr, ok, _ := metricsListenAddr(o.MetricsAddr, o.NodeAddress); ok {
		ms, err := serveMetrics(addr, metricsHandler(reg, a.Ready), log)
		if err != nil {
			log.Error("no metrics server on this node", "err", err)
		} else {
			defer ms.Close()
			metricsAddr = ms.Addr().String()
		}
	}

	runDir := o.RunDir
	if runDir == "" {
		runDir = o.StateDir
	}
	if stop, err := serveInspect(runDir, a, log); err != nil {
		log.Error("no flows or captures on this node", "err", err)
	} else {
		defer stop()
	}

	if err := os.MkdirAll(filepath.Dir(o.Socket), 0o755); err != nil {
		return fmt.Errorf("podnet node %s: %w", o.NodeName, err)
	}
	os.Remove(o.Socket) // a socket left by an agent that died
	ln, err := net.Listen("unix", o.Socket)
	if err != nil {
		return fmt.Errorf("podnet node %s: attach socket: %w", o.NodeName, err)
	}
	srv := &http.Server{Handler: attach.Handler(a), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		<-served
		os.Remove(o.Socket)
	}()

	if err := setNetworkAvailable(ctx, o.Client, o.NodeName); err != nil {
		log.Error("set the Node's NetworkUnavailable condition", "err", err)
	}
	statusCtx, stopStatus := context.WithCancel(ctx)
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		runStatusWriter(statusCtx, o.Client, src, o.LeaseNamespace, o.NodeName, log.With("component", "status"))
	}()
	defer func() {
		stopStatus()
		<-statusDone
	}()
	log.Info("node network ready", "node", o.NodeName, "address", o.NodeAddress, "podCIDR", podCIDR,
		"nodeInterface", o.NodeInterface, "nodeInterfaceAddress", a.NodeLinkAddress(),
		"serviceCIDR", o.ServiceCIDR, "clusterDNS", o.ClusterDNS, "socket", o.Socket, "metrics", metricsAddr)
	select {
	case <-ctx.Done():
		return nil
	case err := <-served:
		return fmt.Errorf("podnet node %s: attach socket: %w", o.NodeName, err)
	}
}

// serviceCIDR is the IPv4 range of the ServiceCIDR "kubernetes", which the API server makes from
// its --service-cluster-ip-range.
func serviceCIDR(ctx context.Context, client kubernetes.Interface) (netip.Prefix, error) {
	list, err := client.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list ServiceCIDRs (or give --service-cidr): %w", err)
	}
	for _, sc := range list.Items {
		if sc.Name != "kubernetes" {
			continue
		}
		for _, c := range sc.Spec.CIDRs {
			if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
				return p, nil
			}
		}
	}
	return netip.Prefix{}, errors.New("no IPv4 range in the ServiceCIDR \"kubernetes\": give --service-cidr")
}

// waitForPodCIDR waits until the Node exists with a pod CIDR.
func waitForPodCIDR(ctx context.Context, src *kubesource.Source, name string, log *slog.Logger) (*corev1.Node, error) {
	changed, cancel := src.Subscribe()
	defer cancel()
	logged := false
	for {
		for _, n := range src.Nodes() {
			if n.Name == name && n.Spec.PodCIDR != "" {
				return n, nil
			}
		}
		if !logged {
			log.Info("waiting for the Node's spec.podCIDR (kube-controller-manager --allocate-node-cidrs)", "node", name)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("podnet node %s: no Node with a spec.podCIDR (is kube-controller-manager running with --allocate-node-cidrs?): %w", name, ctx.Err())
		case <-changed:
		}
	}
}

func internalIP(n *corev1.Node) (netip.Addr, error) {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("podnet node %s: the Node has no InternalIP in status.addresses: give --node-address", n.Name)
}

// clusterDNS is kube-system/kube-dns's ClusterIP, else the tenth address of the service range (the
// kubelet default of most installers).
func clusterDNS(src *kubesource.Source, services netip.Prefix) netip.Addr {
	for _, s := range src.Services() {
		if s.Namespace == "kube-system" && s.Name == "kube-dns" {
			if ip, err := netip.ParseAddr(s.Spec.ClusterIP); err == nil {
				return ip
			}
		}
	}
	a := services.Masked().Addr()
	for range 10 {
		a = a.Next()
	}
	return a
}

// nodeWriter publishes the agent's annotations on its Node.
type nodeWriter struct{ client kubernetes.Interface }

// UpdateNodeAnnotations implements agent.NodeWriter with a merge patch: other annotations stay.
func (w nodeWriter) UpdateNodeAnnotations(node string, ann map[string]string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := w.client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("annotate Node %s: %w", node, err)
	}
	return nil
}

// setNetworkAvailable sets the Node's NetworkUnavailable condition to False, as network plugins
// do once a node's routes are in place.
func setNetworkAvailable(ctx context.Context, client kubernetes.Interface, node string) error {
	now := metav1.Now()
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
		Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse,
		Reason: "PodnetIsUp", Message: "podnet's node agent is running",
		LastTransitionTime: now, LastHeartbeatTime: now,
	}}}})
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Nodes().PatchStatus(ctx, node, patch)
	return err
}
