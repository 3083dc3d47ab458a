package graph

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden compares the pictures of the lab fixture with testdata/lab.dot
// and testdata/lab.svg (open the SVG in a browser to see what the package
// draws). After an intended change: go test ./graph -run TestGolden -update.
func TestGolden(t *testing.T) {
	g := newLab().build()
	for _, tt := range []struct {
		file  string
		write func(*bytes.Buffer) error
	}{
		{"lab.dot", func(b *bytes.Buffer) error { return g.WriteDOT(b) }},
		{"lab.svg", func(b *bytes.Buffer) error { return g.WriteSVG(b) }},
	} {
		var got bytes.Buffer
		if err := tt.write(&got); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", tt.file)
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s differs from the output; if the change is intended, run go test ./graph -run TestGolden -update", path)
		}
	}
}
