// Package printer prints Kubernetes objects the way kubectl prints them: the
// default table (with -o wide and -A), and -o json / -o yaml.
//
// podnet's CLI shows the lab's objects to people who know kubectl, so the
// columns, headers, value formats and spacing follow kubectl's own printers
// (k8s.io/kubernetes/pkg/printers/internalversion and cli-runtime's table
// printer) closely enough that a table can be compared with kubectl's by eye
// or by a script. The only deliberate additions are the POD-CIDR and
// WIREGUARD-KEY columns of the wide node view.
//
// The package is pure formatting: it never sorts, filters or fetches objects,
// never mutates the objects it is given, and keeps no state between calls.
package printer

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// Options controls how Table prints. The zero value prints kubectl's default
// table for a single namespace, with headers, ages measured from time.Now().
type Options struct {
	// Wide adds the columns kubectl shows with -o wide.
	Wide bool
	// AllNamespaces adds a NAMESPACE column first, as kubectl does with -A.
	// Cluster-scoped kinds (nodes, namespaces) never get one.
	AllNamespaces bool
	// NoHeaders leaves out the header line.
	NoHeaders bool
	// Now is the time AGE and RESTARTS are measured from. If Now is zero,
	// time.Now() is used.
	Now time.Time
}

// kubectl's tabwriter settings (cli-runtime printers.GetNewTabWriter). kubectl
// uses a fork of text/tabwriter whose only difference, RememberWidths, matters
// only across several flushes; Table flushes once.
const (
	tabwriterMinWidth = 6
	tabwriterWidth    = 4
	tabwriterPadding  = 3
	tabwriterPadChar  = ' '
)

// none, unknown and unset are kubectl's placeholders for empty cells.
const (
	none    = "<none>"
	unknown = "<unknown>"
	unset   = "<unset>"
)

// column is one column of a kind's table.
type column struct {
	header string // as kubectl prints it: upper case
	wide   bool   // shown only with -o wide (kubectl's Priority 1)
}

// kindTable describes the table of one kind.
type kindTable struct {
	columns    []column
	namespaced bool // whether -A adds a NAMESPACE column
}

// Table prints objs, which must all be of one kind and already sorted by the
// caller, as kubectl's default table. Supported kinds are *corev1.Pod,
// *corev1.Node, *corev1.Namespace, *corev1.Service, *appsv1.Deployment,
// *discoveryv1.EndpointSlice, *networkingv1.NetworkPolicy,
// *networkingv1.Ingress, *networkingv1.IngressClass and *corev1.Secret; any
// other type is an error naming it.
//
// Like kubectl, Table prints nothing at all for an empty list (not even the
// header): the caller prints the NoResources message.
func Table(w io.Writer, objs []runtime.Object, opts Options) error {
	if len(objs) == 0 {
		return nil
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}

	var kind *kindTable
	rows := make([][]string, 0, len(objs))
	for i, obj := range objs {
		if obj == nil {
			return fmt.Errorf("print table: object %d is nil", i)
		}
		if i > 0 && reflect.TypeOf(obj) != reflect.TypeOf(objs[0]) {
			return fmt.Errorf("print table: object %d is a %T in a list of %T", i, obj, objs[0])
		}
		k, cells, err := row(obj, now, opts.Wide)
		if err != nil {
			return err
		}
		kind = k
		if opts.AllNamespaces && kind.namespaced {
			ns := ""
			if m, ok := obj.(metav1.Object); ok {
				ns = m.GetNamespace()
			}
			cells = append([]string{ns}, cells...)
		}
		rows = append(rows, cells)
	}

	var headers []string
	if opts.AllNamespaces && kind.namespaced {
		headers = append(headers, "NAMESPACE")
	}
	for _, c := range kind.columns {
		headers = append(headers, c.header)
	}

	// Wide cells are always computed; drop them here unless asked for.
	keep := make([]bool, 0, len(headers))
	if opts.AllNamespaces && kind.namespaced {
		keep = append(keep, true)
	}
	for _, c := range kind.columns {
		keep = append(keep, opts.Wide || !c.wide)
	}

	tw := tabwriter.NewWriter(w, tabwriterMinWidth, tabwriterWidth, tabwriterPadding, tabwriterPadChar, 0)
	if !opts.NoHeaders {
		writeLine(tw, headers, keep)
	}
	for _, cells := range rows {
		writeLine(tw, cells, keep)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print table: %w", err)
	}
	return nil
}

// writeLine writes the kept cells of one line, tab-separated. Writes to a
// tabwriter only buffer; errors surface at Flush.
func writeLine(w io.Writer, cells []string, keep []bool) {
	var b strings.Builder
	first := true
	for i, cell := range cells {
		if i < len(keep) && !keep[i] {
			continue
		}
		if !first {
			b.WriteByte('\t')
		}
		first = false
		b.WriteString(sanitizeCell(cell))
	}
	b.WriteByte('\n')
	io.WriteString(w, b.String()) //nolint:errcheck // buffered; Flush reports
}

// sanitizeCell keeps one cell on one line and in its column, as kubectl does:
// a value is cut at its first line break (which tabwriter would treat as the
// end of the row) and marked with "...", and terminal escapes are made visible.
func sanitizeCell(s string) string {
	if i := strings.IndexAny(s, "\f\n\r"); i >= 0 {
		s = s[:i] + "..."
	}
	if strings.ContainsAny(s, "\x1b\t") {
		s = strings.NewReplacer("\x1b", "^[", "\t", " ").Replace(s)
	}
	return s
}

// age formats the time since t as kubectl's AGE column does.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return unknown
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// NoResources returns kubectl's message for an empty result: "No resources
// found in NS namespace." for a namespaced kind in one namespace, and "No
// resources found" with -A or for a cluster-scoped kind (pass namespace "").
// kubectl prints it on standard error.
func NoResources(namespace string, allNamespaces bool) string {
	if allNamespaces || namespace == "" {
		return "No resources found"
	}
	return fmt.Sprintf("No resources found in %s namespace.", namespace)
}
