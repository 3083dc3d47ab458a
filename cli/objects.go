package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/lab"
	"github.com/podnet/podnet/printer"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// readManifests reads a file, every .yaml, .yml and .json file of a directory (sorted), or
// standard input ("-").
func readManifests(path string, stdin io.Reader) ([]lab.Manifest, error) {
	if path == "-" {
		b, err := io.ReadAll(stdin)
		return []lab.Manifest{{Source: "<stdin>", Data: b}}, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		b, err := os.ReadFile(path)
		return []lab.Manifest{{Source: path, Data: b}}, err
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []lab.Manifest
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		p := filepath.Join(path, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, lab.Manifest{Source: p, Data: b})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no .yaml, .yml or .json files", path)
	}
	return out, nil
}

func newApplyCommand(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects in a lab, all or nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("must specify -f FILE, a directory, or - for standard input")
			}
			ms, err := readManifests(file, g.stdin)
			if err != nil {
				return err
			}
			results, err := g.client().Apply(ms...)
			if err != nil {
				return err
			}
			for _, r := range results {
				fmt.Fprintln(g.stdout, r)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file, directory or - (standard input) of manifests")
	return cmd
}

func newDeleteCommand(g *globals) *cobra.Command {
	var file, ns string
	cmd := &cobra.Command{
		Use:               "delete -f FILE | delete KIND NAME... [-n NS]",
		Short:             "Delete objects from a lab, all or nothing",
		ValidArgsFunction: completeKinds,
		RunE: func(cmd *cobra.Command, args []string) error {
			var refs []lab.ObjectRef
			switch {
			case file != "" && len(args) > 0:
				return errors.New("give either -f FILE or KIND NAME, not both")
			case file != "":
				ms, err := readManifests(file, g.stdin)
				if err != nil {
					return err
				}
				for _, m := range ms {
					docs, err := cluster.Decode(bytes.NewReader(m.Data), m.Source)
					if err != nil {
						return err
					}
					for _, d := range docs {
						if _, ok := d.Object.(*cluster.Lab); ok {
							continue // the lab itself goes with `podnet lab down`
						}
						mo := d.Object.(metav1.Object)
						kind, _ := cluster.ParseKind(d.Object.GetObjectKind().GroupVersionKind().Kind)
						refs = append(refs, lab.ObjectRef{Kind: kind, Namespace: mo.GetNamespace(), Name: mo.GetName()})
					}
				}
			case len(args) >= 2:
				kind, err := cluster.ParseKind(args[0])
				if err != nil {
					return err
				}
				for _, name := range args[1:] {
					r := lab.ObjectRef{Kind: kind, Name: name}
					if kind.Namespaced() {
						r.Namespace = ns
					}
					refs = append(refs, r)
				}
			default:
				return errors.New("give -f FILE, or KIND and at least one NAME (for example: podnet delete pod web-1)")
			}
			results, err := g.client().Delete(refs)
			if err != nil {
				return err
			}
			for _, r := range results {
				fmt.Fprintln(g.stdout, r)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file, directory or - of manifests whose objects to delete")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	return cmd
}

func newGetCommand(g *globals) *cobra.Command {
	var ns, output string
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME] [-n NS | -A] [-o wide|yaml|json]",
		Short: "Show objects as kubectl does",
		Long: `Show objects of a lab as kubectl does. KIND is spelled as kubectl spells it: pods (pod, po),
services (svc), endpointslices, networkpolicies (netpol), ingresses (ing), ingressclasses,
secrets, nodes (no), namespaces (ns), deployments (deploy).`,
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: completeKinds,
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := cluster.ParseKind(args[0])
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			qns := ns
			if all || !kind.Namespaced() {
				qns = ""
			}
			objs, err := g.client().Get(kind, qns, name)
			if err != nil {
				return err
			}
			if name != "" && len(objs) == 0 {
				return fmt.Errorf("%s %q not found", kind.Plural(), name)
			}
			switch output {
			case "json", "yaml":
				if name != "" {
					return printer.Object(g.stdout, objs[0], output)
				}
				return printer.List(g.stdout, objs, output)
			case "", "wide":
				if len(objs) == 0 {
					fmt.Fprintln(g.stderr, printer.NoResources(ns, all || !kind.Namespaced()))
					return nil
				}
				return printer.Table(g.stdout, objs, printer.Options{Wide: output == "wide", AllNamespaces: all && kind.Namespaced()})
			default:
				return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json,wide,yaml", output)
			}
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "objects of every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: wide, yaml or json")
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"wide", "yaml", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func completeKinds(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	kinds := []string{"pods", "services", "endpointslices", "networkpolicies", "ingresses", "ingressclasses", "secrets", "nodes", "namespaces", "deployments"}
	sort.Strings(kinds)
	return kinds, cobra.ShellCompDirectiveNoFileComp
}
