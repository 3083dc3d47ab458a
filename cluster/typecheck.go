package cluster

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// typeChecker finds the values of a decoded JSON document that do not fit
// the Go type they are decoded into, all of them and each with its field
// path. encoding/json stops at the first such value and names it without
// list indexes ("spec.containers.name"), which is not enough to tell a user
// what to fix.
type typeChecker struct {
	// yamlText is the YAML source of the document, or nil if it was JSON.
	// It lets the checker tell a user which unquoted word YAML 1.1 turned
	// into a boolean.
	yamlText []byte
	// wordLookups counts the searches of yamlText for a boolean's word,
	// which are bounded to keep a document full of them linear.
	wordLookups int
	errs        field.ErrorList
	// fields caches jsonFields by type; it may be shared by the checkers
	// of one stream (not concurrently). Nil: no caching.
	fields map[reflect.Type]map[string]reflect.Type
}

// jsonFields returns jsonFields(t), cached.
func (c *typeChecker) jsonFields(t reflect.Type) map[string]reflect.Type {
	if c.fields == nil {
		return jsonFields(t)
	}
	f, ok := c.fields[t]
	if !ok {
		f = jsonFields(t)
		c.fields[t] = f
	}
	return f
}

// maxWordLookups bounds the searches for booleans' words in one document.
const maxWordLookups = 16

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	intOrStringType     = reflect.TypeFor[intstr.IntOrString]()
)

// check checks v, a value decoded from JSON with UseNumber, against t. It
// returns v with the values that do not fit removed (from objects) or
// replaced by null (in lists, so that indexes keep their meaning), and
// whether v itself fits.
func (c *typeChecker) check(v any, t reflect.Type, path *field.Path) (any, bool) {
	if v == nil {
		return nil, true // null decodes into anything
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == intOrStringType:
		switch x := v.(type) {
		case string:
			return v, true
		case json.Number:
			if _, err := strconv.ParseInt(string(x), 10, 32); err == nil {
				return v, true
			}
		}
		c.mismatch(v, path, "an integer or a string")
		return nil, false
	case reflect.PointerTo(t).Implements(jsonUnmarshalerType):
		b, err := json.Marshal(v)
		if err == nil {
			err = reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(b)
		}
		if err != nil {
			c.errs = append(c.errs, field.Invalid(path, displayValue(v), err.Error()))
			return nil, false
		}
		return v, true
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		s, ok := v.(string)
		if !ok {
			c.mismatch(v, path, "a string")
			return nil, false
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			c.errs = append(c.errs, field.Invalid(path, s, err.Error()))
			return nil, false
		}
		return v, true
	}

	switch t.Kind() {
	case reflect.Interface:
		return v, true
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			c.mismatch(v, path, "a mapping")
			return nil, false
		}
		fields := c.jsonFields(t)
		for _, k := range sortedKeys(m) {
			ft, known := fields[k]
			if !known {
				continue // the strict decoder reports unknown fields
			}
			if nv, ok := c.check(m[k], ft, path.Child(k)); ok {
				m[k] = nv
			} else {
				delete(m, k)
			}
		}
		return m, true
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			c.mismatch(v, path, "a mapping")
			return nil, false
		}
		for _, k := range sortedKeys(m) {
			if nv, ok := c.check(m[k], t.Elem(), path.Key(k)); ok {
				m[k] = nv
			} else {
				delete(m, k)
			}
		}
		return m, true
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			s, ok := v.(string)
			if !ok {
				c.mismatch(v, path, "a base64-encoded string")
				return nil, false
			}
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				c.errs = append(c.errs, field.Invalid(path, s, "must be base64-encoded"))
				return nil, false
			}
			return v, true
		}
		l, ok := v.([]any)
		if !ok {
			c.mismatch(v, path, "a list")
			return nil, false
		}
		for i := range l {
			if nv, ok := c.check(l[i], t.Elem(), path.Index(i)); ok {
				l[i] = nv
			} else {
				l[i] = nil
			}
		}
		return l, true
	case reflect.String:
		if _, ok := v.(string); !ok {
			c.mismatch(v, path, "a string")
			return nil, false
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			c.mismatch(v, path, "a boolean (true or false)")
			return nil, false
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			c.mismatch(v, path, "an integer")
			return nil, false
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			c.numberError(n, path, err)
			return nil, false
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n, ok := v.(json.Number)
		if !ok {
			c.mismatch(v, path, "a non-negative integer")
			return nil, false
		}
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			c.numberError(n, path, err)
			return nil, false
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			c.mismatch(v, path, "a number")
			return nil, false
		}
		if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			c.numberError(n, path, err)
			return nil, false
		}
	}
	return v, true
}

func (c *typeChecker) numberError(n json.Number, path *field.Path, err error) {
	detail := "must be an integer"
	if _, ferr := strconv.ParseFloat(string(n), 64); ferr == nil && strings.ContainsAny(string(n), ".eE") {
		detail = "must be a whole number"
	} else if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		detail = "is out of range"
	}
	c.errs = append(c.errs, field.Invalid(path, displayValue(n), detail))
}

// mismatch records that v, at path, is not what the field takes: want.
func (c *typeChecker) mismatch(v any, path *field.Path, want string) {
	detail := "must be " + want
	switch x := v.(type) {
	case bool:
		if c.yamlText != nil && strings.Contains(want, "string") {
			w := ""
			if c.wordLookups < maxWordLookups {
				c.wordLookups++
				w = yamlBoolWord(c.yamlText, path, x)
			}
			literal := strings.EqualFold(w, "true") || strings.EqualFold(w, "false")
			switch {
			case literal && want != "a string":
				// `port: true` is not a quoting problem.
			case w != "":
				detail += fmt.Sprintf(", but YAML 1.1 read the unquoted %s as the boolean %t: quote it (%q)", w, x, w)
			default:
				detail += fmt.Sprintf(", but YAML 1.1 read an unquoted word as the boolean %t "+
					"(y, yes, on and true are true; n, no, off and false are false): quote the value", x)
			}
		}
	case json.Number:
		if strings.Contains(want, "string") {
			detail += ": quote the value"
		}
	case string:
		if _, err := strconv.ParseFloat(x, 64); err == nil && !strings.Contains(want, "string") {
			detail += ": remove the quotes"
		}
	case map[string]any:
		detail += ", not a mapping"
	case []any:
		detail += ", not a list"
	}
	c.errs = append(c.errs, field.TypeInvalid(path, displayValue(v), detail))
}

// displayValue returns v in the form field.Error prints well.
func displayValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return string(x)
	case map[string]any, []any:
		return field.OmitValueType{}
	}
	return v
}

// jsonFields returns the fields encoding/json decodes into a value of
// struct type t, by JSON name, with the fields of embedded structs without a
// JSON name promoted. A field of t itself hides a promoted one.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type)
	var embedded []reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	for _, et := range embedded {
		for name, ft := range jsonFields(et) {
			if _, hidden := fields[name]; !hidden {
				fields[name] = ft
			}
		}
	}
	return fields
}

// yamlBools are the words YAML 1.1 (go.yaml.in/yaml/v2) reads as booleans.
var yamlBools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true,
	"true": true, "True": true, "TRUE": true, "on": true, "On": true, "ON": true,
	"n": false, "N": false, "no": false, "No": false, "NO": false,
	"false": false, "False": false, "FALSE": false, "off": false, "Off": false, "OFF": false,
}

// listItemWord matches a list item that is a single word, in block or flow
// style.
var listItemWord = regexp.MustCompile(`(?m)(?:^\s*-\s+|[\[,]\s*)([A-Za-z]+)\s*(?:$|#|[,\]])`)

// yamlBoolWord returns the unquoted word of text that YAML 1.1 read as the
// boolean b for the value at path, if it can tell which word that was: it
// looks for the last key of path followed by a word that YAML reads as b,
// and answers only if exactly one distinct such word is found.
func yamlBoolWord(text []byte, path *field.Path, b bool) string {
	var re *regexp.Regexp
	s := path.String()
	if i := strings.LastIndexByte(s, '['); i >= 0 && strings.HasSuffix(s, "]") {
		if key := s[i+1 : len(s)-1]; strings.Trim(key, "0123456789") != "" {
			re = keyWordPattern(key)
		} else {
			re = listItemWord
		}
	} else {
		re = keyWordPattern(s[strings.LastIndexByte(s, '.')+1:])
	}
	found := ""
	for _, m := range re.FindAllSubmatch(text, -1) {
		w := string(m[1])
		if v, ok := yamlBools[w]; !ok || v != b {
			continue
		}
		if found != "" && found != w {
			return ""
		}
		found = w
	}
	return found
}

// keyWordPattern matches `key: word`, in block or flow style.
func keyWordPattern(key string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)(?:^|[\s{,?-])["']?` + regexp.QuoteMeta(key) + `["']?\s*:\s+([A-Za-z]+)\s*(?:$|#|[,}\]])`)
}
