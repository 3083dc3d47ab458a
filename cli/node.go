package cli

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/podnet/podnet/cniplugin"
	"github.com/podnet/podnet/internal/realtime"
	"github.com/podnet/podnet/kubenode"
	"github.com/podnet/podnet/stack"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// newNodeCommand is `podnet node`: the node agent of a real Kubernetes cluster.
func newNodeCommand() *cobra.Command {
	var (
		kubeconfig, nodeName, nodeAddr, clusterCIDR, serviceCIDR, dnsIP, domain, stateDir, runDir, socket, nodeIf, metricsAddr string
		mtu, httpPort, httpsPort                                                                                               int
		flows                                                                                                                  bool
		maxNewFlows, rtPriority                                                                                                int
	)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run the node agent of a real Kubernetes cluster (its CNI plugin is podnet-cni)",
		Long: `Run podnet's node agent against a Kubernetes API server: the node's pod network, Services,
cluster DNS, NetworkPolicy and WireGuard overlay, for the pods that the kubelet's container
runtime hands over through podnet-cni. The Node's pod CIDR comes from kube-controller-manager
(--allocate-node-cidrs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			if rtPriority != 0 {
				// On a kernel with CONFIG_RT_GROUP_SCHED the agent's cgroups (its container's,
				// its pod's, the kubelet's) need a real-time budget first: Kubernetes gives none.
				budgets, err := realtime.Grant()
				for _, b := range budgets {
					log.Info("gave a cgroup a real-time budget",
						"cgroup", b.Dir, "runtime", b.Runtime, "period", b.Period)
				}
				if err != nil {
					return fmt.Errorf("podnet node: --realtime-priority %d: %w", rtPriority, err)
				}
				// Before the agent starts; the threads made later inherit it.
				if err := realtime.Enable(rtPriority); err != nil {
					return fmt.Errorf("podnet node: --realtime-priority %d: %w", rtPriority, err)
				}
			}
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			// At start the agent asks the API server about each of its permissions (about 30
			// requests) before anything else: with client-go's default limits (5 per second after
			// a burst of 10) that alone took 3.4 s, all of it time without an agent on a restart.
			cfg.QPS, cfg.Burst = 20, 50
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("podnet node: %w", err)
			}
			o := kubenode.Options{
				Client: client, NodeName: nodeName, ClusterDomain: domain, MTU: mtu,
				StateDir: stateDir, RunDir: runDir, Socket: socket, NodeInterface: nodeIf, MetricsAddr: metricsAddr, DisableFlows: !flows, MaxNewFlowsPerPod: maxNewFlows,
				LeaseNamespace: os.Getenv("POD_NAMESPACE"),
				Logger:         log,
			}
			if o.ClusterCIDR, err = netip.ParsePrefix(clusterCIDR); err != nil {
				return fmt.Errorf("podnet node: --cluster-cidr %q: %w", clusterCIDR, err)
			}
			if serviceCIDR != "" {
				if o.ServiceCIDR, err = netip.ParsePrefix(serviceCIDR); err != nil {
					return fmt.Errorf("podnet node: --service-cidr %q: %w", serviceCIDR, err)
				}
			}
			if nodeAddr != "" {
				if o.NodeAddress, err = netip.ParseAddr(nodeAddr); err != nil {
					return fmt.Errorf("podnet node: --node-address %q: %w", nodeAddr, err)
				}
			}
			if dnsIP != "" {
				if o.ClusterDNS, err = netip.ParseAddr(dnsIP); err != nil {
					return fmt.Errorf("podnet node: --cluster-dns %q: %w", dnsIP, err)
				}
			}
			for _, p := range []struct {
				flag string
				v    int
				to   *uint16
			}{{"--ingress-http-port", httpPort, &o.IngressHTTPPort}, {"--ingress-https-port", httpsPort, &o.IngressHTTPSPort}} {
				if p.v < 0 || p.v > 65535 {
					return fmt.Errorf("podnet node: %s %d: want a port, or 0 for none", p.flag, p.v)
				}
				*p.to = uint16(p.v)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return kubenode.Run(ctx, o)
		},
	}
	host, _ := os.Hostname()
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else the in-cluster config)")
	f.StringVar(&nodeName, "node-name", host, "this node's Node name")
	f.StringVar(&nodeAddr, "node-address", "", "the node's address for WireGuard (default: the Node's InternalIP)")
	f.StringVar(&clusterCIDR, "cluster-cidr", "10.244.0.0/16", "the pods' range (kube-controller-manager --cluster-cidr)")
	f.StringVar(&serviceCIDR, "service-cidr", "", "the Services' range (default: the cluster's ServiceCIDR \"kubernetes\", from kube-apiserver --service-cluster-ip-range)")
	f.StringVar(&dnsIP, "cluster-dns", "", "the DNS address the kubelets give pods (default: kube-system/kube-dns's ClusterIP, else the 10th address of --service-cidr)")
	f.StringVar(&domain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
	f.IntVar(&mtu, "mtu", 1420, "the pods' MTU")
	f.StringVar(&stateDir, "state-dir", "/var/lib/podnet", "where the node keeps its WireGuard key")
	f.StringVar(&runDir, "run-dir", "/run/podnet", "where the node keeps what its pods need while the agent restarts: their records and the connection-tracking table (a tmpfs)")
	f.StringVar(&socket, "cni-socket", cniplugin.DefaultSocket, "the unix socket podnet-cni reaches the agent on")
	f.IntVar(&httpPort, "ingress-http-port", 80, "where the node's Ingress controller serves HTTP on the node's address (0: not at all)")
	f.IntVar(&httpsPort, "ingress-https-port", 443, "where the node's Ingress controller serves HTTPS on the node's address (0: not at all)")
	f.StringVar(&metricsAddr, "metrics-addr", fmt.Sprintf(":%d", kubenode.DefaultMetricsPort), "where to serve Prometheus metrics (/metrics) and /healthz over HTTP: host:port, :port for the node's address (--node-address), or \"\" or 0 for nowhere")
	f.IntVar(&maxNewFlows, "max-new-flows-per-pod", 0, fmt.Sprintf("the new flows (TCP SYNs, first UDP datagrams) a pod may start a second; more are dropped and counted (podnet_stack_dropped_frames_total{reason=\"new_flow_limit\"}); 0: %d for each CPU the agent may use (GOMAXPROCS), %d here; negative: no bound", stack.NewFlowsPerPodPerCPU, stack.DefaultMaxNewFlowsPerPod()))
	f.IntVar(&rtPriority, "realtime-priority", 0, "run the agent under the kernel's real-time policy SCHED_RR at this priority (1 to 99; 1 is enough), so that a busy process on the node cannot delay its data path by a time slice (needs CAP_SYS_NICE; on kernels with CONFIG_RT_GROUP_SCHED the agent gives its cgroup and the parents without one a real-time budget, which needs the whole cgroup hierarchy mounted: deploy/podnet.yaml mounts the host's /sys/fs/cgroup); 0: the ordinary policy")
	f.BoolVar(&flows, "flows", true, "keep a log of the new flows the node sees (podnet flows, podnet check's reasons)")
	f.StringVar(&nodeIf, "node-interface", kubenode.DefaultNodeInterface, "the node's own interface to its pods and Services (a TAP made in this process's network namespace, removed at exit)")
	return cmd
}

// restConfig is the client configuration: the kubeconfig file given or in $KUBECONFIG, else the
// in-cluster one.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		kubeconfig = os.Getenv("KUBECONFIG")
	}
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("podnet node: kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("podnet node: no --kubeconfig, no $KUBECONFIG, and not in a cluster: %w", err)
	}
	return cfg, nil
}

// newCNIInstallCommand is `podnet cni-install`: what the DaemonSet's install-cni container runs.
func newCNIInstallCommand() *cobra.Command {
	var binDir, confDir, conf, plugin string
	cmd := &cobra.Command{
		Use:    "cni-install",
		Short:  "Install podnet-cni and its configuration on the node (the DaemonSet's init container)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if plugin == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				plugin = filepath.Join(filepath.Dir(exe), "podnet-cni")
			}
			return kubenode.InstallCNI(plugin, binDir, conf, confDir)
		},
	}
	f := cmd.Flags()
	f.StringVar(&binDir, "bin-dir", "/opt/cni/bin", "where CNI plugins go")
	f.StringVar(&confDir, "conf-dir", "/etc/cni/net.d", "where CNI configurations go")
	f.StringVar(&conf, "conf", "/config/10-podnet.conflist", "the configuration list to install")
	f.StringVar(&plugin, "plugin", "", "the podnet-cni binary (default: beside this one)")
	return cmd
}
