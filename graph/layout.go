package graph

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// The SVG layout's measures, in pixels. Text is set in a monospace font so
// that its width can be estimated from its length without a font file.
const (
	fontSize       = 11.0
	charWidth      = 6.7 // of a monospace character at fontSize
	boldCharWidth  = 7.0
	lineHeight     = 14.0
	labelFontSize  = 10.0
	labelCharWidth = 6.1
	labelLine      = 12.5
	padX           = 8.0  // inside a shape, left and right of its text
	padY           = 5.0  // inside a shape, above and below its text
	shieldWidth    = 13.0 // the policy shield before a pod's policy line
	podGap         = 24.0 // between pods in a node box
	nodePad        = 14.0 // inside a node box, around its pods
	minColumnWidth = 210.0
	columnGap      = 280.0 // between node boxes: room for edges and their labels
	rowGap         = 100.0 // between the Service row, the node boxes and the address row
	shapeGap       = 26.0  // between shapes of one row
	stackGap       = 18.0  // between wrapped rows
	minRowWidth    = 1000.0
	margin         = 24.0
	arrowPullback  = 3.0 // how far a path ends before the shape; the marker reaches it
)

// rect is a rectangle on the canvas: top left X, Y, width W, height H.
type rect struct{ X, Y, W, H float64 }

// right, bottom, cx and cy are r's right and bottom edges and centre.
func (r rect) right() float64  { return r.X + r.W }
func (r rect) bottom() float64 { return r.Y + r.H }
func (r rect) cx() float64     { return r.X + r.W/2 }
func (r rect) cy() float64     { return r.Y + r.H/2 }

// grow returns r with d added on every side.
func (r rect) grow(d float64) rect { return rect{r.X - d, r.Y - d, r.W + 2*d, r.H + 2*d} }

// overlap returns the area r and o share.
func (r rect) overlap(o rect) float64 {
	w := min(r.right(), o.right()) - max(r.X, o.X)
	h := min(r.bottom(), o.bottom()) - max(r.Y, o.Y)
	if w <= 0 || h <= 0 {
		return 0
	}
	return w * h
}

// point is a point on the canvas, or a vector.
type point struct{ X, Y float64 }

// add, scale and lerpTo are vector arithmetic; lerpTo moves from p
// towards q by the fraction t.
func (p point) add(q point) point               { return point{p.X + q.X, p.Y + q.Y} }
func (p point) scale(k float64) point           { return point{p.X * k, p.Y * k} }
func (p point) lerpTo(q point, t float64) point { return p.add(q.add(p.scale(-1)).scale(t)) }

// side is the side of a shape where an edge leaves or arrives.
type side int

const (
	sideLeft side = iota
	sideRight
	sideTop
	sideBottom
)

// horizontal reports whether an edge at s leaves sideways.
func (s side) horizontal() bool { return s == sideLeft || s == sideRight }

// dir is the unit vector pointing out of the shape at s.
func (s side) dir() point {
	switch s {
	case sideLeft:
		return point{-1, 0}
	case sideRight:
		return point{1, 0}
	case sideTop:
		return point{0, -1}
	}
	return point{0, 1}
}

// shapeKind is what a shape stands for.
type shapeKind int

const (
	shapePod shapeKind = iota
	shapeService
	shapeAddress
)

// shape is a pod, Service or address placed on the canvas.
type shape struct {
	id      string
	kind    shapeKind
	r       rect
	lines   []string
	shields int // pods: how many of the last lines name policies
	address AddressKind
	col     int // pods: the node column; -1 for the others
	tooltip string
}

// nodeBox is a node's box and the title lines at its top.
type nodeBox struct {
	r      rect
	header []string
	empty  bool
}

// route is an edge's cubic Bézier curve and its label.
type route struct {
	e          *Edge
	p          [4]point
	label      rect
	labelLines []string
	labelScale float64 // of labelFontSize: policy labels are smaller than flow labels
}

// legendItem is one sample of the legend with its text.
type legendItem struct {
	sample string // an Edge kind/verdict or a shape name, see writeLegendSample
	text   string
	at     point // the sample's top left
}

// layout is a Graph placed on the canvas.
type layout struct {
	title, summary string
	titleY         float64
	nodes          []nodeBox
	shapes         []*shape
	byID           map[string]*shape
	routes         []route
	legend         rect
	legendItems    []legendItem
	notes          []string
	notesY         float64
	bounds         rect
}

// textWidth estimates the width of s set at fontSize (bold or not).
func textWidth(s string, bold bool) float64 {
	w := charWidth
	if bold {
		w = boldCharWidth
	}
	return float64(utf8.RuneCountInString(s)) * w
}

// maxLabelRunes is the width at which an edge label's lists wrap.
const maxLabelRunes = 36

// wrapLines breaks the lines longer than max runes after their commas.
func wrapLines(lines []string, max int) []string {
	var out []string
	for _, line := range lines {
		for utf8.RuneCountInString(line) > max {
			cut := -1
			for i := 0; i < len(line); i++ {
				if line[i] == ',' && utf8.RuneCountInString(line[:i+1]) <= max {
					cut = i
				}
			}
			if cut < 0 {
				break
			}
			out = append(out, line[:cut+1])
			line = strings.TrimLeft(line[cut+1:], " ")
		}
		out = append(out, line)
	}
	return out
}

// titleSize is the font size of the picture's title.
const titleSize = 14.0

// titleWidth estimates the width of the title, set bold at titleSize.
func titleWidth(s string) float64 { return textWidth(s, true) * titleSize / fontSize }

// labelWidth estimates the width of lines set at labelFontSize*scale.
func labelWidth(lines []string, scale float64) float64 {
	w := 0.0
	for _, l := range lines {
		w = max(w, float64(utf8.RuneCountInString(l))*labelCharWidth*scale)
	}
	return w
}

// shapeSize returns the size of a shape of lines whose first line is bold
// and whose last shields lines have a shield before them.
func shapeSize(lines []string, shields int) (w, h float64) {
	for i, l := range lines {
		lw := textWidth(l, i == 0)
		if i >= len(lines)-shields {
			lw += shieldWidth
		}
		w = max(w, lw)
	}
	return w + 2*padX, float64(len(lines))*lineHeight + 2*padY
}

// place lays g out: the node columns first (they fix the x positions that
// the Service and address rows follow), then the rows top to bottom, the
// edges, the legend and the notes.
func place(g *Graph) *layout {
	l := &layout{title: "podnet graph", summary: g.summary(), byID: map[string]*shape{}}

	// Node columns, at y 0 for now.
	x := 0.0
	for col, n := range g.Nodes {
		header := strings.Split(nodeLabel(n), "\n")
		// inner is the width of the pods; the box is nodePad wider on each
		// side, and its title, set at nodePad, must fit with padX to spare.
		inner := minColumnWidth - 2*nodePad
		for i, h := range header {
			inner = max(inner, nodePad+textWidth(h, i == 0)+padX-2*nodePad)
		}
		var pods []*shape
		for _, p := range n.Pods {
			lines := podLines(p)
			s := &shape{id: p.ID, kind: shapePod, lines: lines, shields: len(p.Policies), col: col, tooltip: p.ID}
			w, h := shapeSize(lines, s.shields)
			s.r = rect{W: w, H: h}
			inner = max(inner, w)
			pods = append(pods, s)
		}
		headerH := float64(len(header))*lineHeight + 2*padY + 4
		y := headerH
		for _, s := range pods {
			s.r.X, s.r.Y, s.r.W = x+nodePad, y, inner
			y += s.r.H + podGap
			l.add(s)
		}
		if len(pods) == 0 {
			y += lineHeight + podGap
		}
		l.nodes = append(l.nodes, nodeBox{
			r:      rect{X: x, Y: 0, W: inner + 2*nodePad, H: y - podGap + nodePad},
			header: header,
			empty:  len(pods) == 0,
		})
		x += inner + 2*nodePad + columnGap
	}
	nodesLeft, nodesRight := 0.0, max(x-columnGap, 0)
	nodesH := 0.0
	for _, n := range l.nodes {
		nodesH = max(nodesH, n.r.H)
	}
	for i := range l.nodes {
		l.nodes[i].r.H = nodesH
	}

	// The Service and address rows, each shape near the pods it is linked to.
	near := l.podNeighbours(g)
	var svcs, addrs []*shape
	for _, s := range g.Services {
		sh := &shape{id: s.ID, kind: shapeService, lines: serviceLines(s), col: -1, tooltip: s.ID}
		sh.r.W, sh.r.H = shapeSize(sh.lines, 0)
		svcs = append(svcs, sh)
	}
	for _, a := range g.Addresses {
		sh := &shape{id: a.ID, kind: shapeAddress, lines: strings.Split(a.Label, "\n"), address: a.Kind, col: -1,
			tooltip: addressTooltip(a)}
		sh.r.W, sh.r.H = shapeSize(sh.lines, 0)
		sh.r.W += 8 // the rounded ends
		addrs = append(addrs, sh)
	}
	rowWidth := max(nodesRight-nodesLeft, minRowWidth)
	rowLeft := (nodesLeft+nodesRight)/2 - rowWidth/2
	svcRows := arrangeRow(svcs, near, rowLeft, rowLeft+rowWidth)
	addrRows := arrangeRow(addrs, near, rowLeft, rowLeft+rowWidth)

	// Top to bottom.
	l.titleY = 0
	y := 34.0
	y = stackRows(svcRows, y)
	if len(svcRows) > 0 {
		y += rowGap - stackGap
	} else {
		y += 10
	}
	for i := range l.nodes {
		l.nodes[i].r.Y = y
	}
	for _, s := range l.shapes {
		s.r.Y += y
	}
	y += nodesH
	if len(addrRows) > 0 {
		y += rowGap
		y = stackRows(addrRows, y) - stackGap
	}
	for _, s := range svcs {
		l.add(s)
	}
	for _, s := range addrs {
		l.add(s)
	}

	l.routeEdges(g)
	l.placeLabels()

	// Legend and notes below everything else.
	content := l.contentBounds()
	l.placeLegend(content.X, max(y, content.bottom())+36, max(content.W, 560))
	l.notes = g.Notes
	l.notesY = l.legend.bottom() + 20
	l.bounds = l.contentBounds()
	return l
}

// add puts s on the canvas.
func (l *layout) add(s *shape) {
	l.shapes = append(l.shapes, s)
	l.byID[s.id] = s
}

// podNeighbours returns, for every shape that is no pod, the mean x of the
// centres of the pods its edges link it to.
func (l *layout) podNeighbours(g *Graph) map[string]float64 {
	sum, n := map[string]float64{}, map[string]int{}
	for _, e := range g.Edges {
		for _, ends := range [][2]string{{e.From, e.To}, {e.To, e.From}} {
			if _, isPod := l.byID[ends[0]]; isPod {
				continue
			}
			if p, ok := l.byID[ends[1]]; ok {
				sum[ends[0]] += p.r.cx()
				n[ends[0]]++
			}
		}
	}
	out := map[string]float64{}
	for id, s := range sum {
		out[id] = s / float64(n[id])
	}
	return out
}

// arrangeRow sets the x of shapes and splits them into rows within
// [left, right]: one row when they fit, each shape as near as it can be to
// its desired x (those without one at the end, in their order); otherwise
// rows filled in order of desired x and centred.
func arrangeRow(shapes []*shape, desired map[string]float64, left, right float64) [][]*shape {
	if len(shapes) == 0 {
		return nil
	}
	want := func(s *shape) float64 {
		if x, ok := desired[s.id]; ok {
			return x
		}
		return math.Inf(1)
	}
	order := slices.Clone(shapes)
	slices.SortStableFunc(order, func(a, b *shape) int { return cmp.Compare(want(a), want(b)) })
	total := -shapeGap
	for _, s := range order {
		total += s.r.W + shapeGap
	}
	if total <= right-left {
		prev := left - shapeGap
		for _, s := range order {
			x := prev + shapeGap
			if w := want(s); !math.IsInf(w, 1) {
				x = max(x, w-s.r.W/2)
			}
			s.r.X = x
			prev = x + s.r.W
		}
		limit := right
		for i := len(order) - 1; i >= 0; i-- {
			s := order[i]
			s.r.X = min(s.r.X, limit-s.r.W)
			limit = s.r.X - shapeGap
		}
		return [][]*shape{order}
	}
	var rows [][]*shape
	var row []*shape
	width := 0.0
	flush := func() {
		x := (left+right)/2 - width/2
		for _, s := range row {
			s.r.X = x
			x += s.r.W + shapeGap
		}
		rows = append(rows, row)
		row, width = nil, 0
	}
	for _, s := range order {
		w := s.r.W
		if len(row) > 0 {
			w += shapeGap
		}
		if len(row) > 0 && width+w > right-left {
			flush()
			w = s.r.W
		}
		row = append(row, s)
		width += w
	}
	flush()
	return rows
}

// stackRows sets the y of the rows' shapes from y down and returns the y
// below the last row plus stackGap.
func stackRows(rows [][]*shape, y float64) float64 {
	for _, row := range rows {
		h := 0.0
		for _, s := range row {
			s.r.Y = y
			h = max(h, s.r.H)
		}
		y += h + stackGap
	}
	return y
}

// sides chooses where an edge from a to b leaves a and arrives at b. Pods
// in different columns face each other; pods in one column link on their
// right side going down and on their left going up, so that the curve
// bends out of the column instead of crossing the pods between; Services
// link from their bottom, addresses from their top.
func sides(a, b *shape) (side, side) {
	rowSide := func(s *shape) side {
		if s.kind == shapeService {
			return sideBottom
		}
		return sideTop
	}
	toward := func(p, o *shape) side {
		if o.r.cx() < p.r.cx() {
			return sideLeft
		}
		return sideRight
	}
	switch {
	case a.kind == shapePod && b.kind == shapePod:
		switch {
		case a.col == b.col && b.r.cy() >= a.r.cy():
			return sideRight, sideRight
		case a.col == b.col:
			return sideLeft, sideLeft
		case b.col > a.col:
			return sideRight, sideLeft
		}
		return sideLeft, sideRight
	case a.kind == shapePod:
		return toward(a, b), rowSide(b)
	case b.kind == shapePod:
		return rowSide(a), toward(b, a)
	}
	return rowSide(a), rowSide(b)
}

// reach is how far the control point of an end at side s lies from it,
// given the end's partner at side o and the ends' distance dx, dy.
func reach(s, o side, dx, dy float64) float64 {
	switch {
	case s.horizontal() && o.horizontal() && s == o:
		return 34 + dy*0.18 // a loop out of the column
	case s.horizontal() && o.horizontal():
		return max(dx*0.45, 30)
	case s.horizontal():
		return min(max(dx*0.5, 50), 110)
	case !o.horizontal() && s == o:
		return 40 + dx*0.1
	case !o.horizontal():
		return max(dy*0.45, 30)
	}
	return min(max(dy*0.5, 40), 140)
}

// end is one end of an edge, waiting for its place on its side.
type end struct {
	route int
	role  int // 0: the edge leaves here, 1: it arrives
	shape *shape
	side  side
	other float64 // the partner's centre along the side, to sort by
}

// routeEdges draws every edge whose ends are on the canvas as a curve,
// spreading the ends that share a side along it in the order of their
// partners, so that edges do not cross where they start.
func (l *layout) routeEdges(g *Graph) {
	groups := map[[2]any][]*end{}
	var keys [][2]any
	var ends [][2]*end
	for i := range g.Edges {
		e := &g.Edges[i]
		a, b := l.byID[e.From], l.byID[e.To]
		if a == nil || b == nil {
			continue
		}
		sa, sb := sides(a, b)
		idx := len(l.routes)
		l.routes = append(l.routes, route{e: e})
		ea := &end{route: idx, role: 0, shape: a, side: sa, other: along(sa, b.r)}
		eb := &end{route: idx, role: 1, shape: b, side: sb, other: along(sb, a.r)}
		for _, x := range []*end{ea, eb} {
			k := [2]any{x.shape.id, x.side}
			if _, ok := groups[k]; !ok {
				keys = append(keys, k)
			}
			groups[k] = append(groups[k], x)
		}
		ends = append(ends, [2]*end{ea, eb})
	}
	anchors := make([][2]point, len(l.routes))
	for _, k := range keys {
		grp := groups[k]
		slices.SortStableFunc(grp, func(a, b *end) int {
			return cmp.Or(cmp.Compare(a.other, b.other), cmp.Compare(a.route, b.route), cmp.Compare(a.role, b.role))
		})
		for i, x := range grp {
			f := float64(i+1) / float64(len(grp)+1)
			anchors[x.route][x.role] = anchor(x.shape, x.side, f)
		}
	}
	for i, pair := range ends {
		p0, p3 := anchors[i][0], anchors[i][1]
		s0, s3 := pair[0].side, pair[1].side
		dx, dy := math.Abs(p3.X-p0.X), math.Abs(p3.Y-p0.Y)
		p1 := p0.add(s0.dir().scale(reach(s0, s3, dx, dy)))
		p2 := p3.add(s3.dir().scale(reach(s3, s0, dx, dy)))
		p3 = p3.add(s3.dir().scale(arrowPullback))
		l.routes[i].p = [4]point{p0, p1, p2, p3}
	}
}

// along returns r's centre along the axis of side s.
func along(s side, r rect) float64 {
	if s.horizontal() {
		return r.cy()
	}
	return r.cx()
}

// anchor returns the point at fraction f along side s of shape sh, kept
// away from the corners.
func anchor(sh *shape, s side, f float64) point {
	r := sh.r
	lo, span := 0.2, 0.6
	if !s.horizontal() {
		lo, span = 0.12, 0.76
	}
	f = lo + span*f
	switch s {
	case sideLeft:
		return point{r.X, r.Y + r.H*f}
	case sideRight:
		return point{r.right(), r.Y + r.H*f}
	case sideTop:
		return point{r.X + r.W*f, r.Y}
	}
	return point{r.X + r.W*f, r.bottom()}
}

// bezier returns the point at t of the cubic curve p.
func bezier(p [4]point, t float64) point {
	a, b, c := p[0].lerpTo(p[1], t), p[1].lerpTo(p[2], t), p[2].lerpTo(p[3], t)
	d, e := a.lerpTo(b, t), b.lerpTo(c, t)
	return d.lerpTo(e, t)
}

// placeLabels puts every label of a flow or policy edge on or beside its
// curve where it covers the least of the shapes and of the labels placed
// before it, preferring the curve's middle: denied flows first, then
// allowed flows, then policies. Selects edges have their label only as a
// tooltip.
func (l *layout) placeLabels() {
	var obstacles []rect
	for _, s := range l.shapes {
		obstacles = append(obstacles, s.r.grow(3))
	}
	for _, n := range l.nodes {
		obstacles = append(obstacles, rect{n.r.X, n.r.Y, n.r.W, float64(len(n.header))*lineHeight + 2*padY})
	}
	rank := func(r route) int {
		switch {
		case r.e.Kind == EdgeFlow && !r.e.Allowed:
			return 0
		case r.e.Kind == EdgeFlow:
			return 1
		}
		return 2
	}
	order := make([]int, 0, len(l.routes))
	for i, r := range l.routes {
		if r.e.Kind != EdgeSelects && r.e.Label != "" {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rank(l.routes[a]), rank(l.routes[b])) })
	// The points of a curve tried for a label, from its middle outwards.
	positions := []float64{0.5, 0.45, 0.55, 0.4, 0.6, 0.35, 0.65, 0.3, 0.7, 0.25, 0.75, 0.2, 0.8, 0.15, 0.85, 0.1, 0.9}
	for _, i := range order {
		r := &l.routes[i]
		r.labelLines = wrapLines(strings.Split(r.e.Label, "\n"), maxLabelRunes)
		r.labelScale = 1
		if r.e.Kind == EdgePolicy {
			r.labelScale = 0.9
		}
		w := labelWidth(r.labelLines, r.labelScale) + 6
		h := float64(len(r.labelLines))*labelLine*r.labelScale + 3
		// Beside the curve: centred on it, touching it from above, below,
		// left or right, or a little further above or below.
		offsets := []point{{0, 0}, {0, -(h/2 + 2)}, {0, h/2 + 2}, {-(w/2 + 2), 0}, {w/2 + 2, 0}, {0, -(h + 4)}, {0, h + 4}}
		best, bestCost := rect{}, math.Inf(1)
		for _, t := range positions {
			c := bezier(r.p, t)
			for _, d := range offsets {
				cand := rect{c.X + d.X - w/2, c.Y + d.Y - h/2, w, h}
				// Covering text costs far more than moving the label
				// away from the curve's middle.
				cost := math.Abs(t-0.5)*40 + (math.Abs(d.X)+math.Abs(d.Y))*0.5
				for _, o := range obstacles {
					cost += cand.overlap(o) * 4
				}
				if cost < bestCost {
					best, bestCost = cand, cost
				}
			}
		}
		r.label = best
		obstacles = append(obstacles, best.grow(2))
	}
}

// placeLegend lays the legend's samples out in rows at (x, y), at most
// width wide.
func (l *layout) placeLegend(x, y, width float64) {
	items := []legendItem{
		{sample: "selects", text: "Service selects pod"},
		{sample: "policy", text: "allowed by NetworkPolicy (ingress rule)"},
		{sample: "allowed", text: "flow allowed"},
		{sample: "denied", text: "flow denied"},
		{sample: "node", text: "node (pod CIDR)"},
		{sample: "pod", text: "pod"},
		{sample: "policy-pod", text: "pod selected by policies (shield)"},
		{sample: "service", text: "Service"},
		{sample: "address", text: "address, ipBlock"},
		{sample: "group", text: "group of pods (policy peers or selected pods)"},
		{sample: "missing", text: "pod not drawn"},
	}
	const sampleW, itemGap, rowH = 36.0, 22.0, 22.0
	top := y + 30
	cx, cy := x+12, top
	maxRight := x
	for i := range items {
		w := sampleW + 6 + textWidth(items[i].text, false)
		if cx > x+12 && cx+w > x+width-12 {
			cx, cy = x+12, cy+rowH
		}
		items[i].at = point{cx, cy}
		cx += w + itemGap
		maxRight = max(maxRight, cx-itemGap)
	}
	l.legendItems = items
	l.legend = rect{x, y, max(maxRight-x+12, 200), cy + rowH + 6 - y}
}

// contentBounds returns the rectangle that holds everything placed so far.
func (l *layout) contentBounds() rect {
	minX, minY := math.Inf(1), math.Inf(1)
	maxX, maxY := math.Inf(-1), math.Inf(-1)
	addRect := func(r rect) {
		if r.W == 0 && r.H == 0 {
			return
		}
		minX, minY = min(minX, r.X), min(minY, r.Y)
		maxX, maxY = max(maxX, r.right()), max(maxY, r.bottom())
	}
	addRect(rect{0, l.titleY, titleWidth(l.title) + 12 + textWidth(l.summary, false), 20})
	for _, n := range l.nodes {
		addRect(n.r)
	}
	for _, s := range l.shapes {
		addRect(s.r)
	}
	for _, r := range l.routes {
		for _, p := range r.p {
			addRect(rect{p.X - 1, p.Y - 1, 2, 2})
		}
		addRect(r.label)
	}
	addRect(l.legend)
	for i, n := range l.notes {
		addRect(rect{l.legend.X, l.notesY + float64(i)*lineHeight, textWidth(n, false), lineHeight})
	}
	if math.IsInf(minX, 1) {
		return rect{}
	}
	return rect{minX, minY, maxX - minX, maxY - minY}
}
