package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxStreamSize is the size of the largest stream Decode reads.
const MaxStreamSize = 16 << 20

// Document is one object of a lab file.
type Document struct {
	// Source names the stream, as given to Decode: a file name, or "-".
	Source string
	// Index is the 1-based position of the document among the stream's
	// non-empty documents.
	Index int
	// Line is the 1-based line where the document's content starts.
	Line int
	// Item is the 1-based position of the object in the items of a List
	// document; 0 for a document that is not a List.
	Item int
	// Object is the decoded, defaulted and validated object: a *Lab,
	// *corev1.Namespace, *corev1.Pod, *appsv1.Deployment, *corev1.Service,
	// *discoveryv1.EndpointSlice, *networkingv1.NetworkPolicy,
	// *networkingv1.Ingress, *networkingv1.IngressClass or *corev1.Secret.
	Object runtime.Object
}

// Position returns where the document is, as "lab.yaml: document 2 (line
// 7)", with ", item 3" for an item of a List.
func (d Document) Position() string {
	return formatPosition(d.Source, d.Index, d.Line, d.Item)
}

func formatPosition(source string, index, line, item int) string {
	var parts []string
	if source != "" {
		parts = append(parts, source)
	}
	if index > 0 {
		parts = append(parts, fmt.Sprintf("document %d (line %d)", index, line))
	}
	s := strings.Join(parts, ": ")
	if item > 0 {
		s += fmt.Sprintf(", item %d", item)
	}
	return s
}

// Problem is one thing wrong with a lab file.
type Problem struct {
	Source string // the stream's name
	Index  int    // 1-based document; 0 if the problem is not in one document
	Line   int    // 1-based line where the document starts
	Item   int    // 1-based item of a List document; 0 otherwise
	// Object is the object at fault as kubectl names it ("pod/web-1"),
	// or "" if the document's kind is not known.
	Object string
	// Field is the path of the field at fault ("spec.containers[0].name"),
	// or "" if the problem is not with one field.
	Field string
	// Err says what is wrong. For a problem with one field it is usually
	// a *field.Error, whose message starts with the field path.
	Err error
}

// Position returns where the problem is, as Document.Position does.
func (p Problem) Position() string {
	return formatPosition(p.Source, p.Index, p.Line, p.Item)
}

// Error returns the problem on one line: position, object, then what is
// wrong.
func (p Problem) Error() string {
	var parts []string
	for _, s := range []string{p.Position(), p.Object} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if p.Err != nil {
		parts = append(parts, p.Err.Error())
	}
	return strings.Join(parts, ": ")
}

// Unwrap returns what is wrong.
func (p Problem) Unwrap() error { return p.Err }

// DecodeError is every problem Decode found in a stream.
type DecodeError struct {
	Problems []Problem
}

// Error returns one line per problem.
func (e *DecodeError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so that errors.As finds the *field.Error of
// one of them.
func (e *DecodeError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// decodable are the kinds a lab file holds.
var decodable = []struct {
	apiVersion string
	kind       Kind
	new        func() runtime.Object
}{
	{LabAPIVersion, KindLab, func() runtime.Object { return new(Lab) }},
	{"v1", KindNamespace, func() runtime.Object { return new(corev1.Namespace) }},
	{"v1", KindPod, func() runtime.Object { return new(corev1.Pod) }},
	{"apps/v1", KindDeployment, func() runtime.Object { return new(appsv1.Deployment) }},
	{"v1", KindService, func() runtime.Object { return new(corev1.Service) }},
	{"discovery.k8s.io/v1", KindEndpointSlice, func() runtime.Object { return new(discoveryv1.EndpointSlice) }},
	{"networking.k8s.io/v1", KindNetworkPolicy, func() runtime.Object { return new(networkingv1.NetworkPolicy) }},
	{"networking.k8s.io/v1", KindIngress, func() runtime.Object { return new(networkingv1.Ingress) }},
	{"networking.k8s.io/v1", KindIngressClass, func() runtime.Object { return new(networkingv1.IngressClass) }},
	{"v1", KindSecret, func() runtime.Object { return new(corev1.Secret) }},
}

const decodableKinds = "a lab file holds Lab, Namespace, Pod, Deployment, Service, EndpointSlice, NetworkPolicy, Ingress, IngressClass and Secret objects"

// Decode reads a lab file: a stream of YAML documents separated by lines
// starting with "---", or of JSON objects. It decodes each document as
// kubectl does (so YAML 1.1 rules hold) but strictly, applies defaults and
// validates every object. Empty documents are skipped; a v1 List document
// stands for its items.
//
// If anything is wrong, Decode returns no documents and a *DecodeError
// listing every problem of the stream: each names the document, the object
// and the field at fault. Unknown kinds and fields, duplicate fields, values
// of the wrong type, invalid values, an object defined twice, and a second
// Lab document are problems. Whether a pod's node or namespace exists is
// left to the caller. An error reading r is returned as it is.
func Decode(r io.Reader, source string) ([]Document, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxStreamSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", source, err)
	}
	if len(data) > MaxStreamSize {
		return nil, &DecodeError{Problems: []Problem{{
			Source: source,
			Err:    fmt.Errorf("too large: a lab file may have at most %d MiB", MaxStreamSize>>20),
		}}}
	}
	raws := splitStream(data)
	// Documents decode independently, in parallel for a large stream; then
	// their results are taken in stream order, which is when objects
	// defined twice are found.
	results := make([][]decoded, len(raws))
	workers := min(goruntime.GOMAXPROCS(0), len(raws)/minDocsPerWorker)
	if workers <= 1 {
		d := newDecoder(source)
		for i, raw := range raws {
			results[i] = d.document(raw)
		}
	} else {
		var wg sync.WaitGroup
		var next atomic.Int64
		for range workers {
			wg.Go(func() {
				d := newDecoder(source)
				for i := int(next.Add(1) - 1); i < len(raws); i = int(next.Add(1) - 1) {
					results[i] = d.document(raws[i])
				}
			})
		}
		wg.Wait()
	}
	m := &merger{seen: make(map[objectKey]Document)}
	for _, r := range results {
		m.take(r)
	}
	if len(m.problems) > 0 {
		return nil, &DecodeError{Problems: m.problems}
	}
	return m.docs, nil
}

// minDocsPerWorker is the fewest documents worth a goroutine of their own.
const minDocsPerWorker = 64

// rawDoc is one document of a stream, not yet decoded.
type rawDoc struct {
	index     int    // 1-based among the non-empty documents
	line      int    // 1-based line of the first content
	firstLine int    // 1-based line of text[0]
	text      []byte // the document
	json      bool   // text is JSON
}

// splitStream splits data into its non-empty documents. A stream whose first
// character is "{" and that is a sequence of JSON values is split into those
// values; any other is split into YAML documents at lines that start with
// "---" followed by nothing but a comment, as kubectl splits it.
func splitStream(data []byte) []rawDoc {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		if docs, ok := splitJSON(data); ok {
			return docs
		}
	}
	var (
		docs      []rawDoc
		start     int // offset of the current document
		startLine = 1
		line      = 1
	)
	flush := func(end int) {
		text := data[start:end]
		if first := firstContentLine(text); first > 0 {
			docs = append(docs, rawDoc{index: len(docs) + 1, line: startLine + first - 1, firstLine: startLine, text: text})
		}
	}
	for off := 0; off < len(data); line++ {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += off + 1
		}
		if isSeparator(data[off:end]) {
			flush(off)
			start, startLine = end, line+1
		}
		off = end
	}
	flush(len(data))
	return docs
}

// isSeparator reports whether line separates YAML documents.
func isSeparator(line []byte) bool {
	rest, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("---"))
	if !ok {
		return false
	}
	rest = bytes.TrimSpace(rest)
	return len(rest) == 0 || rest[0] == '#'
}

// firstContentLine returns the 1-based line of text that holds its first
// content (not blank, a comment, a directive or a document end marker), or
// 0 if there is none.
func firstContentLine(text []byte) int {
	for i, l := range bytes.Split(text, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) == 0 || l[0] == '#' || l[0] == '%' || bytes.Equal(l, []byte("...")) {
			continue
		}
		return i + 1
	}
	return 0
}

// splitJSON splits a stream of JSON values, or reports that it is not one.
func splitJSON(data []byte) ([]rawDoc, bool) {
	var docs []rawDoc
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return docs, true
		}
		if err != nil {
			return nil, false
		}
		start := int(dec.InputOffset()) - len(raw)
		line := 1 + bytes.Count(data[:start], []byte("\n"))
		docs = append(docs, rawDoc{index: len(docs) + 1, line: line, firstLine: line, text: raw, json: true})
	}
}

// objectKey identifies an object in a stream.
type objectKey struct {
	kind            Kind
	namespace, name string
}

// decoded is what decoding a document found, in order: a problem, or an
// object (whose problems come before it).
type decoded struct {
	problem *Problem
	doc     *Document
}

// decoder decodes documents one at a time. It is not safe for concurrent
// use; several decoders may decode the documents of one stream.
type decoder struct {
	source string
	out    []decoded // of the document being decoded
	// fields caches the JSON fields of Go types for the type checker.
	fields map[reflect.Type]map[string]reflect.Type
}

func newDecoder(source string) *decoder {
	return &decoder{source: source, fields: make(map[reflect.Type]map[string]reflect.Type)}
}

// merger collects the decoded documents of a stream, in order, and finds
// objects defined twice.
type merger struct {
	docs     []Document
	problems []Problem
	seen     map[objectKey]Document // the first document of each object
}

func (m *merger) take(r []decoded) {
	for _, e := range r {
		if e.problem != nil {
			m.problems = append(m.problems, *e.problem)
			continue
		}
		m.docs = append(m.docs, *e.doc)
		m.checkDuplicate(*e.doc)
	}
}

// problem records a problem of the document at raw.
func (d *decoder) problem(raw rawDoc, item int, object, path string, err error) {
	d.out = append(d.out, decoded{problem: &Problem{
		Source: d.source, Index: raw.index, Line: raw.line, Item: item,
		Object: object, Field: path, Err: err,
	}})
}

// fieldProblems records field errors.
func (d *decoder) fieldProblems(raw rawDoc, item int, object string, errs field.ErrorList) {
	for _, e := range errs {
		d.problem(raw, item, object, e.Field, e)
	}
}

// document decodes one document of the stream.
func (d *decoder) document(raw rawDoc) []decoded {
	d.out = nil
	d.decode(raw)
	return d.out
}

func (d *decoder) decode(raw rawDoc) {
	data := raw.text
	var yamlText []byte // nil for JSON
	var dups []error    // duplicate fields in YAML
	if !raw.json && !json.Valid(raw.text) {
		yamlText = raw.text
		j, err := yaml.YAMLToJSONStrict(raw.text)
		if err != nil {
			var syntax error
			dups, syntax = yamlErrors(err, raw.firstLine)
			if syntax == nil {
				// Only duplicate fields: decode the rest as kubectl would.
				j, syntax = yaml.YAMLToJSON(raw.text)
			}
			if syntax != nil {
				d.problem(raw, 0, "", "", yamlError(syntax, raw.firstLine))
				return
			}
		}
		data = j
	}

	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		d.problem(raw, 0, "", "", fmt.Errorf("invalid JSON: %w", err))
		return
	}
	if dec.More() {
		d.problem(raw, 0, "", "", errors.New("invalid JSON: more than one value in a document"))
		return
	}
	m, ok := v.(map[string]any)
	switch {
	case v == nil:
		return // an empty document, such as "null" or "~"
	case !ok:
		d.problem(raw, 0, "", "", fmt.Errorf("a document must be a mapping with apiVersion and kind, not %s", jsonKind(v)))
		return
	}
	if m["apiVersion"] == "v1" && m["kind"] == "List" {
		d.list(raw, m, yamlText, dups)
		return
	}
	d.object(raw, 0, m, data, yamlText, dups)
}

// list decodes the items of a v1 List document.
func (d *decoder) list(raw rawDoc, m map[string]any, yamlText []byte, dups []error) {
	for _, dup := range dups {
		d.problem(raw, 0, "list", "", dup)
	}
	for _, k := range sortedKeys(m) {
		switch k {
		case "apiVersion", "kind", "metadata", "items":
		default:
			d.problem(raw, 0, "list", k, fmt.Errorf("unknown field %q", k))
		}
	}
	items, ok := m["items"].([]any)
	if !ok && m["items"] != nil {
		d.problem(raw, 0, "list", "items", field.TypeInvalid(field.NewPath("items"), field.OmitValueType{}, "must be a list"))
		return
	}
	for i, it := range items {
		om, ok := it.(map[string]any)
		if !ok {
			d.problem(raw, i+1, "", "", fmt.Errorf("an item must be a mapping with apiVersion and kind, not %s", jsonKind(it)))
			continue
		}
		if om["kind"] == "List" {
			d.problem(raw, i+1, "", "kind", field.Invalid(field.NewPath("kind"), "List", "a List may not hold another List"))
			continue
		}
		d.object(raw, i+1, om, nil, yamlText, nil)
	}
}

// object decodes, defaults and validates one object. exact is the JSON of
// the object if m was decoded from it alone; nil if m is part of a List.
func (d *decoder) object(raw rawDoc, item int, m map[string]any, exact, yamlText []byte, dups []error) {
	tc := &typeChecker{yamlText: yamlText, fields: d.fields}
	apiVersion, kind := "", ""
	for _, f := range []struct {
		name string
		v    any
		out  *string
	}{{"apiVersion", m["apiVersion"], &apiVersion}, {"kind", m["kind"], &kind}} {
		if f.v == nil {
			continue
		}
		if _, ok := tc.check(f.v, reflect.TypeFor[string](), field.NewPath(f.name)); ok {
			*f.out = f.v.(string)
		}
	}
	obj, kerr := newObject(apiVersion, kind)
	if kerr != nil || len(tc.errs) > 0 {
		for _, dup := range dups {
			d.problem(raw, item, "", "", dup)
		}
		d.fieldProblems(raw, item, "", tc.errs)
		if kerr != nil {
			d.problem(raw, item, "", kerr.Field, kerr)
		}
		return
	}

	cleaned, _ := tc.check(m, reflect.TypeOf(obj).Elem(), nil)
	if len(tc.errs) > 0 || exact == nil {
		var err error
		if exact, err = json.Marshal(cleaned); err != nil {
			d.problem(raw, item, "", "", fmt.Errorf("re-encode: %w", err))
			return
		}
	}
	strict, err := sigsjson.UnmarshalStrict(exact, obj)
	name := ObjectName(obj)
	if err != nil {
		// The type checker should have caught this; report it as it is.
		d.problem(raw, item, name, "", err)
		return
	}
	for _, dup := range dups {
		d.problem(raw, item, name, "", dup)
	}
	d.fieldProblems(raw, item, name, tc.errs)
	for _, se := range strict {
		path := ""
		var fe sigsjson.FieldError
		if errors.As(se, &fe) {
			path = fe.FieldPath()
		}
		if yamlText != nil && (strings.HasSuffix(path, ".true") || strings.HasSuffix(path, ".false") || path == "true" || path == "false") {
			se = fmt.Errorf("%w (YAML 1.1 reads an unquoted key y, yes, on, n, no or off as a boolean: quote the key)", se)
		}
		d.problem(raw, item, name, path, se)
	}

	SetDefaults(obj)
	bad := make([]string, len(tc.errs))
	for i, e := range tc.errs {
		bad[i] = e.Field
	}
	for _, e := range Validate(obj) {
		// A value of the wrong type was dropped: what validation says of it, or that
		// the field holding it lacks it, follows from the problem already reported.
		if !underAny(e.Field, bad) && !(e.Type == field.ErrorTypeRequired && holdsAny(e.Field, bad)) {
			d.problem(raw, item, name, e.Field, e)
		}
	}

	doc := Document{Source: d.source, Index: raw.index, Line: raw.line, Item: item, Object: obj}
	d.out = append(d.out, decoded{doc: &doc})
}

// checkDuplicate records doc's object and reports it if the stream defined
// it before.
func (m *merger) checkDuplicate(doc Document) {
	k, _ := KindOf(doc.Object)
	om, err := meta.Accessor(doc.Object)
	if err != nil || om.GetName() == "" {
		return
	}
	key := objectKey{kind: k, namespace: om.GetNamespace(), name: om.GetName()}
	if k == KindLab {
		key = objectKey{kind: KindLab} // one Lab per stream, whatever its name
	}
	first, dup := m.seen[key]
	if !dup {
		m.seen[key] = doc
		return
	}
	dupErr := field.Duplicate(field.NewPath("metadata", "name"), key.name)
	switch {
	case k == KindLab:
		dupErr = field.Forbidden(field.NewPath("kind"),
			fmt.Sprintf("a lab file may hold only one Lab: %s is at %s", ObjectName(first.Object), first.Position()))
	case k.Namespaced():
		dupErr.Detail = fmt.Sprintf("%s is defined twice in namespace %s: also at %s", ObjectName(doc.Object), key.namespace, first.Position())
	default:
		dupErr.Detail = fmt.Sprintf("%s is defined twice: also at %s", ObjectName(doc.Object), first.Position())
	}
	m.problems = append(m.problems, Problem{
		Source: doc.Source, Index: doc.Index, Line: doc.Line, Item: doc.Item,
		Object: ObjectName(doc.Object), Field: dupErr.Field, Err: dupErr,
	})
}

// newObject returns a new object of the kind a document names.
func newObject(apiVersion, kind string) (runtime.Object, *field.Error) {
	kindPath, versionPath := field.NewPath("kind"), field.NewPath("apiVersion")
	if kind == "" {
		return nil, field.Required(kindPath, decodableKinds)
	}
	for _, dk := range decodable {
		if kind != string(dk.kind) {
			continue
		}
		switch apiVersion {
		case dk.apiVersion:
			return dk.new(), nil
		case "":
			return nil, field.Required(versionPath, fmt.Sprintf("%s objects have apiVersion %s", kind, dk.apiVersion))
		default:
			return nil, field.NotSupported(versionPath, apiVersion, []string{dk.apiVersion})
		}
	}
	for _, dk := range decodable {
		if strings.EqualFold(kind, string(dk.kind)) {
			return nil, field.Invalid(kindPath, kind, fmt.Sprintf("kinds are case-sensitive: did you mean %s?", dk.kind))
		}
	}
	if _, known := lookupKind(Kind(kind)); known || kind == "List" {
		return nil, field.Invalid(kindPath, kind, fmt.Sprintf("podnet does not take %s objects from lab files: %s", kind, decodableKinds))
	}
	return nil, field.Invalid(kindPath, kind, "unknown kind: "+decodableKinds)
}

// underAny reports whether path is one of prefixes or inside one of them.
func underAny(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

// holdsAny reports whether one of paths is inside path.
func holdsAny(path string, paths []string) bool {
	for _, p := range paths {
		if strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[") {
			return true
		}
	}
	return false
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	default:
		return "a mapping"
	}
}

var (
	// yamlLineError is a go.yaml.in/yaml/v2 error about one line.
	yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	// yamlDuplicateKey is a line of a strict go.yaml.in/yaml/v2 error.
	yamlDuplicateKey = regexp.MustCompile(`^line (\d+): key (".*") already set in map$`)
)

// yamlErrors splits an error of yaml.YAMLToJSONStrict into duplicate fields,
// with their lines made absolute, and whatever else went wrong.
func yamlErrors(err error, firstLine int) (dups []error, other error) {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "yaml: unmarshal errors:\n")
	if !ok {
		return nil, err
	}
	var others []string
	for _, l := range strings.Split(rest, "\n") {
		l = strings.TrimSpace(l)
		if m := yamlDuplicateKey.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			dups = append(dups, fmt.Errorf("duplicate field %s at line %d", m[2], n+firstLine-1))
		} else if l != "" {
			others = append(others, l)
		}
	}
	if len(others) > 0 {
		other = errors.New("yaml: unmarshal errors: " + strings.Join(others, "; "))
	}
	return dups, other
}

// yamlScannerErrors start the messages of go.yaml.in/yaml/v2's scanner,
// whose errors count lines from 1; its parser's errors count them from 0.
var yamlScannerErrors = []string{
	"block sequence entries are not allowed",
	"did not find URI escaped octet",
	"did not find expected '!'",
	"did not find expected alphabetic or numeric character",
	"did not find expected comment or line break",
	"did not find expected digit or '.' character",
	"did not find expected hexdecimal number",
	"did not find expected tag URI",
	"did not find expected version number",
	"did not find expected whitespace",
	"did not find the expected '>'",
	"found ",
	"mapping keys are not allowed",
	"mapping values are not allowed",
}

// yamlError rewords a YAML syntax error, making its line absolute.
func yamlError(err error, firstLine int) error {
	msg := err.Error()
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		scanner := false
		for _, prefix := range yamlScannerErrors {
			if strings.HasPrefix(m[2], prefix) {
				scanner = true
				break
			}
		}
		if !scanner && !strings.Contains(m[2], "duplicate %") {
			n++
		}
		return fmt.Errorf("invalid YAML at line %d: %s", n+firstLine-1, m[2])
	}
	return fmt.Errorf("invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}
