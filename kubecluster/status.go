package kubecluster

import (
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
)

// Status writes the cluster's components (running or not) and its nodes as the API server has
// them.
func Status(w io.Writer, st *State, kubeBin string) error {
	fmt.Fprintf(w, "cluster %s (%s)\nexport KUBECONFIG=%s\n\n", st.Name, st.Dir, st.Kubeconfig())
	fmt.Fprintf(w, "%-28s %-8s %s\n", "COMPONENT", "PID", "STATE")
	for _, p := range st.Processes {
		state := "running"
		if !p.alive() {
			state = "not running"
		}
		fmt.Fprintf(w, "%-28s %-8d %s\n", p.Name, p.PID, state)
	}
	fmt.Fprintln(w)
	out, err := exec.Command(filepath.Join(kubeBin, "kubectl"), "--kubeconfig", st.Kubeconfig(), "get", "nodes", "-o", "wide").CombinedOutput()
	w.Write(out)
	if err != nil {
		return fmt.Errorf("kubectl get nodes: %w", err)
	}
	return nil
}

// LoadImage imports an image tarball (docker save or OCI layout) into every node's containerd.
func LoadImage(st *State, kubeBin, tarball string) error {
	for _, n := range st.Nodes {
		out, err := nsCommand("", n.MountNS, filepath.Join(kubeBin, "ctr"), "-n", "k8s.io", "images", "import", "--platform", "linux/amd64", tarball).CombinedOutput()
		if err != nil {
			return fmt.Errorf("load %s into %s: %w: %s", tarball, n.Name, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
