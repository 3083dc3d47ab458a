package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/podnet/podnet/lab"
	"github.com/podnet/podnet/serve"
	"github.com/spf13/cobra"
)

func newExecCommand(g *globals) *cobra.Command {
	var ns, container string
	cmd := &cobra.Command{
		Use:   "exec [-n NS] POD [-c CONTAINER] -- COMMAND [ARG...]",
		Short: "Run a command in a pod's network namespace",
		Long: `Run a command in a pod's network namespace, with the environment and resolv.conf of one of its
containers (-c; default the first). Standard input, output and error are this command's own, and
podnet exec exits with the command's exit status.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash != 1 {
				return errors.New("give exactly one POD, then -- and the command: podnet exec POD -- COMMAND [ARG...]")
			}
			code, err := g.client().Exec(lab.ExecRequest{Namespace: ns, Pod: args[0], Container: container, Argv: args[1:]},
				g.stdin, fileOf(g.stdout, os.Stdout), fileOf(g.stderr, os.Stderr))
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	cmd.Flags().StringVarP(&container, "container", "c", "", "container whose environment the command gets")
	return cmd
}

// fileOf returns w if it is a file, else def: exec passes descriptors, not streams.
func fileOf(w any, def *os.File) *os.File {
	if f, ok := w.(*os.File); ok {
		return f
	}
	return def
}

func newLogsCommand(g *globals) *cobra.Command {
	var ns, container string
	cmd := &cobra.Command{
		Use:   "logs [-n NS] POD [-c CONTAINER]",
		Short: "Print the logs of a container (standard output and error, across restarts)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.client().Logs(g.stdout, ns, args[0], container)
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	cmd.Flags().StringVarP(&container, "container", "c", "", "container (required when the pod has several)")
	return cmd
}

func newServeCommand(g *globals) *cobra.Command {
	var tcp, udp, httpPorts string
	cmd := &cobra.Command{
		Use:   "serve [--tcp PORTS] [--udp PORTS] [--http PORTS]",
		Short: "A small workload that answers with its pod's name",
		Long: `A small workload for labs: each TCP connection and UDP datagram is answered with the pod's name
($POD_NAME, else the hostname). Over HTTP it serves / (the pod name), /bytes?n=N (N zero bytes), /clientip (the caller's
address as it arrived) and /echo?msg=TEXT. PORTS is a comma-separated list.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var opts serve.Options
			var err error
			if opts.TCP, err = parsePortsFlag("--tcp", tcp); err != nil {
				return err
			}
			if opts.UDP, err = parsePortsFlag("--udp", udp); err != nil {
				return err
			}
			if opts.HTTP, err = parsePortsFlag("--http", httpPorts); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return serve.Run(ctx, opts)
		},
	}
	cmd.Flags().StringVar(&tcp, "tcp", "", "TCP ports")
	cmd.Flags().StringVar(&udp, "udp", "", "UDP ports")
	cmd.Flags().StringVar(&httpPorts, "http", "", "HTTP ports")
	return cmd
}

func parsePortsFlag(flag, v string) ([]int, error) {
	if v == "" {
		return nil, nil
	}
	ports, err := serve.ParsePorts(v)
	if err != nil {
		return nil, errors.New(flag + ": " + err.Error())
	}
	return ports, nil
}
