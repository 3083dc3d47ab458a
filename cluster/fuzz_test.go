package cluster

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzDecode checks that Decode never panics, that it fails only with a
// *DecodeError, and that what it decodes round-trips: encoding the
// documents again and decoding that gives the same objects.
func FuzzDecode(f *testing.F) {
	for _, tt := range decodeCases {
		f.Add([]byte(tt.in))
	}
	for _, tt := range serviceCases {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := Decode(bytes.NewReader(data), "fuzz.yaml")
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || len(de.Problems) == 0 {
				t.Fatalf("Decode error %v is not a *DecodeError with problems", err)
			}
			return
		}
		first, err := encodeDocuments(docs)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		again, err := Decode(bytes.NewReader(first), "round-trip.yaml")
		if err != nil {
			t.Fatalf("decoding the re-encoded documents failed: %v\n%s", err, first)
		}
		if len(again) != len(docs) {
			t.Fatalf("round trip gave %d documents, want %d", len(again), len(docs))
		}
		second, err := encodeDocuments(again)
		if err != nil {
			t.Fatalf("encode again: %v", err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("round trip changed the objects:\n%s\n---- became ----\n%s", first, second)
		}
	})
}

func encodeDocuments(docs []Document) ([]byte, error) {
	var parts []string
	for _, d := range docs {
		y, err := yaml.Marshal(d.Object)
		if err != nil {
			return nil, err
		}
		parts = append(parts, string(y))
	}
	return []byte(strings.Join(parts, "---\n")), nil
}
