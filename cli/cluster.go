package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/podnet/podnet/deploy"
	"github.com/podnet/podnet/kubecluster"
	"github.com/spf13/cobra"
)

// newClusterCommand is `podnet cluster`: a real multi-node Kubernetes cluster on this machine
// with podnet as its network.
func newClusterCommand(g *globals) *cobra.Command {
	var kubeBin, root string
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Run a real multi-node Kubernetes cluster on this machine, with podnet as its network",
		Long: `A real Kubernetes cluster on one Linux machine: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and on each node a kubelet with its own containerd and runc, each node in network
and mount namespaces of its own. podnet is its only network, installed from deploy/podnet.yaml:
no kube-proxy, no CoreDNS, no iptables, no Docker or kind. The components come from make kube-bin.`,
	}
	cmd.PersistentFlags().StringVar(&kubeBin, "kube-bin", defaultKubeBin(), "the Kubernetes components (make kube-bin)")
	cmd.PersistentFlags().StringVar(&root, "state-root", kubecluster.DefaultRoot, "where clusters keep their state")
	var nodes int
	var cni string
	up := &cobra.Command{
		Use:   "up",
		Short: "Bring a cluster up and wait until every node is Ready",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			st, err := kubecluster.Up(ctx, kubecluster.Options{
				Name: g.name, Nodes: nodes, KubeBin: kubeBin, Manifest: deploy.Manifest, Root: root, CNI: cni,
				Log: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
			})
			if err != nil {
				if st != nil {
					err = fmt.Errorf("%w\n(what was made is recorded: `podnet cluster down --name %s` removes it; logs in %s)", err, g.name, filepath.Join(st.Dir, "logs"))
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster %s is up: %d nodes Ready\nexport KUBECONFIG=%s\n", st.Name, len(st.Nodes), st.Kubeconfig())
			return nil
		},
	}
	up.Flags().IntVar(&nodes, "nodes", 2, "the number of nodes")
	up.Flags().StringVar(&cni, "cni", "podnet", "the network: podnet, or bridge (the reference CNI plugins, pods on one node only: a benchmark baseline)")
	down := &cobra.Command{
		Use:   "down",
		Short: "Remove every process, namespace, mount and file of a cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := kubecluster.Load(root, g.name)
			if err != nil {
				return err
			}
			return kubecluster.Down(st)
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show a cluster's components and nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := kubecluster.Load(root, g.name)
			if err != nil {
				return err
			}
			return kubecluster.Status(cmd.OutOrStdout(), st, kubeBin)
		},
	}
	load := &cobra.Command{
		Use:   "load IMAGE.tar",
		Short: "Load an image tarball (docker save or OCI layout) into every node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := kubecluster.Load(root, g.name)
			if err != nil {
				return err
			}
			abs, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			return kubecluster.LoadImage(st, kubeBin, abs)
		},
	}
	var netns, listen, to string
	proxy := &cobra.Command{
		Use:    "proxy",
		Short:  "Forward connections from the host into a cluster's namespace (started by up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return kubecluster.Proxy(ctx, netns, listen, to)
		},
	}
	proxy.Flags().StringVar(&netns, "netns", "", "the network namespace (ip netns name) to dial in")
	proxy.Flags().StringVar(&listen, "listen", "", "where to listen on the host")
	proxy.Flags().StringVar(&to, "to", "", "the address to forward to, in --netns")
	cmd.AddCommand(up, down, status, load, proxy)
	return cmd
}

// defaultKubeBin is bin/kube beside this executable's directory (make kube-bin), else bin/kube.
func defaultKubeBin() string {
	if exe, err := os.Executable(); err == nil {
		if d := filepath.Join(filepath.Dir(exe), "kube"); dirExists(d) {
			return d
		}
	}
	return "bin/kube"
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// newPauseCommand is `podnet pause`: the pod sandbox's process in podnet's clusters (their
// pause image), which waits for SIGTERM or SIGINT and reaps the children it inherits.
func newPauseCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "pause",
		Short:  "Wait until terminated, reaping orphans (a pod sandbox's process)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
			for s := range sigs {
				if s != syscall.SIGCHLD {
					return nil
				}
				for {
					var ws syscall.WaitStatus
					if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
						break
					}
				}
			}
			return nil
		},
	}
}
