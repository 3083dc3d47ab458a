package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/graph"
	"github.com/podnet/podnet/lab"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newLabGraphCommand(g *globals) *cobra.Command {
	var out, format, kubeconfig string
	var noFlows bool
	cmd := &cobra.Command{
		Use:   "graph [-o FILE.svg|FILE.dot] [--kubeconfig FILE]",
		Short: "Draw the nodes, pods, Services and NetworkPolicies, and the flows seen, as SVG or DOT",
		Long: `Draw the lab's (or with --kubeconfig a cluster's) nodes with their pods, the Services and the
pods they select, what the NetworkPolicies allow (dashed green), and the flows the nodes saw
lately (podnet flows): green when allowed, red when NetworkPolicy denied them.

The SVG is laid out by podnet itself and opens in any browser; the DOT file is for Graphviz.
The format follows the file's extension, or --format.`,
		Example: `  podnet lab graph -o lab.svg
  podnet lab graph -o lab.dot && dot -Tpng lab.dot > lab.png
  podnet lab graph --kubeconfig ~/.kube/config -o cluster.svg`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format == "" {
				format = strings.TrimPrefix(filepath.Ext(out), ".")
				if out == "" || out == "-" {
					format = "svg"
				}
			}
			if format != "svg" && format != "dot" {
				return fmt.Errorf("--format %q: want svg or dot (or an -o file ending in .svg or .dot)", format)
			}
			var (
				m   graphInput
				err error
			)
			if kubeconfig != "" {
				m, err = kubeGraphInput(cmd.Context(), kubeconfig, !noFlows)
			} else {
				m, err = labGraphInput(cmd.Context(), g.client(), !noFlows)
			}
			if err != nil {
				return err
			}
			gr := graph.Build(m.nodes, m.pods, m.services, m.policies, m.flows)
			var buf bytes.Buffer
			if format == "dot" {
				err = gr.WriteDOT(&buf)
			} else {
				err = gr.WriteSVG(&buf)
			}
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = g.stdout.Write(buf.Bytes())
				return err
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "wrote %s: %d nodes, %d pods, %d Services, %d policies, %d flows\n", out,
				len(m.nodes), len(m.pods), len(m.services), len(m.policies), len(m.flows))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "the file to write (default: SVG on standard output)")
	cmd.Flags().StringVar(&format, "format", "", "svg or dot (default: from the file's extension)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "draw this Kubernetes cluster instead of the lab")
	cmd.Flags().BoolVar(&noFlows, "no-flows", false, "leave the flow log out")
	return cmd
}

// graphInput is what a picture is made of.
type graphInput struct {
	nodes    []*corev1.Node
	pods     []*corev1.Pod
	services []*corev1.Service
	policies []*networkingv1.NetworkPolicy
	flows    []graph.Flow
}

// graphFlows turns flow records into the picture's flows: each flow once, as seen where it
// started (a flow between nodes is also seen arriving at the other).
func graphFlows(recs []agent.FlowRecord) []graph.Flow {
	out := make([]graph.Flow, 0, len(recs))
	for _, r := range recs {
		if r.Direction == agent.FlowIngress && r.Allowed {
			continue // its source's node told it as egress
		}
		out = append(out, graph.Flow{Source: r.Source, Dest: r.Dest, Service: r.Service, Port: r.Port,
			Protocol: r.Protocol, Allowed: r.Allowed, Policies: r.Policies})
	}
	return out
}

func labGraphInput(ctx context.Context, c *lab.Client, withFlows bool) (graphInput, error) {
	var m graphInput
	get := func(kind cluster.Kind, each func(any)) error {
		objs, err := c.Get(kind, "", "")
		if err != nil {
			return err
		}
		for _, o := range objs {
			each(o)
		}
		return nil
	}
	for kind, each := range map[cluster.Kind]func(any){
		cluster.KindNode:          func(o any) { m.nodes = append(m.nodes, o.(*corev1.Node)) },
		cluster.KindPod:           func(o any) { m.pods = append(m.pods, o.(*corev1.Pod)) },
		cluster.KindService:       func(o any) { m.services = append(m.services, o.(*corev1.Service)) },
		cluster.KindNetworkPolicy: func(o any) { m.policies = append(m.policies, o.(*networkingv1.NetworkPolicy)) },
	} {
		if err := get(kind, each); err != nil {
			return m, err
		}
	}
	if withFlows {
		recs, err := c.Inspect().Flows(ctx)
		if err != nil {
			return m, err
		}
		m.flows = graphFlows(recs)
	}
	return m, nil
}

func kubeGraphInput(ctx context.Context, kubeconfig string, withFlows bool) (graphInput, error) {
	var m graphInput
	k, err := newKubeTarget(kubeconfig)
	if err != nil {
		return m, err
	}
	cs := k.client
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return m, err
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return m, err
	}
	svcs, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return m, err
	}
	pols, err := cs.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return m, err
	}
	for i := range nodes.Items {
		m.nodes = append(m.nodes, &nodes.Items[i])
	}
	for i := range pods.Items {
		m.pods = append(m.pods, &pods.Items[i])
	}
	for i := range svcs.Items {
		m.services = append(m.services, &svcs.Items[i])
	}
	for i := range pols.Items {
		m.policies = append(m.policies, &pols.Items[i])
	}
	if withFlows {
		var recs []agent.FlowRecord
		if err := kubeFlows(ctx, kubeconfig, false, "", func(r agent.FlowRecord) error {
			recs = append(recs, r)
			return nil
		}); err != nil {
			return m, err
		}
		m.flows = graphFlows(recs)
	}
	return m, nil
}
