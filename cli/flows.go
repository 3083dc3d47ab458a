package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/inspect"
	"github.com/spf13/cobra"
)

// flowFilter is what `podnet flows` shows.
type flowFilter struct {
	namespace string // source or destination in it
	pod       string // [NS/]POD prefix: source or destination
	verdict   string // allowed, denied, forwarded, no-endpoint, dropped
	protocol  string // TCP, UDP, SCTP
	node      string
}

var flowVerdicts = []string{"allowed", "denied", "forwarded", "no-endpoint", "dropped"}

// check validates the filter's values.
func (f *flowFilter) check() error {
	if f.verdict != "" {
		v := strings.ToLower(f.verdict)
		if !slices.Contains(flowVerdicts, v) {
			return fmt.Errorf("--verdict %q: want one of %s", f.verdict, strings.Join(flowVerdicts, ", "))
		}
		f.verdict = v
	}
	if f.protocol != "" {
		p := strings.ToUpper(f.protocol)
		if p != "TCP" && p != "UDP" && p != "SCTP" {
			return fmt.Errorf("--protocol %q: want tcp, udp or sctp", f.protocol)
		}
		f.protocol = p
	}
	if strings.Count(f.pod, "/") > 1 {
		return fmt.Errorf("--pod %q: want POD or NAMESPACE/POD", f.pod)
	}
	return nil
}

// matches reports whether r passes the filter.
func (f *flowFilter) matches(r agent.FlowRecord) bool {
	if f.node != "" && r.Node != f.node {
		return false
	}
	if f.protocol != "" && r.Protocol != f.protocol {
		return false
	}
	switch f.verdict {
	case "":
	case "allowed":
		if !r.Allowed {
			return false
		}
	default:
		if r.Verdict != f.verdict {
			return false
		}
	}
	inNS := func(name string) bool {
		return f.namespace == "" || strings.HasPrefix(name, f.namespace+"/") ||
			strings.HasPrefix(r.Service, f.namespace+"/") && name == r.Dest
	}
	if f.namespace != "" && !inNS(r.Source) && !inNS(r.Dest) {
		return false
	}
	if f.pod != "" {
		want := f.pod
		if !strings.Contains(want, "/") {
			ns := f.namespace
			if ns == "" {
				ns = "default"
			}
			want = ns + "/" + want
		}
		if !strings.HasPrefix(r.Source, want) && !strings.HasPrefix(r.Dest, want) {
			return false
		}
	}
	return true
}

// flowPrinter writes flows as a table (aligned as it goes when following) or as JSON lines.
type flowPrinter struct {
	w      io.Writer
	json   bool
	tw     *tabwriter.Writer
	header bool
}

func newFlowPrinter(w io.Writer, asJSON bool) *flowPrinter {
	return &flowPrinter{w: w, json: asJSON, tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
}

func (p *flowPrinter) print(r agent.FlowRecord) error {
	if p.json {
		return json.NewEncoder(p.w).Encode(r)
	}
	if !p.header {
		p.header = true
		fmt.Fprintln(p.tw, "TIME\tNODE\tDIRECTION\tSOURCE\tDESTINATION\tSERVICE\tPORT\tVERDICT\tPOLICY")
	}
	src := r.Source
	if r.Source == r.SourceIP {
		src = fmt.Sprintf("%s:%d", r.SourceIP, r.SourcePort)
	}
	svc := r.Service
	if svc == "" {
		svc = "-"
	}
	verdict := r.Verdict
	if r.DeniedBy != "" {
		verdict += " (" + strings.ToLower(r.DeniedBy) + ")"
	}
	pol := strings.Join(r.Policies, ",")
	if pol == "" {
		pol = "-"
	}
	fmt.Fprintf(p.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%s\t%s\t%s\n", r.Time.Format("15:04:05.000"), r.Node, r.Direction,
		src, r.Dest, svc, r.Port, r.Protocol, verdict, pol)
	return nil
}

// flush writes the table so far.
func (p *flowPrinter) flush() error {
	if p.json {
		return nil
	}
	return p.tw.Flush()
}

func newFlowsCommand(g *globals) *cobra.Command {
	var (
		f                  flowFilter
		follow, local      bool
		denied             bool
		output, kubeconfig string
		socket             string
	)
	cmd := &cobra.Command{
		Use:   "flows [--follow] [--namespace NS] [--pod [NS/]POD] [--verdict V] [--protocol P] [-o json]",
		Short: "Show the new flows each node saw: who talked to whom, through which Service, and the verdict",
		Long: `Show every new flow each node's data path saw — a TCP connection attempt, the first datagram
of a UDP flow — with its source and destination (pod, or outside address), the Service it went
through and the backend it got, the verdict (forwarded, denied by NetworkPolicy, no endpoint,
dropped) and the policies that decided. Each node keeps its latest 4096; --follow streams new
ones as they come.

A flow between two nodes is seen by both: as egress where it left a pod, as ingress where it
arrived. A flow the node itself opened (a NodePort's or the Ingress's connection to a backend)
has direction "node".

Against a Kubernetes cluster (--kubeconfig), it runs "podnet flows --local" in each node's podnet
pod, as kubectl exec does.`,
		Example: `  podnet flows
  podnet flows --verdict denied
  podnet flows --follow --namespace shop --protocol tcp
  podnet flows --pod default/client -o json
  podnet flows --kubeconfig ~/.kube/config --follow`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if denied {
				f.verdict = "denied"
			}
			if err := f.check(); err != nil {
				return err
			}
			if output != "" && output != "json" && output != "table" {
				return fmt.Errorf("-o %q: want json or table", output)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p := newFlowPrinter(g.stdout, output == "json")
			show := func(r agent.FlowRecord) error {
				if !f.matches(r) {
					return nil
				}
				if err := p.print(r); err != nil {
					return err
				}
				if follow {
					return p.flush()
				}
				return nil
			}
			var err error
			switch {
			case kubeconfig != "":
				err = kubeFlows(ctx, kubeconfig, follow, f.node, show)
			case local:
				err = clientFlows(ctx, inspect.NewClient(socket), follow, show)
			default:
				err = clientFlows(ctx, g.client().Inspect(), follow, show)
			}
			if ferr := p.flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&follow, "follow", "f", false, "stream new flows as they come")
	fl.StringVarP(&f.namespace, "namespace", "n", "", "only flows from or to pods of this namespace")
	fl.StringVar(&f.pod, "pod", "", "only flows from or to this pod ([NS/]POD; a prefix matches a Deployment's pods)")
	fl.StringVar(&f.verdict, "verdict", "", "only flows with this verdict: "+strings.Join(flowVerdicts, ", ")+" (allowed: all but denied)")
	fl.StringVar(&f.protocol, "protocol", "", "only flows of this protocol: tcp, udp, sctp")
	fl.StringVar(&f.node, "node", "", "only flows this node saw")
	fl.StringVarP(&output, "output", "o", "table", "table, or json (one flow per line)")
	fl.StringVar(&kubeconfig, "kubeconfig", "", "ask the agents of this Kubernetes cluster instead of the lab")
	fl.BoolVar(&local, "local", false, "ask the agent of this node, on its socket (what --kubeconfig runs in the podnet pod)")
	fl.StringVar(&socket, "socket", agentInspectSocket, "the agent's socket, with --local")
	fl.BoolVar(&denied, "denied", false, "the same as --verdict denied")
	fl.MarkHidden("denied")
	fl.MarkHidden("local")
	fl.MarkHidden("socket")
	return cmd
}

// clientFlows shows the flows of an inspect server: the kept ones sorted, and then new ones.
func clientFlows(ctx context.Context, c *inspect.Client, follow bool, show func(agent.FlowRecord) error) error {
	if follow {
		return c.FollowFlows(ctx, show)
	}
	recs, err := c.Flows(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := show(r); err != nil {
			return err
		}
	}
	return nil
}

// kubeFlows shows the flows of every node of a cluster (or of node only), through each node's
// podnet pod.
func kubeFlows(ctx context.Context, kubeconfig string, follow bool, node string, show func(agent.FlowRecord) error) error {
	k, err := newKubeTarget(kubeconfig)
	if err != nil {
		return err
	}
	pods, err := k.agentPods(ctx)
	if err != nil {
		return err
	}
	args := []string{podnetBinary, "flows", "--local", "-o", "json"}
	if follow {
		args = append(args, "--follow")
	}
	var (
		mu   sync.Mutex // orders show and all
		all  []agent.FlowRecord
		errs = make(chan error, len(pods))
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, n := range sortedNodes(pods) {
		if node != "" && n != node {
			continue
		}
		pr, pw := io.Pipe()
		wg.Add(2)
		go func() {
			defer wg.Done()
			err := k.exec(ctx, pods[n], args, pw)
			pw.CloseWithError(err)
		}()
		go func() {
			defer wg.Done()
			err := inspect.DecodeFlows(ctx, pr, func(r agent.FlowRecord) error {
				mu.Lock()
				defer mu.Unlock()
				if follow {
					return show(r)
				}
				all = append(all, r)
				return nil
			})
			pr.CloseWithError(err)
			if err != nil {
				errs <- fmt.Errorf("node %s: %w", n, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	for _, r := range all {
		if err := show(r); err != nil {
			return err
		}
	}
	return nil
}
