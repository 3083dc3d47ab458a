// Package controlplane starts a real Kubernetes control plane on loopback for podnet's tests:
// etcd, kube-apiserver and kube-controller-manager (with --allocate-node-cidrs), from binaries
// that `make kube-bin` built. It listens only on 127.0.0.1, keeps everything in one directory, and
// Close stops every process it started and waits for them.
//
// Authentication is one static token of system:masters, written into the kubeconfig it makes;
// authorization is RBAC, so a client using another identity meets the permissions a real cluster
// gives it. There is no scheduler and no kubelet: tests bind and report pods themselves, or run
// real kubelets of their own.
package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Components are the binaries Start needs in Options.Bin.
func Components() []string {
	return []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"}
}

// Options configures a control plane.
type Options struct {
	// Bin holds etcd, kube-apiserver, kube-controller-manager and kubectl. Required.
	Bin string
	// Dir holds its data, certificates, logs and kubeconfig. Required; it should be empty.
	Dir string
	// ClusterCIDR is split into a /24 per Node (the controller-manager's --cluster-cidr).
	// Empty means 10.244.0.0/16.
	ClusterCIDR string
	// ServiceCIDR is the Services' range. Empty means 10.96.0.0/16.
	ServiceCIDR string
}

// ControlPlane is a running control plane.
type ControlPlane struct {
	// Kubeconfig is the path of an admin kubeconfig (system:masters).
	Kubeconfig string
	// Server is the API server's URL; Token the admin's bearer token.
	Server string
	Token  string

	opts  Options
	procs []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Missing returns the components Bin lacks, for a test's skip message.
func Missing(bin string) []string {
	var missing []string
	for _, c := range Components() {
		if _, err := os.Stat(filepath.Join(bin, c)); err != nil {
			missing = append(missing, c)
		}
	}
	return missing
}

// Start starts etcd, the API server and the controller-manager, and returns once the API server
// is ready. On error everything it started is stopped again; the error names the component and
// its log.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	if opts.ClusterCIDR == "" {
		opts.ClusterCIDR = "10.244.0.0/16"
	}
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "10.96.0.0/16"
	}
	if m := Missing(opts.Bin); len(m) > 0 {
		return nil, fmt.Errorf("controlplane: %v missing in %s (make kube-bin builds them)", m, opts.Bin)
	}
	cp := &ControlPlane{opts: opts}
	defer func() {
		if err != nil {
			cp.Close()
		}
	}()
	pki := filepath.Join(opts.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	if err := WriteServiceAccountKey(pki); err != nil {
		return nil, err
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	cp.Token = hex.EncodeToString(tok)
	if err := os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(cp.Token+",admin,admin-uid,\"system:masters\"\n"), 0o600); err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, kcmPort := ports[0], ports[1], ports[2], ports[3]
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	if err := cp.start("etcd",
		"--data-dir", filepath.Join(opts.Dir, "etcd"), "--unsafe-no-fsync",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--listen-metrics-urls", "",
	); err != nil {
		return nil, err
	}
	certs := filepath.Join(opts.Dir, "apiserver-certs")
	if err := cp.start("kube-apiserver",
		"--etcd-servers", etcdURL,
		// A loopback address may not be the kubernetes Service's endpoint: that Service gets
		// none (the endpoint reconciler is off).
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--endpoint-reconciler-type", "none",
		"--secure-port", strconv.Itoa(apiPort), "--cert-dir", certs,
		"--token-auth-file", filepath.Join(pki, "tokens.csv"), "--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range", opts.ServiceCIDR,
		"--kubelet-preferred-address-types", "InternalIP",
	); err != nil {
		return nil, err
	}
	cp.Server = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	cp.Kubeconfig = filepath.Join(opts.Dir, "kubeconfig")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: podnet-test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: podnet-test, context: {cluster: podnet-test, user: admin}}]
current-context: podnet-test
`, cp.Server, cp.Token)
	if err := os.WriteFile(cp.Kubeconfig, []byte(kubeconfig), 0o600); err != nil {
		return nil, err
	}
	if err := cp.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := cp.start("kube-controller-manager",
		"--kubeconfig", cp.Kubeconfig, "--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(kcmPort),
		"--allocate-node-cidrs", "--cluster-cidr", opts.ClusterCIDR, "--node-cidr-mask-size", "24",
		"--service-cluster-ip-range", opts.ServiceCIDR,
		"--service-account-private-key-file", filepath.Join(pki, "sa.key"),
		"--root-ca-file", filepath.Join(certs, "apiserver.crt"),
		"--use-service-account-credentials=false", "--leader-elect=false",
	); err != nil {
		return nil, err
	}
	return cp, nil
}

// Kubectl runs kubectl with the admin kubeconfig and returns its combined output.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(cp.opts.Bin, "kubectl"), append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}

// waitReady waits for the API server's /readyz, or for it or etcd to exit.
func (cp *ControlPlane) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last string
	for {
		for _, p := range cp.procs {
			select {
			case <-p.done:
				return fmt.Errorf("controlplane: %s exited (%v); the end of its log:\n%s", p.name, p.err, cp.logTail(p.name))
			default:
			}
		}
		out, err := cp.Kubectl(ctx, "get", "--raw", "/readyz")
		if err == nil {
			return nil
		}
		last = out
		select {
		case <-ctx.Done():
			return fmt.Errorf("controlplane: the API server is not ready (%s); the end of its log:\n%s", last, cp.logTail("kube-apiserver"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// LogPath is the log file of a component.
func (cp *ControlPlane) LogPath(name string) string {
	return filepath.Join(cp.opts.Dir, "logs", name+".log")
}

// logTail returns the last lines of a component's log.
func (cp *ControlPlane) logTail(name string) string {
	b, _ := os.ReadFile(cp.LogPath(name))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

func (cp *ControlPlane) start(name string, args ...string) error {
	log, err := os.Create(cp.LogPath(name))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(filepath.Join(cp.opts.Bin, name), args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's ^C is for the test, not for it
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("controlplane: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	cp.procs = append(cp.procs, p)
	return nil
}

// Close stops every component (SIGTERM, then SIGKILL after 10 s), newest first, and waits for
// them.
func (cp *ControlPlane) Close() error {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		p := cp.procs[i]
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	cp.procs = nil
	return nil
}

// WriteServiceAccountKey writes (sa.key and sa.pub in dir) the key that signs service-account tokens, and its public half.
func WriteServiceAccountKey(dir string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	return errors.Join(os.WriteFile(filepath.Join(dir, "sa.key"), priv, 0o600), os.WriteFile(filepath.Join(dir, "sa.pub"), pub, 0o644))
}

// freePorts returns n TCP ports free on 127.0.0.1 now.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
