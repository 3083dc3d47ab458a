// Package ociimage writes container images as OCI image-layout tarballs, the form
// `ctr images import` takes, without a registry or a container engine: podnet's clusters build
// every image they run on the machine (podnet's own, pause, agnhost, a toolbox of Debian's
// programs) and load them into each node's containerd.
//
// An image is one layer of files taken from the host, each at a path of the image's choosing,
// plus symbolic links; Files resolves the shared libraries an ELF program needs (DT_NEEDED,
// recursively, and its interpreter), so a dynamically linked program from a Debian package runs
// in the image as it runs on the host. Several images may share one tarball; a layer two images
// share is stored once.
package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// Image is one image of a tarball.
type Image struct {
	// Name is the image's full reference, as the CRI looks it up: docker.io/library/x:tag.
	Name string
	// Entrypoint and Cmd are the image's default command; Env its environment (PATH=/bin if none).
	Entrypoint, Cmd, Env []string
	// Files maps a path in the image to the host file copied there (mode kept, symlinks followed).
	Files map[string]string
	// Symlinks maps a path in the image to a link target.
	Symlinks map[string]string
	// Dirs are empty directories to make (such as /tmp, mode 1777).
	Dirs []string
}

// Write writes images as one OCI image-layout tarball at out.
func Write(out string, images []Image) error {
	blobs := map[string][]byte{}
	add := func(b []byte, media string) descriptor {
		sum := sha256.Sum256(b)
		d := hex.EncodeToString(sum[:])
		blobs[d] = b
		return descriptor{MediaType: media, Digest: "sha256:" + d, Size: int64(len(b))}
	}
	var manifests []descriptor
	for _, img := range images {
		if !strings.Contains(img.Name, "/") || !strings.Contains(img.Name[strings.LastIndex(img.Name, "/"):], ":") {
			return fmt.Errorf("ociimage: image name %q: want a full reference with a tag, such as docker.io/library/x:1", img.Name)
		}
		layer, err := img.layer()
		if err != nil {
			return fmt.Errorf("ociimage: image %s: %w", img.Name, err)
		}
		env := img.Env
		if len(env) == 0 {
			env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
		}
		diff := sha256.Sum256(layer)
		cfg, _ := json.Marshal(map[string]any{
			"architecture": "amd64", "os": "linux",
			"config": map[string]any{"Entrypoint": img.Entrypoint, "Cmd": img.Cmd, "Env": env, "WorkingDir": "/"},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diff[:])}},
		})
		man, _ := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config": add(cfg, "application/vnd.oci.image.config.v1+json"),
			"layers": []descriptor{add(layer, "application/vnd.oci.image.layer.v1.tar")},
		})
		m := add(man, "application/vnd.oci.image.manifest.v1+json")
		m.Platform = &platform{Architecture: "amd64", OS: "linux"}
		m.Annotations = map[string]string{
			"io.containerd.image.name":          img.Name,
			"org.opencontainers.image.ref.name": img.Name[strings.LastIndex(img.Name, ":")+1:],
		}
		manifests = append(manifests, m)
	}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})

	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	tw := tar.NewWriter(f)
	write := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	err = write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	if err == nil {
		err = write("index.json", index)
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	slices.Sort(digests)
	for _, d := range digests {
		if err == nil {
			err = write("blobs/sha256/"+d, blobs[d])
		}
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		return fmt.Errorf("ociimage: write %s: %w", out, err)
	}
	return nil
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// layer is the image's one layer: a tar of its directories, files and links, in path order,
// with every parent directory present and times zeroed, so the same files make the same digest.
func (img *Image) layer() ([]byte, error) {
	type entry struct {
		name, src, link string
		dir             bool
	}
	entries := map[string]entry{}
	var addParents func(p string)
	addParents = func(p string) {
		d := path.Dir(p)
		if d == "/" || d == "." {
			return
		}
		if _, ok := entries[d]; !ok {
			entries[d] = entry{name: d, dir: true}
		}
		addParents(d)
	}
	for _, d := range img.Dirs {
		d = path.Clean("/" + d)
		entries[d] = entry{name: d, dir: true}
		addParents(d)
	}
	for p, src := range img.Files {
		p = path.Clean("/" + p)
		entries[p] = entry{name: p, src: src}
		addParents(p)
	}
	for p, target := range img.Symlinks {
		p = path.Clean("/" + p)
		entries[p] = entry{name: p, link: target}
		addParents(p)
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		h := &tar.Header{Name: strings.TrimPrefix(n, "/"), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag, h.Mode, h.Name = tar.TypeDir, 0o755, h.Name+"/"
			if n == "/tmp" {
				h.Mode = 0o1777
			}
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
		default:
			f, err := os.Open(e.src)
			if err != nil {
				return nil, err
			}
			st, err := f.Stat()
			if err != nil || !st.Mode().IsRegular() {
				f.Close()
				return nil, fmt.Errorf("%s (for %s): not a regular file (%v)", e.src, n, err)
			}
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, int64(st.Mode().Perm()), st.Size()
			if err := tw.WriteHeader(h); err != nil {
				f.Close()
				return nil, err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
