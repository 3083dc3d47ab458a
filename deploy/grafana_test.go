package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/podnet/podnet/agent"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// family is a series the dashboard may select: its label names.
type family struct {
	labels []string
}

// exported returns every series name an agent's registry may hold, with its label names: the
// agent's families (agent.MetricFamilies, which a test of package agent keeps equal to what the
// agent exports), their histogram and summary series, and the Go and process collectors' that
// `podnet node` registers too.
func exported(t *testing.T) map[string]family {
	t.Helper()
	out := map[string]family{}
	for _, f := range agent.MetricFamilies() {
		switch f.Type {
		case "histogram":
			out[f.Name+"_bucket"] = family{append(slices.Clone(f.Labels), "le")}
			out[f.Name+"_sum"] = family{f.Labels}
			out[f.Name+"_count"] = family{f.Labels}
		case "summary":
			out[f.Name] = family{append(slices.Clone(f.Labels), "quantile")}
			out[f.Name+"_sum"] = family{f.Labels}
			out[f.Name+"_count"] = family{f.Labels}
		default:
			out[f.Name] = family{f.Labels}
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		out[mf.GetName()] = family{}
	}
	return out
}

// promRefs are what an expression refers to.
type promRefs struct {
	metrics  map[string][]string // metric name → label names of its matchers
	grouping []string            // label names of by, without, on, ignoring, group_left, group_right
}

// promKeywords are PromQL's keywords; those that take a list of labels are its grouping clauses.
var promKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "atan2": true,
	"inf": true, "nan": true,
}

// promAggregations are PromQL's aggregation operators, which a grouping clause may follow.
var promAggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// parsePromQL finds the metric names, matcher labels and grouping labels of expr. It is a
// lexer, not a parser: enough for the dashboard's expressions, and strict where it is unsure
// (an unknown construct is an error).
func parsePromQL(expr string) (promRefs, error) {
	refs := promRefs{metrics: map[string][]string{}}
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	skipSpace := func(i int) int {
		for i < len(expr) && strings.IndexByte(" \t\n", expr[i]) >= 0 {
			i++
		}
		return i
	}
	ident := func(i int) (string, int) {
		j := i
		for j < len(expr) && isPart(expr[j]) {
			j++
		}
		return expr[i:j], j
	}
	skipString := func(i int) (int, error) {
		q := expr[i]
		for j := i + 1; j < len(expr); j++ {
			switch expr[j] {
			case '\\':
				j++
			case q:
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("unterminated string at %d", i)
	}
	// labelList reads "(a, b)" at i and returns the names.
	labelList := func(i int) ([]string, int, error) {
		var names []string
		i = skipSpace(i + 1)
		for i < len(expr) && expr[i] != ')' {
			if !isStart(expr[i]) {
				return nil, 0, fmt.Errorf("label list: unexpected %q at %d", expr[i], i)
			}
			var name string
			name, i = ident(i)
			names = append(names, name)
			i = skipSpace(i)
			if i < len(expr) && expr[i] == ',' {
				i = skipSpace(i + 1)
			}
		}
		if i >= len(expr) {
			return nil, 0, fmt.Errorf("label list: no ')'")
		}
		return names, i + 1, nil
	}
	// matchers reads "{a="x", b=~"y"}" at i and returns the label names.
	matchers := func(i int) ([]string, int, error) {
		var names []string
		i = skipSpace(i + 1)
		for i < len(expr) && expr[i] != '}' {
			if !isStart(expr[i]) {
				return nil, 0, fmt.Errorf("matcher: unexpected %q at %d", expr[i], i)
			}
			var name string
			name, i = ident(i)
			names = append(names, name)
			i = skipSpace(i)
			op := 0
			for _, o := range []string{"=~", "!~", "!=", "="} {
				if strings.HasPrefix(expr[i:], o) {
					op = len(o)
					break
				}
			}
			if op == 0 {
				return nil, 0, fmt.Errorf("matcher %s: no operator at %d", name, i)
			}
			i = skipSpace(i + op)
			if i >= len(expr) || expr[i] != '"' && expr[i] != '\'' {
				return nil, 0, fmt.Errorf("matcher %s: no string at %d", name, i)
			}
			var err error
			if i, err = skipString(i); err != nil {
				return nil, 0, err
			}
			i = skipSpace(i)
			if i < len(expr) && expr[i] == ',' {
				i = skipSpace(i + 1)
			}
		}
		if i >= len(expr) {
			return nil, 0, fmt.Errorf("matchers: no '}'")
		}
		return names, i + 1, nil
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			var err error
			if i, err = skipString(i); err != nil {
				return refs, err
			}
		case c == '[': // a range or subquery: durations and $__rate_interval
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return refs, fmt.Errorf("no ']' after %d", i)
			}
			i += j + 1
		case c == '{':
			return refs, fmt.Errorf("a selector without a metric name at %d", i)
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case isStart(c):
			var name string
			name, i = ident(i)
			next := skipSpace(i)
			switch {
			case promKeywords[name] && next < len(expr) && expr[next] == '(':
				names, j, err := labelList(next)
				if err != nil {
					return refs, fmt.Errorf("%s: %w", name, err)
				}
				refs.grouping = append(refs.grouping, names...)
				i = j
			case promKeywords[name] || promAggregations[name]:
			case next < len(expr) && expr[next] == '(': // a function
			case next < len(expr) && expr[next] == '{':
				names, j, err := matchers(next)
				if err != nil {
					return refs, fmt.Errorf("%s: %w", name, err)
				}
				refs.metrics[name] = append(refs.metrics[name], names...)
				i = j
			default:
				if _, ok := refs.metrics[name]; !ok {
					refs.metrics[name] = nil
				}
			}
		default:
			i++
		}
	}
	return refs, nil
}

// checkExpr reports what in expr is not what the agent exports: metric names, labels of
// matchers, and grouping labels that none of the expression's metrics has.
func checkExpr(expr string, known map[string]family) []string {
	refs, err := parsePromQL(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if len(refs.metrics) == 0 {
		problems = append(problems, "no metric")
	}
	all := map[string]bool{}
	for name, labels := range refs.metrics {
		f, ok := known[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s is not exported by the agent", name))
			continue
		}
		for _, l := range f.labels {
			all[l] = true
		}
		for _, l := range labels {
			if !slices.Contains(f.labels, l) {
				problems = append(problems, fmt.Sprintf("metric %s has no label %s (it has %v)", name, l, f.labels))
			}
		}
	}
	for _, l := range refs.grouping {
		if !all[l] {
			problems = append(problems, fmt.Sprintf("grouping label %s is on none of the metrics", l))
		}
	}
	return problems
}

func TestParsePromQL(t *testing.T) {
	known := map[string]family{
		"podnet_x_total":   {[]string{"node", "reason"}},
		"podnet_h_bucket":  {[]string{"node", "le"}},
		"podnet_y_current": {[]string{"node"}},
	}
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (reason) (rate(podnet_x_total{node=~"$node"}[$__rate_interval])) > 0`, nil},
		{`histogram_quantile(0.99, sum by (le) (rate(podnet_h_bucket{node=~"$node",le!="+Inf"}[5m])))`, nil},
		{`podnet_y_current / on (node) podnet_x_total`, nil},
		{`topk(10, podnet_y_current{node="a, b}"})`, nil},
		{`rate(podnet_renamed_total[5m])`, []string{"metric podnet_renamed_total is not exported by the agent"}},
		{`podnet_x_total{reson="a"}`, []string{"metric podnet_x_total has no label reson (it has [node reason])"}},
		{`sum by (policy) (podnet_x_total)`, []string{"grouping label policy is on none of the metrics"}},
		{`sum(rate(x[5m]))`, []string{"metric x is not exported by the agent"}},
		{`sum without (reason) (podnet_x_total) * 2`, nil},
		{`vector(1)`, []string{"no metric"}},
		{`podnet_x_total{node="a"`, []string{"podnet_x_total: matchers: no '}'"}},
	} {
		if got := checkExpr(tc.expr, known); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// TestGrafanaDashboard checks deploy/grafana/podnet.json against the agent: every PromQL
// expression of a panel or a variable uses metrics and labels the agent exports (so a metric or
// label renamed in Go fails here until the dashboard follows), every panel takes the
// ${datasource} variable, and the node variable lists the nodes.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/podnet.json")
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
		RefID      string          `json:"refId"`
	}
	type panel struct {
		ID         int             `json:"id"`
		Type       string          `json:"type"`
		Title      string          `json:"title"`
		Datasource json.RawMessage `json:"datasource"`
		Targets    []target        `json:"targets"`
		Panels     []panel         `json:"panels"`
	}
	var dash struct {
		UID           string  `json:"uid"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				Definition string          `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/podnet.json: %v", err)
	}
	if dash.UID == "" || dash.SchemaVersion < 36 {
		t.Errorf("uid %q, schemaVersion %d: want a uid and a schema of Grafana 9.3 or later", dash.UID, dash.SchemaVersion)
	}
	known := exported(t)

	vars := map[string]bool{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
		switch v.Name {
		case "datasource":
			if v.Type != "datasource" || string(v.Query) != `"prometheus"` {
				t.Errorf("variable datasource: type %s, query %s, want a Prometheus data source", v.Type, v.Query)
			}
		case "node":
			m := regexp.MustCompile(`^label_values\((\w+), *(\w+)\)$`).FindStringSubmatch(v.Definition)
			if m == nil || m[2] != "node" {
				t.Errorf("variable node: %q, want label_values(<metric>, node)", v.Definition)
				continue
			}
			if f, ok := known[m[1]]; !ok || !slices.Contains(f.labels, "node") {
				t.Errorf("variable node: %s is not a metric of the agent with a node label", m[1])
			}
		}
	}
	if !vars["datasource"] || !vars["node"] {
		t.Errorf("variables %v, want datasource and node", vars)
	}

	ids := map[int]bool{}
	exprs := 0
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if !strings.Contains(string(p.Datasource), `"${datasource}"`) {
				t.Errorf("panel %q: data source %s, want the ${datasource} variable", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				exprs++
				if !strings.Contains(string(tg.Datasource), `"${datasource}"`) {
					t.Errorf("panel %q, query %s: data source %s, want the ${datasource} variable", p.Title, tg.RefID, tg.Datasource)
				}
				if !strings.Contains(tg.Expr, `node=~"$node"`) {
					t.Errorf("panel %q, query %s: %s does not follow the node variable", p.Title, tg.RefID, tg.Expr)
				}
				for _, problem := range checkExpr(tg.Expr, known) {
					t.Errorf("panel %q, query %s: %s: %s", p.Title, tg.RefID, tg.Expr, problem)
				}
			}
		}
	}
	walk(dash.Panels)
	if exprs == 0 {
		t.Error("the dashboard has no queries")
	}
}

// TestREADMEMetricsTable keeps the README's table of metrics equal to agent.MetricFamilies:
// every family in it once, with its type and labels.
func TestREADMEMetricsTable(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `(podnet_\\w+)` \\| (\\w+) \\| ([^|]*) \\|")
	label := regexp.MustCompile("`(\\w+)`")
	listed := map[string]bool{}
	want := map[string]agent.MetricFamily{}
	for _, f := range agent.MetricFamilies() {
		want[f.Name] = f
	}
	for line := range strings.Lines(string(b)) {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := m[1]
		if listed[name] {
			t.Errorf("README: %s listed twice", name)
		}
		listed[name] = true
		f, ok := want[name]
		if !ok {
			t.Errorf("README lists %s, which the agent does not export", name)
			continue
		}
		var labels []string
		for _, lm := range label.FindAllStringSubmatch(m[3], -1) {
			labels = append(labels, lm[1])
		}
		if m[2] != f.Type || !slices.Equal(labels, f.Labels) {
			t.Errorf("README: %s is a %s with labels %v, want a %s with %v", name, m[2], labels, f.Type, f.Labels)
		}
	}
	for name := range want {
		if !listed[name] {
			t.Errorf("README's table of metrics lacks %s", name)
		}
	}
}
