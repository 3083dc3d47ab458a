package kubecluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
)

// Down removes everything the cluster made: its processes (and every process left in its nodes'
// cgroups or mount namespaces, such as containers and containerd's shims), mounts, namespaces,
// cgroups, the mount points it made on the host and its state directory. It works from the state
// alone, so also after the cluster's processes were killed, and it goes on past errors,
// returning them joined.
func Down(st *State) error {
	var errs []error
	// The nodes first: kubelets and containerds, then whatever runs in their cgroups or mount
	// namespaces; then the control plane and the forwarder.
	procs := slices.Clone(st.Processes)
	slices.Reverse(procs)
	stop(procs)
	for _, n := range st.Nodes {
		killNode(st, n)
	}
	// Mounts: the nodes' namespace files, then the private mount of their directory, then
	// anything else left under the state directory.
	for _, n := range st.Nodes {
		if err := unmount(n.MountNS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmount(filepath.Join(st.Dir, "mnt")); err != nil {
		errs = append(errs, err)
	}
	for _, m := range mountsUnder(st.Dir) {
		if err := unmount(m); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range st.Nodes {
		if err := delNetNS(n.NetNS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := delNetNS(st.NetNS); err != nil {
		errs = append(errs, err)
	}
	// Cgroups, deepest first (the kubelet's kubepods tree under each node's root).
	for _, c := range st.Cgroups {
		var dirs []string
		filepath.WalkDir(c, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs)
		for _, d := range dirs {
			if err := removeCgroup(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Mount points made on the host, deepest first, if empty.
	mps := slices.Clone(st.MountPoints)
	slices.SortFunc(mps, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mps {
		os.Remove(m)
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(st.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroup removes an empty cgroup directory. A killed container whose parent died lingers
// in its cgroup as a zombie until init reaps it, which on a host whose PID 1 is no real init
// takes a while: a busy cgroup is tried again for up to 30 s.
func removeCgroup(d string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := os.Remove(d)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop ends procs: SIGTERM to each still running, then SIGKILL after 10 s.
func stop(procs []Process) {
	var live []Process
	for _, p := range procs {
		if p.alive() {
			syscall.Kill(p.PID, syscall.SIGTERM)
			live = append(live, p)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range live {
		for p.alive() && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if p.alive() {
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
}

// killNode kills every process left in the node's cgroups (its containers) or in its mount or
// network namespace (containerd's shims, a pod's pause), and waits a moment for them to go.
func killNode(st *State, n Node) {
	pids := map[int]bool{}
	for _, c := range st.Cgroups {
		if !strings.HasSuffix(c, n.CgroupRoot) {
			continue
		}
		filepath.WalkDir(c, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids[pid] = true
				}
			}
			return nil
		})
	}
	mnt, _ := nsInode(n.MountNS)
	net, _ := nsInode("/run/netns/" + n.NetNS)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if m, err := nsInode(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && mnt != 0 && m == mnt {
			pids[pid] = true
		}
		if m, err := nsInode(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && net != 0 && m == net {
			pids[pid] = true
		}
	}
	for pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		left := 0
		for pid := range pids {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z ") {
				left++
			}
		}
		if left == 0 {
			return
		}
	}
}

// nsInode is the inode of a namespace file (0 if it cannot be read).
func nsInode(path string) (uint64, error) {
	var s syscall.Stat_t
	if err := syscall.Stat(path, &s); err != nil {
		return 0, err
	}
	return s.Ino, nil
}

func unmount(p string) error {
	if !isMount(p) {
		return nil
	}
	if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	return nil
}

// isMount reports whether p is a mount point in /proc/self/mountinfo.
func isMount(p string) bool {
	return slices.Contains(mountsUnder(p), p)
}

// mountsUnder lists the mount points at or under dir, deepest first.
func mountsUnder(dir string) []string {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range infos {
		out = append(out, m.Mountpoint)
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(out)
}

func delNetNS(name string) error {
	if _, err := os.Stat("/run/netns/" + name); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, out)
	}
	return nil
}
