// Package cli is podnet's command line: cobra commands built by constructors, with no global
// flags or state. cmd/podnet only calls Main.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/podnet/podnet/lab"
	"github.com/podnet/podnet/sandbox"
	"github.com/spf13/cobra"
)

// exitError carries a command's exit code (podnet exec returns the command's).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Main runs the command line and returns the process's exit code.
func Main(args []string) int {
	// The sandbox init runs before cobra: it is PID 1 of a pod's PID namespace and must not
	// parse anything but its own arguments.
	if len(args) > 0 && args[0] == sandbox.InitCommand {
		return sandbox.Init(args[1:])
	}
	root := NewRootCommand(os.Stdin, os.Stdout, os.Stderr)
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
}

// globals are the flags every command shares.
type globals struct {
	name   string
	stdin  *os.File
	stdout io.Writer
	stderr io.Writer
}

func (g *globals) client() *lab.Client { return lab.NewClient(g.name) }

// NewRootCommand builds the podnet command tree.
func NewRootCommand(stdin *os.File, stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "podnet",
		Short: "The Kubernetes network model in userspace, and a local lab to run it",
		Long: `podnet gives a set of nodes the Kubernetes network model in userspace: every pod its own IP
on a flat network, Services, cluster DNS, NetworkPolicy and Ingress, all in a node agent built on
a gVisor netstack, with no iptables, nftables, IPVS, eBPF or kernel modules.

Start the built-in example lab with "podnet lab up", then look around with "podnet get pods -o wide",
"podnet get svc" and "podnet exec client -- curl http://web/".`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.name, "name", lab.NameFromEnv(), "the lab to use ($PODNET_LAB, else \"podnet\")")
	root.AddCommand(
		newLabCommand(g),
		newApplyCommand(g),
		newDeleteCommand(g),
		newGetCommand(g),
		newExecCommand(g),
		newLogsCommand(g),
		newServeCommand(g),
		newPolicyCommand(g),
		newFlowsCommand(g),
		newCaptureCommand(g),
		newCheckCommand(g),
		newProbeCommand(g),
		newNodeCommand(),
		newCNIInstallCommand(),
		newClusterCommand(g),
		newPauseCommand(),
	)
	return root
}
