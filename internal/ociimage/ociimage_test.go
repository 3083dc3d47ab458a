package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// readTar returns the files of a tarball by name.
func readTar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = b
		if h.Typeflag == tar.TypeSymlink {
			out[h.Name] = []byte("-> " + h.Linkname)
		}
	}
}

// TestWrite: two images sharing a layer make one index with both names, every blob under its
// digest, the shared layer once, and the layer holding the files, links and parents asked for.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	os.WriteFile(prog, []byte("#!/bin/sh\necho hi\n"), 0o755)
	files := map[string]string{"/bin/prog": prog}
	out := filepath.Join(dir, "images.tar")
	err := Write(out, []Image{
		{Name: "docker.io/library/a:1", Entrypoint: []string{"/bin/prog"}, Files: files, Symlinks: map[string]string{"/bin/sh": "prog"}, Dirs: []string{"/tmp"}},
		{Name: "registry.k8s.io/b:2", Entrypoint: []string{"/bin/prog"}, Files: files, Symlinks: map[string]string{"/bin/sh": "prog"}, Dirs: []string{"/tmp"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tarball := readTar(t, f)
	var index struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(tarball["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range index.Manifests {
		names = append(names, m.Annotations["io.containerd.image.name"])
	}
	if !slices.Equal(names, []string{"docker.io/library/a:1", "registry.k8s.io/b:2"}) {
		t.Errorf("names %v", names)
	}
	blobs := 0
	for name, b := range tarball {
		if d, ok := strings.CutPrefix(name, "blobs/sha256/"); ok {
			blobs++
			sum := sha256.Sum256(b)
			if hex.EncodeToString(sum[:]) != d {
				t.Errorf("blob %s has digest %x", d, sum)
			}
		}
	}
	// Two manifests, two configs (the names differ in nothing else, so the configs are the same
	// blob: one), one shared layer.
	if blobs != 3 {
		t.Errorf("%d blobs, want 3 (two manifests, one config, one shared layer)", blobs)
	}
	var man struct{ Layers []struct{ Digest string } }
	json.Unmarshal(tarball["blobs/sha256/"+strings.TrimPrefix(index.Manifests[0].Digest, "sha256:")], &man)
	layer := readTar(t, bytes.NewReader(tarball["blobs/sha256/"+strings.TrimPrefix(man.Layers[0].Digest, "sha256:")]))
	if string(layer["bin/prog"]) != "#!/bin/sh\necho hi\n" || string(layer["bin/sh"]) != "-> prog" {
		t.Errorf("layer %v", layer)
	}
	for _, d := range []string{"bin/", "tmp/"} {
		if _, ok := layer[d]; !ok {
			t.Errorf("layer has no directory %s", d)
		}
	}
	if err := Write(filepath.Join(dir, "bad.tar"), []Image{{Name: "busybox"}}); err == nil {
		t.Error("a short image name was taken")
	}
}

// TestPrograms: a dynamically linked program from the host comes with its loader and libraries,
// and runs from them alone (checked with chroot as root).
func TestPrograms(t *testing.T) {
	sh, err := exec.LookPath("ls")
	if err != nil {
		t.Skip("skipped: no ls")
	}
	sh, _ = filepath.Abs(sh)
	files, err := Programs(sh)
	if err != nil {
		t.Fatal(err)
	}
	var libc, loader bool
	for p := range files {
		libc = libc || strings.Contains(p, "libc.so")
		loader = loader || strings.Contains(p, "ld-linux")
	}
	if !libc || !loader || files[sh] == "" {
		t.Fatalf("files %v: want ls, libc and the loader", files)
	}
	if _, err := Programs("relative/ls"); err == nil {
		t.Error("a relative program path was taken")
	}
	if os.Geteuid() != 0 {
		return
	}
	root := t.TempDir()
	for p, src := range files {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		b, _ := os.ReadFile(src)
		os.WriteFile(filepath.Join(root, p), b, 0o755)
	}
	if out, err := exec.Command("chroot", root, sh, "/").CombinedOutput(); err != nil {
		t.Errorf("ls in a root of its files alone: %v %s", err, out)
	}
}
