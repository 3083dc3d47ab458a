package kubecluster

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/podnet/podnet/internal/ociimage"
)

// Images every cluster gets, all built on the machine (there is no registry to pull from).
const (
	PodnetImage  = "docker.io/library/podnet:dev"
	ToolboxImage = "docker.io/library/toolbox:1"
	// The names the upstream e2e suites of this Kubernetes release use for agnhost and busybox.
	AgnhostImage  = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
	BusyboxImage  = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"
	GlibcDNSImage = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1"
	NginxImage    = "registry.k8s.io/e2e-test-images/nginx:1.27.0-2"
)

// toolboxPrograms are the Debian programs of the toolbox image besides busybox's applets: what
// the suites and the tests run inside pods.
var toolboxPrograms = []string{"/usr/bin/curl", "/usr/bin/dig", "/usr/bin/getent"}

func (st *State) imagesPath() string { return filepath.Join(st.Dir, "images.tar") }

// images writes the cluster's images into one tarball: podnet (podnet and podnet-cni), pause
// (podnet's own pause), the toolbox (Debian's busybox-static with its applets, curl, dig and
// getent with their libraries), also under the e2e suites' busybox name, and agnhost where
// make kube-bin built it.
func (u *up) images(context.Context) error {
	exe := u.opts.Podnet
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	cni := filepath.Join(filepath.Dir(exe), "podnet-cni")
	if _, err := os.Stat(cni); err != nil {
		return fmt.Errorf("podnet-cni is not beside %s (make build puts both in bin/)", exe)
	}
	// podnet as built may be linked against the C library: the image gets the libraries it
	// needs, at their paths, beside /podnet and /podnet-cni.
	podnet, err := ociimage.Programs(exe, cni)
	if err != nil {
		return err
	}
	delete(podnet, exe)
	delete(podnet, cni)
	podnet["/podnet"], podnet["/podnet-cni"] = exe, cni
	toolbox, err := Toolbox()
	if err != nil {
		return err
	}
	images := []ociimage.Image{
		{Name: PodnetImage, Entrypoint: []string{"/podnet"}, Files: podnet},
		{Name: PauseImage, Entrypoint: []string{"/podnet", "pause"}, Files: podnet},
		withName(toolbox, ToolboxImage),
		withName(toolbox, BusyboxImage),
		// The suites' DNS checks run dig under sh in this one: the toolbox is glibc's too.
		withName(toolbox, GlibcDNSImage),
		// The suites only need a web server on port 80 from their nginx.
		{Name: NginxImage, Entrypoint: []string{"/podnet", "serve", "--http", "80"}, Files: podnet},
	}
	if agnhost := u.bin("agnhost"); fileExists(agnhost) {
		// The suites run sh, dig, nslookup, nc and wget in agnhost's pods as well as agnhost
		// itself: it is the toolbox with /agnhost.
		img := withName(toolbox, AgnhostImage)
		img.Files = maps.Clone(toolbox.Files)
		img.Files["/agnhost"] = agnhost
		// agnhost porter's TLS ports serve the upstream test certificate from the working
		// directory, as agnhost's own image has it; netexec uploads into /uploads.
		for _, f := range []string{"localhost.crt", "localhost.key"} {
			if p := u.bin("agnhost-" + f); fileExists(p) {
				img.Files["/"+f] = p
			}
		}
		img.Dirs = append(slices.Clone(img.Dirs), "/uploads")
		img.Entrypoint = []string{"/agnhost"}
		img.Cmd = []string{"pause"} // as agnhost's own image: a pod without args just waits
		images = append(images, img)
	} else {
		u.log.Warn("no agnhost in " + u.opts.KubeBin + " (make kube-bin builds it): the upstream suites cannot run on this cluster")
	}
	return ociimage.Write(u.st.imagesPath(), images)
}

func withName(img ociimage.Image, name string) ociimage.Image {
	img.Name = name
	return img
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Toolbox is the toolbox image (without a name): /bin/busybox from Debian's busybox-static
// with a link for every applet but sh and nc, and toolboxPrograms, dash as /bin/sh and OpenBSD's
// nc (Debian's netcat-openbsd) with their libraries.
func Toolbox() (ociimage.Image, error) {
	busybox := "/bin/busybox"
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return ociimage.Image{}, fmt.Errorf("toolbox image: %s --list: %v (apt-get install busybox-static)", busybox, err)
	}
	progs := toolboxPrograms
	for _, p := range []string{
		"/usr/bin/iperf3",  // for bench/cluster.sh, where Debian's iperf3 is installed
		"/usr/sbin/hping3", // for bench/flood.sh --cluster, where Debian's hping3 is installed
	} {
		if _, err := os.Stat(p); err == nil {
			progs = append(progs, p)
		}
	}
	progs = append(progs, "/usr/bin/nc.openbsd", "/usr/bin/dash")
	files, err := ociimage.Programs(progs...)
	if err != nil {
		return ociimage.Image{}, fmt.Errorf("toolbox image: %w (apt-get install curl dnsutils netcat-openbsd)", err)
	}
	// The suites run OpenBSD's nc (nc -v -t -w 2, nc -u), not busybox's; and under sh, which is
	// Debian's dash: busybox's sh would run its own nc applet whatever is on PATH.
	files["/usr/bin/nc"] = files["/usr/bin/nc.openbsd"]
	files["/bin/sh"] = files["/usr/bin/dash"]
	real, err := filepath.EvalSymlinks(busybox)
	if err != nil {
		return ociimage.Image{}, err
	}
	files["/bin/busybox"] = real
	links := map[string]string{}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		p := "/bin/" + applet
		if _, ok := files[p]; ok {
			continue
		}
		if _, ok := files["/usr"+p]; ok {
			continue
		}
		if applet == "nc" || applet == "sh" {
			continue // /usr/bin/nc is OpenBSD's, /bin/sh is dash
		}
		links[p] = "busybox"
	}
	// Debian's layout: /lib and /lib64 hold the loader and libraries at the paths programs
	// name; /usr/bin is where curl, dig and getent are.
	return ociimage.Image{
		Entrypoint: []string{"/bin/sh"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"},
		Files:      files,
		Symlinks:   links,
		Dirs:       []string{"/tmp", "/etc", "/root", "/var/run"},
	}, nil
}
