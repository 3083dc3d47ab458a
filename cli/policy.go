package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newPolicyCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Ask about the lab's NetworkPolicies",
	}
	cmd.AddCommand(newPolicyExplainCommand(g))
	return cmd
}

func newPolicyExplainCommand(g *globals) *cobra.Command {
	var from, to, port string
	cmd := &cobra.Command{
		Use:   "explain --from NS/POD --to NS/POD|IP --port PORT/PROTO",
		Short: "Print the verdict of the NetworkPolicies on a connection, and the policies and rules that decided it",
		Example: `  podnet policy explain --from x/a --to y/b --port 80/TCP
  podnet policy explain --from default/client --to 203.0.113.7 --port 443`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, report, err := g.client().ExplainPolicy(from, to, port)
			if err != nil {
				return err
			}
			fmt.Fprint(g.stdout, report)
			if !strings.HasSuffix(report, "\n") {
				fmt.Fprintln(g.stdout)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the client pod, NS/POD (POD alone: namespace default)")
	cmd.Flags().StringVar(&to, "to", "", "the server pod, NS/POD, or an IP address")
	cmd.Flags().StringVar(&port, "port", "", "the destination port, PORT/PROTO (TCP if no protocol)")
	for _, f := range []string{"from", "to", "port"} {
		cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newFlowsCommand(g *globals) *cobra.Command {
	var denied bool
	cmd := &cobra.Command{
		Use:   "flows [--denied]",
		Short: "List the latest connections that NetworkPolicy judged: source, destination, port, verdict, policy",
		Long: `List the latest connections that NetworkPolicy judged, on every node: TCP connection attempts
and the first datagram of UDP flows, from pods a policy isolates for egress or to pods one isolates
for ingress. Each node keeps its last 4096 verdicts. The denied ones are also counted per policy in
the lab's metrics (podnet_policy_denied_total).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			recs, err := g.client().Flows()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "TIME\tNODE\tSOURCE\tDESTINATION\tPORT\tDIRECTION\tVERDICT\tPOLICY")
			for _, r := range recs {
				if denied && r.Allowed {
					continue
				}
				verdict := "allowed"
				if !r.Allowed {
					verdict = "denied"
				}
				pol := strings.Join(r.Policies, ",")
				if pol == "" {
					pol = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%s\t%s\t%s\t%s\n", r.Time.Format("15:04:05.000"), r.Node,
					r.Source, r.Dest, r.Port, r.Protocol, r.Direction, verdict, pol)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&denied, "denied", false, "only the denied ones")
	return cmd
}
