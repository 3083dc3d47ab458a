package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/lab"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func newLabCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Start, stop and inspect a local lab",
	}
	cmd.AddCommand(newLabUpCommand(g), newLabDownCommand(g), newLabStatusCommand(g), newLabRotateKeyCommand(g), newLabRestartAgentCommand(g), newLabGraphCommand(g), newLabDaemonCommand(g))
	return cmd
}

func newLabUpCommand(g *globals) *cobra.Command {
	var file string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "up [-f FILE] [--name NAME]",
		Short: "Start a lab (without -f: the built-in example) and wait until it is ready",
		Long: `Start a lab and wait until every pod is ready.

Without -f, podnet runs its built-in example: three nodes, a Deployment of three "podnet serve"
pods, a NodePort Service and an Ingress in front of them, and a client pod.

A lab that was killed is cleaned up and resumed from its saved state: without -f, as it was;
with -f, with the file applied over it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var manifests []lab.Manifest
			if file != "" {
				var err error
				if manifests, err = readManifests(file, g.stdin); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.stdout, "Starting lab %q ...\n", g.name)
			start := time.Now()
			c, err := lab.Up(lab.UpOptions{Name: g.name, Manifests: manifests, Default: []lab.Manifest{{Source: "built-in example", Data: lab.Example}}, Timeout: timeout, Progress: g.stdout})
			if err != nil {
				return err
			}
			st, err := c.Status()
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Lab %q is ready (%d nodes, %s mode) in %.1fs.\n\n", g.name, len(st.Nodes), st.Mode, time.Since(start).Seconds())
			flag := ""
			if g.name != lab.DefaultName {
				flag = " --name " + g.name
			}
			client, server := "client", "<pod IP>"
			if objs, err := c.Get(cluster.KindPod, "", ""); err == nil {
				client, server = pickTryPods(objs)
			}
			fmt.Fprintf(g.stdout, `Try:
  podnet get pods -o wide%[1]s
  podnet exec%[1]s %[2]s -- curl -s http://%[3]s/clientip    # the server sees the caller's pod IP
  podnet exec%[1]s %[2]s -- ping -c 3 %[3]s
  podnet get svc%[1]s                                         # Services; pods find them by name through the cluster DNS%[4]s
  podnet lab status%[1]s
  podnet lab down%[1]s                                        # removes everything the lab created
`, flag, client, server, tryIngress(c, st))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "lab file: a Lab document and Kubernetes manifests (- for standard input)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for every pod to be ready")
	return cmd
}

func newLabDownCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "down [--name NAME]",
		Short: "Stop a lab and remove everything it created",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return lab.Down(g.name, g.stdout)
		},
	}
}

func newLabStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [--name NAME]",
		Short: "Show a lab's mode, nodes and pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.client().Status()
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Lab:      %s\nState:    running (daemon pid %d)\nMode:     %s\nDir:      %s\nIngress:  HTTP port %d, HTTPS port %d, on every node's address\n\n",
				st.Name, st.PID, st.Mode, st.Dir, st.IngressHTTPPort, st.IngressHTTPSPort)
			tw := tabwriter.NewWriter(g.stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "NODE\tADDRESS\tPOD-CIDR\tGATEWAY\tPODS\tREADY")
			for _, n := range st.Nodes {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", n.Name, n.Address, n.PodCIDR, n.Gateway, n.Pods, n.ReadyPods)
			}
			return tw.Flush()
		},
	}
}

// newLabDaemonCommand is the lab daemon that `lab up` starts; it is not for people to run.
func newLabDaemonCommand(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "daemon --name NAME [--dir DIR]",
		Short:  "Run a lab's daemon in the foreground (started by lab up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			return lab.RunDaemon(ctx, lab.DaemonOptions{Name: g.name, Dir: dir, Logger: log})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the lab's state directory (default: the user's)")
	return cmd
}

// pickTryPods picks a pod to run commands in (one named client if there is one) and the IP of a
// running pod on the same node to talk to.
func pickTryPods(objs []runtime.Object) (client, server string) {
	client, server = "client", "<pod IP>"
	var pods []*corev1.Pod
	var from *corev1.Pod
	for _, o := range objs {
		p := o.(*corev1.Pod)
		pods = append(pods, p)
		if p.Name == "client" || (from == nil && p.Status.PodIP != "") {
			from = p
		}
	}
	if from == nil {
		return client, server
	}
	client = from.Name
	if from.Namespace != "default" {
		client = "-n " + from.Namespace + " " + from.Name
	}
	for _, p := range pods {
		if p != from && p.Spec.NodeName == from.Spec.NodeName && p.Status.PodIP != "" {
			return client, p.Status.PodIP
		}
	}
	return client, server
}

func newLabRotateKeyCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-key NODE",
		Short: "Give a node a new WireGuard key; the other nodes learn it and connections keep working",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := g.client().RotateKey(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "node/%s: new WireGuard public key %s\n", args[0], pub)
			return nil
		},
	}
}

func newLabRestartAgentCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restart-agent NODE",
		Short: "Restart a node's agent while its pods run on; their connections continue",
		Long: `Restart a node's agent while its pods run on, as a DaemonSet rollout restarts podnet on a
real node: the agent is stopped as if killed and a new one takes the pods back. Pods keep their
interfaces and addresses, and established connections (pod to pod, through a ClusterIP, across
nodes) continue after a short stall; connections that end in the agent (NodePort, Ingress, the
node's DNS over TCP, egress to outside) are cut.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			gap, err := g.client().RestartAgent(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "node/%s: agent restarted (%s without an agent)\n", args[0], gap)
			return nil
		},
	}
}

// tryIngress is the "Try:" line for the lab's Ingresses, if it has any: a
// curl from the host to the first node's Ingress controller.
func tryIngress(c *lab.Client, st lab.Status) string {
	objs, err := c.Get(cluster.KindIngress, "", "")
	if err != nil || len(objs) == 0 || len(st.Nodes) == 0 {
		return ""
	}
	url := "http://" + st.Nodes[0].Address
	if st.IngressHTTPPort != 80 {
		url += ":" + strconv.Itoa(int(st.IngressHTTPPort))
	}
	return fmt.Sprintf("\n  curl -s %-46s # the Ingress, from the host (podnet get ingress)", url+"/")
}
