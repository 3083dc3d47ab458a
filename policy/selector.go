package policy

import (
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// selector is a compiled metav1.LabelSelector: matchLabels and
// matchExpressions as one list of requirements, all of which must hold, as
// metav1.LabelSelectorAsSelector builds them. It is ours rather than
// labels.Selector so that the compiler can intern equal selectors by a
// canonical key and match without an interface call.
type selector struct {
	key  string // canonical: equal keys select the same label sets
	text string // for Explain: "app=db,tier in (a,b)"; "" selects everything
	none bool   // a selector the API would reject: selects nothing
	reqs []requirement
}

type selectorOp uint8

const (
	opIn selectorOp = iota
	opNotIn
	opExists
	opDoesNotExist
)

type requirement struct {
	key    string
	op     selectorOp
	values []string // sorted, unique
}

// matches reports whether the label set l satisfies s.
func (s *selector) matches(l map[string]string) bool {
	if s.none {
		return false
	}
	for i := range s.reqs {
		r := &s.reqs[i]
		v, ok := l[r.key]
		switch r.op {
		case opIn:
			if !ok || !slices.Contains(r.values, v) {
				return false
			}
		case opNotIn:
			if ok && slices.Contains(r.values, v) {
				return false
			}
		case opExists:
			if !ok {
				return false
			}
		case opDoesNotExist:
			if ok {
				return false
			}
		}
	}
	return true
}

// everything reports whether s selects every label set.
func (s *selector) everything() bool { return !s.none && len(s.reqs) == 0 }

// newSelector compiles ls. A selector with an unknown operator, In or NotIn
// without values, or Exists or DoesNotExist with values selects nothing (the
// API server rejects them; Compile must still not panic). The syntax of keys
// and values is not re-checked here: Validate does that.
func newSelector(ls *metav1.LabelSelector) *selector {
	s := &selector{}
	for k, v := range ls.MatchLabels {
		s.reqs = append(s.reqs, requirement{key: k, op: opIn, values: []string{v}})
	}
	for _, e := range ls.MatchExpressions {
		r := requirement{key: e.Key}
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			r.op = opIn
		case metav1.LabelSelectorOpNotIn:
			r.op = opNotIn
		case metav1.LabelSelectorOpExists:
			r.op = opExists
		case metav1.LabelSelectorOpDoesNotExist:
			r.op = opDoesNotExist
		default:
			s.none = true
		}
		switch r.op {
		case opIn, opNotIn:
			if len(e.Values) == 0 {
				s.none = true
			}
			r.values = slices.Clone(e.Values)
			slices.Sort(r.values)
			r.values = slices.Compact(r.values)
		default:
			if len(e.Values) > 0 {
				s.none = true
			}
		}
		s.reqs = append(s.reqs, r)
	}
	if s.none {
		s.reqs = nil
		s.key, s.text = "\xffnone", "<invalid>"
		return s
	}
	slices.SortFunc(s.reqs, func(a, b requirement) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		if a.op != b.op {
			return int(a.op) - int(b.op)
		}
		return slices.Compare(a.values, b.values)
	})
	s.reqs = slices.CompactFunc(s.reqs, func(a, b requirement) bool {
		return a.key == b.key && a.op == b.op && slices.Equal(a.values, b.values)
	})
	var key, text strings.Builder
	for i, r := range s.reqs {
		// The key is length-prefixed so that no key or value, valid or
		// not, can make two different selectors collide.
		writeLenString(&key, r.key)
		key.WriteByte(byte(r.op))
		writeLenString(&key, strings.Join(r.values, "\x00"))
		if i > 0 {
			text.WriteByte(',')
		}
		switch r.op {
		case opIn:
			if len(r.values) == 1 {
				text.WriteString(r.key + "=" + r.values[0])
			} else {
				text.WriteString(r.key + " in (" + strings.Join(r.values, ",") + ")")
			}
		case opNotIn:
			text.WriteString(r.key + " notin (" + strings.Join(r.values, ",") + ")")
		case opExists:
			text.WriteString(r.key)
		case opDoesNotExist:
			text.WriteString("!" + r.key)
		}
	}
	s.key, s.text = key.String(), text.String()
	return s
}

func writeLenString(b *strings.Builder, s string) {
	n := len(s)
	b.WriteByte(byte(n >> 24))
	b.WriteByte(byte(n >> 16))
	b.WriteByte(byte(n >> 8))
	b.WriteByte(byte(n))
	b.WriteString(s)
}
