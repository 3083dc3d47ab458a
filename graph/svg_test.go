package graph

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// svgElement is an element of a parsed SVG with its ancestors' classes.
type svgElement struct {
	name    string
	attrs   map[string]string
	text    string // the character data directly inside it
	classes []string
}

// svgDoc is what parseSVG learns of an SVG document.
type svgDoc struct {
	root     svgElement
	elements []*svgElement
}

// parseSVG reads src with encoding/xml, strictly, and fails if it is not
// well-formed.
func parseSVG(src []byte) (*svgDoc, error) {
	dec := xml.NewDecoder(bytes.NewReader(src))
	dec.Strict = true
	doc := &svgDoc{}
	var stack []*svgElement
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			e := &svgElement{name: t.Name.Local, attrs: map[string]string{}}
			for _, a := range t.Attr {
				name := a.Name.Local
				if a.Name.Space == "" && name == "xmlns" {
					name = "xmlns"
				}
				e.attrs[name] = a.Value
			}
			if len(stack) == 0 {
				e.attrs["ns"] = t.Name.Space
				doc.root = *e
			} else {
				e.classes = slices.Clone(stack[len(stack)-1].classes)
			}
			if c := e.attrs["class"]; c != "" {
				e.classes = append(e.classes, strings.Fields(c)...)
			}
			doc.elements = append(doc.elements, e)
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			}
		}
	}
	if len(stack) != 0 {
		return nil, fmt.Errorf("%d elements not closed", len(stack))
	}
	return doc, nil
}

func (d *svgDoc) has(e *svgElement, class string) bool { return slices.Contains(e.classes, class) }

// texts returns the contents of the document's text elements.
func (d *svgDoc) texts() []string {
	var out []string
	for _, e := range d.elements {
		if e.name == "text" {
			out = append(out, e.text)
		}
	}
	return out
}

func writeSVG(t testing.TB, g *Graph) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := g.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSVGWellFormed(t *testing.T) {
	g := newLab().build()
	src := writeSVG(t, g)
	doc, err := parseSVG(src)
	if err != nil {
		t.Fatalf("parse SVG: %v", err)
	}
	if doc.root.name != "svg" || doc.root.attrs["ns"] != "http://www.w3.org/2000/svg" || doc.root.attrs["version"] != "1.1" {
		t.Errorf("root = %s in %q version %q, want an SVG 1.1 svg element", doc.root.name, doc.root.attrs["ns"], doc.root.attrs["version"])
	}
	width, errW := strconv.ParseFloat(doc.root.attrs["width"], 64)
	height, errH := strconv.ParseFloat(doc.root.attrs["height"], 64)
	if errW != nil || errH != nil || width <= 0 || height <= 0 || doc.root.attrs["viewBox"] != fmt.Sprintf("0 0 %s %s", num(width), num(height)) {
		t.Errorf("canvas %q x %q viewBox %q", doc.root.attrs["width"], doc.root.attrs["height"], doc.root.attrs["viewBox"])
	}

	texts := strings.Join(doc.texts(), "\n")
	for _, want := range []string{
		"default/web-1", "default/web-2", "default/client", "prod/db", "kube-system/coredns-1",
		"10.244.0.5", "node node-a", "10.244.0.0/24", "default/web", "NodePort 10.96.0.80", "80:30080/TCP",
		"ipBlock 203.0.113.0/24", "198.51.100.7", "web-from-client", "80/TCP via default/web ×2", "Legend",
	} {
		if !strings.Contains(texts, want) {
			t.Errorf("SVG has no text %q", want)
		}
	}
	if strings.Contains(texts, "job-done") {
		t.Error("SVG shows the terminal pod job-done")
	}

	markers := map[string]bool{}
	for _, e := range doc.elements {
		if e.name == "marker" {
			markers["url(#"+e.attrs["id"]+")"] = true
		}
	}
	denied, allowed, dashed := 0, 0, 0
	for _, e := range doc.elements {
		if e.name != "path" || !doc.has(e, "edge") {
			continue
		}
		if !markers[e.attrs["marker-end"]] {
			t.Errorf("edge path's marker-end %q is not defined", e.attrs["marker-end"])
		}
		switch {
		case doc.has(e, "denied"):
			denied++
			if e.attrs["stroke"] != ColorDenied {
				t.Errorf("denied flow drawn in %s, want red %s", e.attrs["stroke"], ColorDenied)
			}
		case doc.has(e, "flow"):
			allowed++
			if e.attrs["stroke"] != ColorAllowed {
				t.Errorf("allowed flow drawn in %s, want green %s", e.attrs["stroke"], ColorAllowed)
			}
		case doc.has(e, "policy"):
			dashed++
			if e.attrs["stroke-dasharray"] == "" || e.attrs["stroke"] != ColorAllowed {
				t.Errorf("policy edge stroke %s dasharray %q, want dashed green", e.attrs["stroke"], e.attrs["stroke-dasharray"])
			}
		}
	}
	if denied != 2 || allowed != 6 || dashed != len(g.EdgesOf(EdgePolicy)) {
		t.Errorf("%d denied, %d allowed flow paths, %d policy paths; want 2, 6, %d", denied, allowed, dashed, len(g.EdgesOf(EdgePolicy)))
	}
}

// TestSVGInsideCanvas checks that every rectangle lies on the canvas.
func TestSVGInsideCanvas(t *testing.T) {
	doc, err := parseSVG(writeSVG(t, newLab().build()))
	if err != nil {
		t.Fatal(err)
	}
	width, _ := strconv.ParseFloat(doc.root.attrs["width"], 64)
	height, _ := strconv.ParseFloat(doc.root.attrs["height"], 64)
	var dx, dy float64
	for _, e := range doc.elements {
		if tr := e.attrs["transform"]; tr != "" {
			if _, err := fmt.Sscanf(tr, "translate(%g,%g)", &dx, &dy); err != nil {
				t.Fatalf("transform %q: %v", tr, err)
			}
		}
	}
	for _, e := range doc.elements {
		if e.name != "rect" {
			continue
		}
		var r [4]float64
		for i, a := range []string{"x", "y", "width", "height"} {
			r[i], _ = strconv.ParseFloat(e.attrs[a], 64)
		}
		if e.attrs["x"] == "0" && e.attrs["y"] == "0" && r[2] == width {
			continue // the background, outside the translated group
		}
		x, y := r[0]+dx, r[1]+dy
		if x < 0 || y < 0 || x+r[2] > width+0.5 || y+r[3] > height+0.5 {
			t.Errorf("rect %v (classes %v) leaves the %gx%g canvas", r, e.classes, width, height)
		}
	}
}

func TestSVGEscaping(t *testing.T) {
	nasty := `<script>alert("x&y")</script>`
	flows := []Flow{{Source: nasty, Dest: "default/web-1", Port: 80, Protocol: "TCP", Allowed: false, Policies: []string{"default/a&b"}}}
	pods := []*corev1.Pod{pod("default", "web-1", "node-a", "10.244.0.5"), pod("default", "ctl\x01char", "node-a", "10.244.0.6")}
	src := writeSVG(t, Build(nil, pods, nil, nil, flows))
	doc, err := parseSVG(src)
	if err != nil {
		t.Fatalf("parse SVG: %v\n%s", err, src)
	}
	if bytes.Contains(src, []byte("<script")) {
		t.Error("SVG contains an unescaped <script")
	}
	texts := strings.Join(doc.texts(), "\n")
	for _, want := range []string{nasty, "denied by default/a&b", "default/ctl\uFFFDchar"} {
		if !strings.Contains(texts, want) {
			t.Errorf("SVG texts lack %q:\n%s", want, texts)
		}
	}
}

func TestSVGEmpty(t *testing.T) {
	doc, err := parseSVG(writeSVG(t, Build(nil, nil, nil, nil, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(doc.texts(), "\n"), "0 nodes, 0 pods") {
		t.Error("an empty picture should still say what it counts")
	}
}

func TestDeterministic(t *testing.T) {
	a, b := newLab(), newLab()
	// The second lab lists everything backwards.
	reverse := func(n int, swap func(i, j int)) {
		for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
			swap(i, j)
		}
	}
	reverse(len(b.nodes), func(i, j int) { b.nodes[i], b.nodes[j] = b.nodes[j], b.nodes[i] })
	reverse(len(b.pods), func(i, j int) { b.pods[i], b.pods[j] = b.pods[j], b.pods[i] })
	reverse(len(b.services), func(i, j int) { b.services[i], b.services[j] = b.services[j], b.services[i] })
	reverse(len(b.policies), func(i, j int) { b.policies[i], b.policies[j] = b.policies[j], b.policies[i] })
	reverse(len(b.flows), func(i, j int) { b.flows[i], b.flows[j] = b.flows[j], b.flows[i] })
	for _, format := range []struct {
		name  string
		write func(*Graph, io.Writer) error
	}{{"DOT", (*Graph).WriteDOT}, {"SVG", (*Graph).WriteSVG}} {
		var outs [3]bytes.Buffer
		for i, l := range []lab{a, a, b} {
			if err := format.write(l.build(), &outs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(outs[0].Bytes(), outs[1].Bytes()) {
			t.Errorf("%s: two runs differ", format.name)
		}
		if !bytes.Equal(outs[0].Bytes(), outs[2].Bytes()) {
			t.Errorf("%s: the order of the inputs changes the output", format.name)
		}
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrors(t *testing.T) {
	g := newLab().build()
	if err := g.WriteDOT(failWriter{}); err == nil || !strings.Contains(err.Error(), "write DOT: disk full") {
		t.Errorf("WriteDOT error = %v", err)
	}
	if err := g.WriteSVG(failWriter{}); err == nil || !strings.Contains(err.Error(), "write SVG: disk full") {
		t.Errorf("WriteSVG error = %v", err)
	}
}
