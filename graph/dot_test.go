package graph

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// dotToken is one token of DOT source: an ID (quoted or not) or a piece of
// punctuation.
type dotToken struct {
	text   string // the ID unquoted and unescaped, or the punctuation
	quoted bool
	punct  bool
}

// tokenizeDOT splits DOT source into tokens, skipping comments, and fails
// on an unterminated string or an unknown character.
func tokenizeDOT(src string) ([]dotToken, error) {
	var out []dotToken
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case strings.HasPrefix(src[i:], "->"):
			out = append(out, dotToken{text: "->", punct: true})
			i += 2
		case strings.ContainsRune("{}[];,=", rune(c)):
			out = append(out, dotToken{text: string(c), punct: true})
			i++
		case c == '"':
			var b strings.Builder
			i++
			for {
				if i >= len(src) {
					return nil, fmt.Errorf("unterminated string")
				}
				if src[i] == '\\' && i+1 < len(src) {
					switch src[i+1] {
					case '"', '\\':
						b.WriteByte(src[i+1])
					case 'n':
						b.WriteByte('\n')
					default:
						return nil, fmt.Errorf("unexpected escape \\%c at %d", src[i+1], i)
					}
					i += 2
					continue
				}
				if src[i] == '"' {
					i++
					break
				}
				b.WriteByte(src[i])
				i++
			}
			out = append(out, dotToken{text: b.String(), quoted: true})
		case c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(src) && (src[j] == '_' || src[j] == '.' || src[j] >= '0' && src[j] <= '9' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z') {
				j++
			}
			out = append(out, dotToken{text: src[i:j]})
			i = j
		default:
			return nil, fmt.Errorf("unexpected character %q at %d", c, i)
		}
	}
	return out, nil
}

// dotGraph is what parseDOT learns of a digraph.
type dotGraph struct {
	nodes map[string]map[string]string // declared node ID → attributes
	edges [][2]string
}

// parseDOT parses the subset of DOT that WriteDOT writes, checking that
// braces and brackets balance and that every node and edge ID is quoted.
func parseDOT(src string) (*dotGraph, error) {
	toks, err := tokenizeDOT(src)
	if err != nil {
		return nil, err
	}
	if len(toks) < 3 || toks[0].text != "digraph" || !toks[1].quoted || toks[2].text != "{" {
		return nil, fmt.Errorf("does not start with digraph \"name\" {")
	}
	g := &dotGraph{nodes: map[string]map[string]string{}}
	depth := 1
	i := 3
	attrs := func() (map[string]string, error) {
		m := map[string]string{}
		if i >= len(toks) || toks[i].text != "[" || !toks[i].punct {
			return m, nil
		}
		i++
		for {
			if i >= len(toks) {
				return nil, fmt.Errorf("unterminated attribute list")
			}
			if toks[i].punct && toks[i].text == "]" {
				i++
				return m, nil
			}
			if toks[i].punct && toks[i].text == "," {
				i++
				continue
			}
			if i+2 >= len(toks) || toks[i].punct || toks[i+1].text != "=" || !toks[i+2].quoted {
				return nil, fmt.Errorf("bad attribute at token %d (%q)", i, toks[i].text)
			}
			m[toks[i].text] = toks[i+2].text
			i += 3
		}
	}
	for i < len(toks) {
		t := toks[i]
		switch {
		case t.punct && t.text == "}":
			depth--
			i++
			if depth == 0 && i != len(toks) {
				return nil, fmt.Errorf("tokens after the closing brace")
			}
		case t.punct && t.text == ";":
			i++
		case !t.quoted && t.text == "subgraph":
			if i+2 >= len(toks) || !toks[i+1].quoted || toks[i+2].text != "{" {
				return nil, fmt.Errorf("subgraph without quoted name and brace")
			}
			depth++
			i += 3
		case !t.quoted && (t.text == "graph" || t.text == "node" || t.text == "edge"):
			i++
			if _, err := attrs(); err != nil {
				return nil, err
			}
		case t.quoted && i+1 < len(toks) && toks[i+1].text == "->":
			if i+2 >= len(toks) || !toks[i+2].quoted {
				return nil, fmt.Errorf("edge from %q to an unquoted ID", t.text)
			}
			g.edges = append(g.edges, [2]string{t.text, toks[i+2].text})
			i += 3
			if _, err := attrs(); err != nil {
				return nil, err
			}
		case t.quoted:
			i++
			a, err := attrs()
			if err != nil {
				return nil, err
			}
			g.nodes[t.text] = a
		default:
			return nil, fmt.Errorf("unexpected token %q (an unquoted ID?)", t.text)
		}
		if depth < 0 {
			return nil, fmt.Errorf("unbalanced braces")
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced braces: depth %d at the end", depth)
	}
	return g, nil
}

func writeDOT(t testing.TB, g *Graph) string {
	t.Helper()
	var b bytes.Buffer
	if err := g.WriteDOT(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestDOTWellFormed(t *testing.T) {
	g := newLab().build()
	src := writeDOT(t, g)
	d, err := parseDOT(src)
	if err != nil {
		t.Fatalf("parse DOT: %v\n%s", err, src)
	}
	for _, e := range d.edges {
		for _, id := range e {
			if _, ok := d.nodes[id]; !ok {
				t.Errorf("edge %q -> %q: %q is not declared", e[0], e[1], id)
			}
		}
	}
	// Every pod, Service, address and edge of the model is there.
	for _, n := range g.Nodes {
		for _, p := range n.Pods {
			if a, ok := d.nodes[p.ID]; !ok || !strings.HasPrefix(a["label"], p.Namespace+"/"+p.Name+"\n"+p.IP) {
				t.Errorf("pod %s: declared %v with label %q", p.ID, ok, a["label"])
			}
		}
	}
	for _, s := range g.Services {
		if _, ok := d.nodes[s.ID]; !ok {
			t.Errorf("Service %s not declared", s.ID)
		}
	}
	for _, a := range g.Addresses {
		if _, ok := d.nodes[a.ID]; !ok {
			t.Errorf("address %s not declared", a.ID)
		}
	}
	modelEdges := 0
	for _, e := range d.edges {
		if !strings.HasPrefix(e[0], "legend:") {
			modelEdges++
		}
	}
	if modelEdges != len(g.Edges) {
		t.Errorf("%d edges in DOT, want %d", modelEdges, len(g.Edges))
	}
	for _, want := range []string{
		`subgraph "cluster_node:node-a" {`,
		`label="node node-a\n10.244.0.0/24"`,
		`"pod:default/client" -> "pod:prod/db" [label="5432/TCP ×2\ndenied by prod/db-from-default-web, prod/deny-all", color="#e03131"`,
		`"pod:default/client" -> "pod:default/web-1" [label="allowed by web-from-client (80/TCP)", color="#2f9e44", fontcolor="#2b8a3e", style="dashed"`,
		`"svc:default/web" -> "pod:default/web-1" [label="selects", color="#868e96"`,
		`subgraph "cluster_legend" {`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("DOT lacks %s", want)
		}
	}
}

func TestDOTEscaping(t *testing.T) {
	weird := `say "hi" \ bye`
	nodes := []*corev1.Node{node(`node"1\`, "10.244.0.0/24", "")}
	pods := []*corev1.Pod{pod("default", `a"b\c`, `node"1\`, "10.244.0.5")}
	flows := []Flow{{Source: weird, Dest: `default/a"b\c`, Port: 80, Protocol: "TCP", Allowed: false, Policies: []string{`p"\`}}}
	g := Build(nodes, pods, nil, nil, flows)
	src := writeDOT(t, g)
	for _, want := range []string{
		`"ip:say \"hi\" \\ bye" [label="say \"hi\" \\ bye"`,
		`"pod:default/a\"b\\c" [label="default/a\"b\\c\n10.244.0.5"`,
		`subgraph "cluster_node:node\"1\\" {`,
		`denied by p\"\\"`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("DOT lacks %s\n%s", want, src)
		}
	}
	d, err := parseDOT(src)
	if err != nil {
		t.Fatalf("parse DOT: %v\n%s", err, src)
	}
	if a, ok := d.nodes["ip:"+weird]; !ok || a["label"] != weird {
		t.Errorf("address label after unescaping = %q, want %q", a["label"], weird)
	}
	for _, e := range d.edges {
		for _, id := range e {
			if _, ok := d.nodes[id]; !ok {
				t.Errorf("edge end %q not declared", id)
			}
		}
	}
}

func TestDOTQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`q"uote`, `"q\"uote"`},
		{`back\slash`, `"back\\slash"`},
		{"two\nlines\r", `"two\nlines"`},
		{`\"`, `"\\\""`},
	}
	for _, tt := range tests {
		if got := dotQuote(tt.in); got != tt.want {
			t.Errorf("dotQuote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestDOTEmptyNode(t *testing.T) {
	g := Build(nil, []*corev1.Pod{}, nil, nil, nil)
	if _, err := parseDOT(writeDOT(t, g)); err != nil {
		t.Fatalf("empty graph: %v", err)
	}
	g = Build([]*corev1.Node{node("lonely", "", "")}, nil, nil, nil, nil)
	src := writeDOT(t, g)
	if _, err := parseDOT(src); err != nil {
		t.Fatalf("node without pods: %v\n%s", err, src)
	}
	if !strings.Contains(src, `"empty:lonely"`) {
		t.Errorf("a node without pods needs a placeholder so Graphviz keeps its box:\n%s", src)
	}
}
