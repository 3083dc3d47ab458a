// Command cniadd measures CNI ADD to first packet: for each of N pods, the time from running the
// plugin's ADD (as containerd runs it: environment and stdin) until a ping from inside the pod's
// new network namespace to its gateway is answered. It measures podnet-cni against a podnet
// agent, and in the same run the reference bridge plugin with host-local IPAM inside a "node"
// network namespace of its own (no host interface is touched), and prints both and the ratio.
//
// Run it as root through bench/cniadd.sh, which builds what it needs.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/agent/agenttest"
	"github.com/podnet/podnet/attach"
	"github.com/podnet/podnet/sandbox"
)

func main() {
	n := flag.Int("n", 100, "pods per plugin")
	podnetCNI := flag.String("podnet-cni", "bin/podnet-cni", "the podnet-cni binary")
	refDir := flag.String("ref", "bin/kube/cni", "the directory of the reference bridge and host-local plugins")
	flag.Parse()
	if err := run(*n, *podnetCNI, *refDir); err != nil {
		fmt.Fprintln(os.Stderr, "cniadd:", err)
		os.Exit(1)
	}
}

func run(n int, podnetCNI, refDir string) error {
	dir, err := os.MkdirTemp("", "cniadd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// podnet: an agent in this process, podnet-cni on its socket.
	src := &agenttest.Source{}
	opts := agenttest.Options(src, "127.0.252.1", filepath.Join(dir, "agent"))
	opts.Network.MTU = 1500
	a, err := agent.New(opts)
	if err != nil {
		return err
	}
	a.Start()
	defer a.Close()
	sock := filepath.Join(dir, "cni.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: attach.Handler(a)}
	go srv.Serve(ln)
	defer srv.Close()
	podnetConf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"podnet","type":"podnet-cni","socket":%q,"stateDir":%q}`, sock, filepath.Join(dir, "cni-state"))
	podnet, err := measure(n, podnetCNI, filepath.Dir(podnetCNI), podnetConf, "10.244.0.1", "")
	if err != nil {
		return fmt.Errorf("podnet-cni: %w", err)
	}

	// The reference: bridge + host-local, run inside a node namespace of its own.
	node, err := sandbox.New()
	if err != nil {
		return err
	}
	defer node.Close()
	nodePath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), node.NetNS())
	bridgeConf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"ref","type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":false,
		"ipam":{"type":"host-local","subnet":"10.250.0.0/16","gateway":"10.250.0.1","dataDir":%q}}`, filepath.Join(dir, "host-local"))
	ref, err := measure(n, filepath.Join(refDir, "bridge"), refDir, bridgeConf, "10.250.0.1", nodePath)
	if err != nil {
		return fmt.Errorf("reference bridge plugin: %w", err)
	}

	p50, p99 := quantile(podnet, 0.5), quantile(podnet, 0.99)
	r50, r99 := quantile(ref, 0.5), quantile(ref, 0.99)
	fmt.Printf("CNI ADD to first packet, %d pods each, same run\n", n)
	fmt.Printf("%-36s %10s %10s\n", "", "median", "p99")
	fmt.Printf("%-36s %10s %10s\n", "podnet-cni (agent attach)", ms(p50), ms(p99))
	fmt.Printf("%-36s %10s %10s\n", "reference bridge + host-local", ms(r50), ms(r99))
	fmt.Printf("%-36s %10.2f %10.2f\n", "ratio podnet / reference", float64(p50)/float64(r50), float64(p99)/float64(r99))
	verdict := "MET"
	if p50 >= 50*time.Millisecond {
		verdict = "MISSED"
	}
	fmt.Printf("goal: podnet median under 50 ms: %s\n", verdict)
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// measure makes n pod namespaces and, for each, times ADD plus the first answered ping to gw.
// With nodeNS set, the plugin runs in that network namespace (nsenter).
func measure(n int, plugin, pluginPath, conf, gw, nodeNS string) ([]time.Duration, error) {
	if _, err := netip.ParseAddr(gw); err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := range n {
		pod, err := sandbox.New()
		if err != nil {
			return nil, err
		}
		podPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), pod.NetNS())
		id := fmt.Sprintf("bench-%d", i)
		var cmd *exec.Cmd
		if nodeNS != "" {
			cmd = exec.Command("nsenter", "--net="+nodeNS, plugin)
		} else {
			cmd = exec.Command(plugin)
		}
		cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=" + id, "CNI_NETNS=" + podPath, "CNI_IFNAME=eth0",
			"CNI_PATH=" + pluginPath, "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=" + id}
		cmd.Stdin = strings.NewReader(conf)
		start := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			pod.Close()
			return nil, fmt.Errorf("ADD %s: %v\n%s", id, err, b)
		}
		for {
			ping := exec.Command("nsenter", "--net="+podPath, "ping", "-c", "1", "-W", "1", "-q", gw)
			if ping.Run() == nil {
				break
			}
			if time.Since(start) > 10*time.Second {
				pod.Close()
				return nil, fmt.Errorf("pod %s: no answer from %s", id, gw)
			}
		}
		out = append(out, time.Since(start))
		// Pods stay (their namespaces held) until the end, as a node's pods do.
		defer pod.Close()
	}
	return out, nil
}
