package cli

import (
	"fmt"
	"strings"

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
