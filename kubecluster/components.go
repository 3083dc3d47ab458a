package kubecluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/controlplane"
)

const (
	clusterCIDR = "10.244.0.0/16"
	serviceCIDR = "10.96.0.0/16"
	clusterDNS  = "10.96.0.10"
	// PauseImage is the sandbox image containerd is pinned to: the kubelet's default of this
	// release, built on the machine.
	PauseImage = "registry.k8s.io/pause:3.10.2"
)

// controlPlane starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler in the
// first node's namespace, the API server on its address, and the forwarder from the host.
func (u *up) controlPlane(ctx context.Context) error {
	pki := filepath.Join(u.st.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	if err := controlplane.WriteServiceAccountKey(pki); err != nil {
		return err
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	u.st.Token = hex.EncodeToString(tok)
	if err := os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(u.st.Token+",admin,admin-uid,\"system:masters\"\n"), 0o600); err != nil {
		return err
	}
	server := fmt.Sprintf("https://%s:%d", u.st.controlAddr(), apiPort)
	if err := writeKubeconfig(u.st.internalKubeconfig(), u.st.Name, server, u.st.Token); err != nil {
		return err
	}
	etcd := "http://127.0.0.1:2379"
	if err := u.start("etcd", u.st.controlNetNS(), "", u.bin("etcd"),
		"--data-dir", filepath.Join(u.st.Dir, "etcd"), "--unsafe-no-fsync",
		"--listen-client-urls", etcd, "--advertise-client-urls", etcd,
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "default=http://127.0.0.1:2380", "--listen-metrics-urls", ""); err != nil {
		return err
	}
	certs := filepath.Join(u.st.Dir, "apiserver-certs")
	if err := u.start("kube-apiserver", u.st.controlNetNS(), "", u.bin("kube-apiserver"),
		"--etcd-servers", etcd,
		"--bind-address", u.st.controlAddr(), "--advertise-address", u.st.controlAddr(), "--secure-port", strconv.Itoa(apiPort),
		"--cert-dir", certs, "--token-auth-file", filepath.Join(pki, "tokens.csv"), "--authorization-mode", "Node,RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range", serviceCIDR,
		"--kubelet-preferred-address-types", "InternalIP", "--allow-privileged=true"); err != nil {
		return err
	}
	if err := waitFor(ctx, 90*time.Second, "the API server's /readyz", func() error {
		_, err := u.kubectl(ctx, nil, "get", "--raw", "/readyz")
		return err
	}); err != nil {
		return fmt.Errorf("%w\n%s", err, tail(u.st.logPath("kube-apiserver")))
	}
	if err := u.start("kube-controller-manager", u.st.controlNetNS(), "", u.bin("kube-controller-manager"),
		"--kubeconfig", u.st.internalKubeconfig(), "--bind-address", "127.0.0.1",
		"--allocate-node-cidrs", "--cluster-cidr", clusterCIDR, "--node-cidr-mask-size", "24",
		"--service-cluster-ip-range", serviceCIDR,
		"--service-account-private-key-file", filepath.Join(pki, "sa.key"),
		"--root-ca-file", filepath.Join(certs, "apiserver.crt"),
		"--use-service-account-credentials=false", "--leader-elect=false"); err != nil {
		return err
	}
	if err := u.start("kube-scheduler", u.st.controlNetNS(), "", u.bin("kube-scheduler"),
		"--kubeconfig", u.st.internalKubeconfig(), "--bind-address", "127.0.0.1", "--leader-elect=false"); err != nil {
		return err
	}
	// The forwarder: kubectl on the host reaches the API server at 127.0.0.1:APIPort.
	port, err := freePort()
	if err != nil {
		return err
	}
	u.st.APIPort = port
	exe := u.opts.Podnet
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	if err := u.start("proxy", "", "", exe, "cluster", "proxy", "--netns", u.st.controlNetNS(),
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--to", fmt.Sprintf("%s:%d", u.st.controlAddr(), apiPort)); err != nil {
		return err
	}
	if err := writeKubeconfig(u.st.Kubeconfig(), u.st.Name, fmt.Sprintf("https://127.0.0.1:%d", port), u.st.Token); err != nil {
		return err
	}
	return waitFor(ctx, 30*time.Second, "the API server through the forwarder", func() error {
		out, err := exec.CommandContext(ctx, u.bin("kubectl"), "--kubeconfig", u.st.Kubeconfig(), "get", "--raw", "/readyz").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
}

func writeKubeconfig(path, name, server, token string) error {
	return os.WriteFile(path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: %[1]s, cluster: {server: %[2]q, insecure-skip-tls-verify: true}}]
users: [{name: %[1]s-admin, user: {token: %[3]q}}]
contexts: [{name: %[1]s, context: {cluster: %[1]s, user: %[1]s-admin}}]
current-context: %[1]s
`, "podnet-"+name, server, token)), 0o600)
}

// tail is the end of a log file.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// nodes starts each node's containerd, loads the images into it, and starts its kubelet.
func (u *up) nodes(ctx context.Context) error {
	loopback, err := os.ReadFile(u.bin("cni/loopback"))
	if err != nil {
		return err
	}
	for _, n := range u.st.Nodes {
		dir := filepath.Join(u.st.Dir, "nodes", n.Name)
		// containerd's CRI brings each pod's lo up with the reference loopback plugin.
		if err := os.WriteFile(filepath.Join(u.st.nodeDir(n, "opt-cni-bin"), "loopback"), loopback, 0o755); err != nil {
			return err
		}
		runc, err := exec.LookPath("runc")
		if err != nil {
			return err
		}
		conf := filepath.Join(dir, "containerd.toml")
		if err := os.WriteFile(conf, []byte(containerdConfig(runc)), 0o644); err != nil {
			return err
		}
		if err := u.start(n.Name+"-containerd", n.NetNS, n.MountNS, u.bin("containerd"), "--config", conf); err != nil {
			return err
		}
		ctr := func(args ...string) error {
			out, err := nsCommand("", n.MountNS, u.bin("ctr"), args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
			}
			return nil
		}
		if err := waitFor(ctx, 30*time.Second, n.Name+"'s containerd", func() error { return ctr("version") }); err != nil {
			return fmt.Errorf("%w\n%s", err, tail(u.st.logPath(n.Name+"-containerd")))
		}
		if err := ctr("-n", "k8s.io", "images", "import", "--platform", "linux/amd64", u.st.imagesPath()); err != nil {
			return err
		}
		kubelet := filepath.Join(dir, "kubelet.yaml")
		if err := os.WriteFile(kubelet, []byte(kubeletConfig(n)), 0o644); err != nil {
			return err
		}
		if err := u.start(n.Name+"-kubelet", n.NetNS, n.MountNS, u.bin("kubelet"),
			"--config", kubelet, "--kubeconfig", u.st.internalKubeconfig(),
			"--hostname-override", n.Name, "--node-ip", n.Address, "-v", "1"); err != nil {
			return err
		}
	}
	return nil
}

// containerdConfig is a node's containerd configuration: its default paths (the node's own,
// through its mount namespace), NRI off, the pause image pinned (no registry to pull from), and
// restrict_oom_score_adj, without which runc fails where root lacks CAP_SYS_RESOURCE.
func containerdConfig(runc string) string {
	return fmt.Sprintf(`version = 3
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %q
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = %q
      SystemdCgroup = false
`, PauseImage, runc)
}

// kubeletConfig is a node's kubelet configuration for this kind of host: cgroup v1 with the
// cgroupfs driver (PID 1 is no systemd), swap allowed, the node's own cgroupRoot, podnet's DNS
// address, and eviction thresholds that a shared disk does not trip.
func kubeletConfig(n Node) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupRoot: %s
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
address: %s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
clusterDNS: [%s]
clusterDomain: cluster.local
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
makeIPTablesUtilChains: false
`, n.CgroupRoot, n.Address, clusterDNS)
}

// installNetwork installs the cluster's network.
func (u *up) installNetwork(ctx context.Context) error {
	if u.opts.CNI == "bridge" {
		return u.installBridge(ctx)
	}
	return u.installPodnet(ctx)
}

// installBridge gives each node the reference bridge and host-local plugins, configured with
// the node's pod CIDR once the controller-manager has given it one.
func (u *up) installBridge(ctx context.Context) error {
	for _, n := range u.st.Nodes {
		for _, p := range []string{"bridge", "host-local"} {
			b, err := os.ReadFile(u.bin("cni/" + p))
			if err != nil {
				return fmt.Errorf("%w (make kube-bin's cni-plugins)", err)
			}
			if err := os.WriteFile(filepath.Join(u.st.nodeDir(n, "opt-cni-bin"), p), b, 0o755); err != nil {
				return err
			}
		}
		var cidr string
		if err := waitFor(ctx, time.Minute, n.Name+"'s pod CIDR", func() error {
			out, err := u.kubectl(ctx, nil, "get", "node", n.Name, "-o", "jsonpath={.spec.podCIDR}")
			cidr = strings.TrimSpace(out)
			if err == nil && cidr == "" {
				err = fmt.Errorf("none yet")
			}
			return err
		}); err != nil {
			return err
		}
		conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "bridge", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "/var/lib/cni/networks", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
`, cidr)
		if err := os.WriteFile(filepath.Join(u.st.nodeDir(n, "etc-cni-net.d"), "10-bridge.conflist"), []byte(conf), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// installPodnet applies deploy/podnet.yaml with the API server's real address for the agents.
func (u *up) installPodnet(ctx context.Context) error {
	var b bytes.Buffer
	b.Write(u.opts.Manifest)
	fmt.Fprintf(&b, `
---
apiVersion: v1
kind: ConfigMap
metadata: {name: podnet-config, namespace: podnet-system}
data: {KUBERNETES_SERVICE_HOST: %q, KUBERNETES_SERVICE_PORT: "%d"}
`, u.st.controlAddr(), apiPort)
	_, err := u.kubectl(ctx, &b, "apply", "-f", "-")
	return err
}

// waitReady waits until every node is Ready.
func (u *up) waitReady(ctx context.Context) error {
	return waitFor(ctx, 5*time.Minute, "every node Ready", func() error {
		out, err := u.kubectl(ctx, nil, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil {
			return err
		}
		ready := 0
		for _, f := range strings.Fields(out) {
			if strings.HasSuffix(f, "=True") {
				ready++
			}
		}
		if ready != len(u.st.Nodes) {
			return fmt.Errorf("%d of %d Ready: %s", ready, len(u.st.Nodes), out)
		}
		return nil
	})
}
