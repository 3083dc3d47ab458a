package graph

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// fontFamily is a monospace stack: the layout estimates text widths from
// character counts.
const fontFamily = "DejaVu Sans Mono, Menlo, Consolas, Liberation Mono, monospace"

// WriteSVG writes g as a standalone SVG 1.1 image laid out without
// external tools: the node boxes as columns side by side with their pods
// stacked inside, the Services in a row above, the addresses in a row
// below, the edges as curves with arrowheads and small labels, then a
// legend and the notes. The canvas is sized to the content; every text is
// XML-escaped; the output is deterministic. Hovering a shape or an edge in
// a browser shows its full text.
func (g *Graph) WriteSVG(w io.Writer) error {
	l := place(g)
	var b bytes.Buffer
	s := &svgWriter{b: &b}
	bounds := l.bounds.grow(margin)
	width, height := math.Ceil(bounds.W), math.Ceil(bounds.H)

	b.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="no"?>` + "\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%s" height="%s" viewBox="0 0 %s %s" font-family="%s" font-size="%s">`+"\n",
		num(width), num(height), num(width), num(height), fontFamily, num(fontSize))
	s.el("title", nil, "podnet graph: "+l.summary)
	s.defs()
	s.open("rect", "x", "0", "y", "0", "width", num(width), "height", num(height), "fill", "white")
	b.WriteString("/>\n")
	fmt.Fprintf(&b, `<g transform="translate(%s,%s)">`+"\n", num(-bounds.X), num(-bounds.Y))

	// Title.
	x0 := l.bounds.X
	s.text(x0, l.titleY+14, l.title, "font-weight", "bold", "font-size", num(titleSize))
	s.text(x0+titleWidth(l.title)+12, l.titleY+14, l.summary, "fill", colorMutedText)

	// Node boxes.
	b.WriteString(`<g class="nodes">` + "\n")
	for _, n := range l.nodes {
		b.WriteString(`<g class="node">`)
		s.el("title", nil, strings.Join(n.header, " "))
		s.rect(n.r, 8, "fill", colorNodeFill, "stroke", colorNodeLine, "stroke-width", "1.2")
		for i, h := range n.header {
			attrs := []string{"fill", colorMutedText}
			if i == 0 {
				attrs = []string{"font-weight", "bold", "fill", colorText}
			}
			s.text(n.r.X+nodePad, n.r.Y+padY+baseline(i), h, attrs...)
		}
		if n.empty {
			top := n.r.Y + float64(len(n.header))*lineHeight + 2*padY + 4
			s.text(n.r.cx(), top+baseline(0), "(no pods)", "fill", colorMutedText, "text-anchor", "middle", "font-style", "italic")
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</g>\n")

	// Edges under the shapes: the shapes hide where an edge passes behind.
	b.WriteString(`<g class="edges" fill="none">` + "\n")
	for _, r := range l.routes {
		s.edge(r)
	}
	b.WriteString("</g>\n")

	// Shapes.
	b.WriteString(`<g class="shapes">` + "\n")
	for _, sh := range l.shapes {
		s.shape(sh)
	}
	b.WriteString("</g>\n")

	// Edge labels on top of everything.
	b.WriteString(`<g class="labels">` + "\n")
	for _, r := range l.routes {
		if len(r.labelLines) == 0 {
			continue
		}
		color, opacity := colorAllowedLabel, "0.9"
		switch {
		case r.e.Kind == EdgePolicy:
			opacity = "0.8"
		case !r.e.Allowed:
			color = colorDeniedLabel
		}
		size, line := labelFontSize*r.labelScale, labelLine*r.labelScale
		s.open("g", "class", "label "+r.e.Kind.String(), "font-size", num(size))
		s.b.WriteString(">")
		s.rect(r.label, 3, "fill", "white", "fill-opacity", opacity, "stroke", r.e.Color, "stroke-width", "0.6", "stroke-opacity", "0.6")
		for i, text := range r.labelLines {
			s.text(r.label.cx(), r.label.Y+1.5+float64(i)*line+line*0.5+size*0.35, text,
				"fill", color, "text-anchor", "middle")
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</g>\n")

	s.legend(l)
	if len(l.notes) > 0 {
		b.WriteString(`<g class="notes">` + "\n")
		for i, n := range l.notes {
			s.text(l.legend.X, l.notesY+baseline(i), n, "fill", colorMutedText, "font-style", "italic")
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</g>\n</svg>\n")
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write SVG: %w", err)
	}
	return nil
}

// baseline returns the offset of line i's baseline from the top of a text
// block.
func baseline(i int) float64 {
	return float64(i)*lineHeight + lineHeight*0.5 + fontSize*0.35
}

// svgWriter writes SVG elements into b.
type svgWriter struct{ b *bytes.Buffer }

// markerColors are the colours of the arrowheads, one marker each.
func markerColors() []string { return []string{ColorSelects, ColorAllowed, ColorDenied} }

// markerFor returns the ID of the arrowhead marker of an edge colour.
func markerFor(color string) string {
	switch color {
	case ColorAllowed:
		return "arrow-allowed"
	case ColorDenied:
		return "arrow-denied"
	}
	return "arrow-selects"
}

// defs writes the arrowhead markers.
func (s *svgWriter) defs() {
	s.b.WriteString("<defs>\n")
	for _, c := range markerColors() {
		// The tip lies arrowPullback beyond the path's end, on the shape.
		fmt.Fprintf(s.b, `<marker id="%s" viewBox="0 0 10 10" refX="%s" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto">`,
			markerFor(c), num(10-arrowPullback))
		fmt.Fprintf(s.b, `<path d="M0,1 L10,5 L0,9 z" fill="%s"/></marker>`+"\n", c)
	}
	s.b.WriteString("</defs>\n")
}

// open writes "<name a="v" ..." without closing the tag.
func (s *svgWriter) open(name string, attrs ...string) {
	s.b.WriteString("<" + name)
	for i := 0; i+1 < len(attrs); i += 2 {
		s.b.WriteString(" " + attrs[i] + `="` + xmlEscape(attrs[i+1]) + `"`)
	}
}

// el writes a complete element with escaped text content.
func (s *svgWriter) el(name string, attrs []string, text string) {
	s.open(name, attrs...)
	s.b.WriteString(">" + xmlEscape(text) + "</" + name + ">\n")
}

// text writes one line of text with its baseline at x, y.
func (s *svgWriter) text(x, y float64, text string, attrs ...string) {
	s.el("text", append([]string{"x", num(x), "y", num(y)}, attrs...), text)
}

// rect writes r with rounded corners of the given radius.
func (s *svgWriter) rect(r rect, radius float64, attrs ...string) {
	s.open("rect", append([]string{"x", num(r.X), "y", num(r.Y), "width", num(r.W), "height", num(r.H),
		"rx", num(radius), "ry", num(radius)}, attrs...)...)
	s.b.WriteString("/>\n")
}

// edge writes one edge's curve with its tooltip.
func (s *svgWriter) edge(r route) {
	e := r.e
	class := "edge " + e.Kind.String()
	width, extra := "2", []string(nil)
	switch {
	case e.Kind == EdgeSelects:
		width, extra = "1.2", []string{"stroke-opacity", "0.75"}
	case e.Kind == EdgePolicy:
		width, extra = "1.3", []string{"stroke-dasharray", "6 4", "stroke-opacity", "0.8"}
	case e.Allowed:
		class += " allowed"
	default:
		class += " denied"
	}
	s.b.WriteString(`<g class="` + class + `">`)
	s.el("title", nil, e.From+" → "+e.To+": "+strings.ReplaceAll(e.Label, "\n", "; "))
	p := r.p
	d := fmt.Sprintf("M%s,%s C%s,%s %s,%s %s,%s", num(p[0].X), num(p[0].Y), num(p[1].X), num(p[1].Y),
		num(p[2].X), num(p[2].Y), num(p[3].X), num(p[3].Y))
	s.open("path", append([]string{"d", d, "stroke", e.Color, "stroke-width", width,
		"marker-end", "url(#" + markerFor(e.Color) + ")"}, extra...)...)
	s.b.WriteString("/>\n</g>\n")
}

// shape writes a pod, Service or address with its text.
func (s *svgWriter) shape(sh *shape) {
	fill, line, width, radius := "white", colorPodLine, "1.2", 6.0
	var extra []string
	class := "pod"
	switch sh.kind {
	case shapePod:
		if sh.shields > 0 {
			line, width = colorPolicyLine, "2"
		}
	case shapeService:
		class, fill, line, radius = "service", colorServiceFill, colorServiceLine, 12
	case shapeAddress:
		class, fill, line, radius = "address", colorAddressFill, colorAddressLine, min(sh.r.H/2, 16)
		switch sh.address {
		case AddressMissingPod:
			fill, line, extra = colorMissingFill, colorMissingLine, []string{"stroke-dasharray", "4 3"}
		case AddressPodGroup:
			class, fill, line, radius = "group", colorGroupFill, colorGroupLine, 6
		}
	}
	s.b.WriteString(`<g class="` + class + `">`)
	s.el("title", nil, sh.tooltip)
	if class == "group" {
		// A second outline behind it: a stack of pods.
		s.rect(rect{sh.r.X + 4, sh.r.Y - 4, sh.r.W, sh.r.H}, radius, "fill", fill, "stroke", line, "stroke-width", "1")
	}
	s.rect(sh.r, radius, append([]string{"fill", fill, "stroke", line, "stroke-width", width}, extra...)...)
	center := sh.kind != shapePod
	for i, text := range sh.lines {
		x := sh.r.X + padX
		attrs := []string{"fill", colorText}
		if i == 0 {
			attrs = append(attrs, "font-weight", "bold")
		} else {
			attrs[1] = colorMutedText
		}
		if i >= len(sh.lines)-sh.shields {
			s.shield(x, sh.r.Y+padY+float64(i)*lineHeight+1.5)
			x += shieldWidth
			text = strings.TrimPrefix(text, "policy: ")
			attrs[1] = colorPolicyLine
		}
		if center {
			x = sh.r.cx()
			attrs = append(attrs, "text-anchor", "middle")
		}
		s.text(x, sh.r.Y+padY+baseline(i), text, attrs...)
	}
	s.b.WriteString("</g>\n")
}

// shield draws the small shield that marks a policy line, top left at x, y.
func (s *svgWriter) shield(x, y float64) {
	d := fmt.Sprintf("M%s,%s L%s,%s L%s,%s L%s,%s Q%s,%s %s,%s Q%s,%s %s,%s Z",
		num(x), num(y+1.5), num(x+4.5), num(y), num(x+9), num(y+1.5), num(x+9), num(y+5.5),
		num(x+9), num(y+9.5), num(x+4.5), num(y+11), num(x), num(y+9.5), num(x), num(y+5.5))
	s.open("path", "d", d, "fill", colorPolicyLine)
	s.b.WriteString("/>\n")
}

// legend writes the legend box with a sample of every edge and shape.
func (s *svgWriter) legend(l *layout) {
	s.b.WriteString(`<g class="legend">` + "\n")
	s.rect(l.legend, 6, "fill", "#fcfcfd", "stroke", colorNodeLine)
	s.text(l.legend.X+12, l.legend.Y+18, "Legend", "font-weight", "bold")
	for _, it := range l.legendItems {
		x, y := it.at.X, it.at.Y
		mid := y + 7
		switch it.sample {
		case "selects", "policy", "allowed", "denied":
			color, width, extra := ColorAllowed, "2", []string(nil)
			switch it.sample {
			case "selects":
				color, width = ColorSelects, "1.2"
			case "policy":
				width, extra = "1.4", []string{"stroke-dasharray", "6 4"}
			case "denied":
				color = ColorDenied
			}
			s.open("path", append([]string{"d", fmt.Sprintf("M%s,%s L%s,%s", num(x), num(mid), num(x+36-arrowPullback), num(mid)),
				"stroke", color, "stroke-width", width, "fill", "none", "marker-end", "url(#" + markerFor(color) + ")"}, extra...)...)
			s.b.WriteString("/>\n")
		case "node":
			s.rect(rect{x, y, 36, 14}, 3, "fill", colorNodeFill, "stroke", colorNodeLine)
		case "pod":
			s.rect(rect{x, y, 36, 14}, 3, "fill", "white", "stroke", colorPodLine, "stroke-width", "1.2")
		case "policy-pod":
			s.rect(rect{x, y, 36, 14}, 3, "fill", "white", "stroke", colorPolicyLine, "stroke-width", "2")
			s.shield(x+13.5, y+1.5)
		case "service":
			s.rect(rect{x, y, 36, 14}, 6, "fill", colorServiceFill, "stroke", colorServiceLine, "stroke-width", "1.2")
		case "address":
			s.rect(rect{x, y, 36, 14}, 7, "fill", colorAddressFill, "stroke", colorAddressLine, "stroke-width", "1.2")
		case "group":
			s.rect(rect{x + 3, y - 3, 33, 14}, 3, "fill", colorGroupFill, "stroke", colorGroupLine, "stroke-width", "1")
			s.rect(rect{x, y, 33, 14}, 3, "fill", colorGroupFill, "stroke", colorGroupLine, "stroke-width", "1.2")
		case "missing":
			s.rect(rect{x, y, 36, 14}, 7, "fill", colorMissingFill, "stroke", colorMissingLine, "stroke-width", "1.2", "stroke-dasharray", "4 3")
		}
		s.text(x+42, mid+fontSize*0.35, it.text, "fill", colorText)
	}
	s.b.WriteString("</g>\n")
}

// num formats v with at most one decimal, the same way every time.
func num(v float64) string {
	v = math.Round(v*10) / 10
	if v == 0 {
		v = 0 // no "-0"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// xmlEscape escapes s for XML text and attribute values; characters XML
// cannot hold become U+FFFD.
func xmlEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '"':
			b.WriteString("&quot;")
		case r == '\'':
			b.WriteString("&apos;")
		case r == '\t' || r == '\n' || r == '\r':
			b.WriteRune(r)
		case r < 0x20 || r == utf8.RuneError || (r >= 0xD800 && r <= 0xDFFF) || r == 0xFFFE || r == 0xFFFF:
			b.WriteRune('\uFFFD')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
