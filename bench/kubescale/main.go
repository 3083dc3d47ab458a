// Command kubescale measures a node agent's memory and CPU against a real API server holding a
// large cluster: 1,000 pods on 10 nodes, 10,000 Services with an EndpointSlice each, and 100
// NetworkPolicies (issue 14). It runs `podnet node` and, as the reference in the same run, kube-proxy
// in nftables mode (which covers only the Services; podnet also serves DNS and NetworkPolicy from
// the same informers), one after the other, each through the same three phases:
//
//   - start: from the process's start to 30 s later (informer sync and the first full
//     programming);
//   - idle: the next 15 s;
//   - churn: 1,000 EndpointSlices changed (one endpoint each) over the next 10 s, then 10 s to
//     settle.
//
// It prints CPU seconds per phase and resident memory after each, as read from /proc.
//
// It must run as root inside a network namespace of its own (bench/kubescale.sh makes one), where
// it starts etcd, kube-apiserver and kube-controller-manager on loopback and lets kube-proxy write
// its nftables rules; nothing of the host's network is touched.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/internal/controlplane"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

var (
	podnetBin = flag.String("podnet", "bin/podnet", "the podnet binary")
	kubeBin   = flag.String("kube-bin", "bin/kube", "etcd, kube-apiserver, kube-controller-manager, kubectl and kube-proxy")
	nodes     = flag.Int("nodes", 10, "nodes")
	pods      = flag.Int("pods", 1000, "pods, spread over the nodes")
	services  = flag.Int("services", 10000, "Services, each with one EndpointSlice of 3 pods")
	policies  = flag.Int("policies", 100, "NetworkPolicies")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	dir, err := os.MkdirTemp("", "podnet-kubescale-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	cp, err := controlplane.Start(ctx, controlplane.Options{Bin: *kubeBin, Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer cp.Close()
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 5000, 5000
	client := kubernetes.NewForConfigOrDie(cfg)

	start := time.Now()
	ips := populate(ctx, client)
	log.Printf("cluster: %d nodes, %d pods, %d Services with an EndpointSlice each, %d NetworkPolicies, made in %.1f s",
		*nodes, *pods, *services, *policies, time.Since(start).Seconds())

	type row struct {
		name                        string
		startCPU, idleCPU, churnCPU float64
		startRSS, idleRSS, churnRSS float64
	}
	var rows []row
	for _, agent := range []string{"podnet node", "kube-proxy"} {
		cmd := agentCommand(agent, cp.Kubeconfig, dir)
		logf, _ := os.Create(filepath.Join(dir, strings.ReplaceAll(agent, " ", "-")+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			log.Fatalf("%s: %v", agent, err)
		}
		pid := cmd.Process.Pid
		r := row{name: agent}
		time.Sleep(30 * time.Second)
		if err := programmed(ctx, client, agent); err != nil {
			b, _ := os.ReadFile(logf.Name())
			log.Fatalf("%s has not programmed the last Service after 30 s: %v\n%s", agent, err, b)
		}
		c0 := cpuSeconds(pid)
		r.startCPU, r.startRSS = c0, rssMiB(pid)
		time.Sleep(15 * time.Second)
		c1 := cpuSeconds(pid)
		r.idleCPU, r.idleRSS = c1-c0, rssMiB(pid)
		churn(ctx, client, ips)
		time.Sleep(10 * time.Second)
		r.churnCPU, r.churnRSS = cpuSeconds(pid)-c1, rssMiB(pid)
		if r.startRSS == 0 || r.churnRSS == 0 { // no VmRSS: the process has exited
			b, _ := os.ReadFile(logf.Name())
			log.Fatalf("%s stopped early:\n%s", agent, b)
		}
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		logf.Close()
		rows = append(rows, r)
	}
	p, k := rows[0], rows[1]
	fmt.Printf("\n%d pods, %d Services (%d EndpointSlices), %d NetworkPolicies, %d nodes; one agent, on node-0\n\n", *pods, *services, *services, *policies, *nodes)
	fmt.Printf("%-34s %12s %12s %8s\n", "", "podnet node", "kube-proxy", "ratio")
	line := func(what string, a, b float64, unit string) {
		ratio := "-"
		if b > 0 {
			ratio = fmt.Sprintf("%.2f", a/b)
		}
		fmt.Printf("%-34s %9.2f %-3s %9.2f %-3s %6s\n", what, a, unit, b, unit, ratio)
	}
	line("CPU, start to 30 s (sync)", p.startCPU, k.startCPU, "s")
	line("resident memory at 30 s", p.startRSS, k.startRSS, "MiB")
	line("CPU, 15 s idle", p.idleCPU, k.idleCPU, "s")
	line("resident memory after idle", p.idleRSS, k.idleRSS, "MiB")
	line("CPU, 1,000 EndpointSlice changes", p.churnCPU, k.churnCPU, "s")
	line("resident memory after churn", p.churnRSS, k.churnRSS, "MiB")
	fmt.Println("\npodnet node also serves cluster DNS and NetworkPolicy from the same informers; kube-proxy (nftables mode) serves only the Services.")
}

func agentCommand(agent, kubeconfig, dir string) *exec.Cmd {
	if agent == "kube-proxy" {
		return exec.Command(filepath.Join(*kubeBin, "kube-proxy"), "--kubeconfig", kubeconfig, "--proxy-mode", "nftables",
			"--hostname-override", "node-0", "--cluster-cidr", "10.244.0.0/16", "--conntrack-max-per-core", "0",
			"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256")
	}
	return exec.Command(*podnetBin, "node", "--kubeconfig", kubeconfig, "--node-name", "node-0", "--node-address", "127.0.0.1",
		"--state-dir", filepath.Join(dir, "podnet-state"), "--cni-socket", filepath.Join(dir, "cni.sock"), "--cluster-dns", "10.96.0.10",
		"--ingress-http-port", "0", "--ingress-https-port", "0")
}

// programmed checks that the agent serves the last Service made: podnet answers its name at the
// cluster DNS address (through podnet0, from this network namespace), kube-proxy has its
// ClusterIP in its nftables rules.
func programmed(ctx context.Context, client kubernetes.Interface, agent string) error {
	last := *services - 1
	svc, err := client.CoreV1().Services(fmt.Sprintf("ns-%d", last%10)).Get(ctx, fmt.Sprintf("svc-%d", last), metav1.GetOptions{})
	if err != nil {
		return err
	}
	if agent == "kube-proxy" {
		out, err := exec.Command("nft", "list", "table", "ip", "kube-proxy").Output()
		if err != nil || !strings.Contains(string(out), svc.Spec.ClusterIP+" ") {
			return fmt.Errorf("ClusterIP %s not in nft's table ip kube-proxy (%v)", svc.Spec.ClusterIP, err)
		}
		return nil
	}
	m := new(dns.Msg)
	m.SetQuestion(fmt.Sprintf("%s.%s.svc.cluster.local.", svc.Name, svc.Namespace), dns.TypeA)
	r, err := dns.Exchange(m, "10.96.0.10:53")
	if err != nil {
		return err
	}
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != svc.Spec.ClusterIP {
		return fmt.Errorf("DNS answered %v for %s, want %s", r.Answer, m.Question[0].Name, svc.Spec.ClusterIP)
	}
	return nil
}

// populate makes the cluster's objects and returns the pods' addresses.
func populate(ctx context.Context, client kubernetes.Interface) []string {
	for i := range *nodes {
		must(client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("127.0.1.%d", i+1)}}}}, metav1.CreateOptions{}))
	}
	cidrs := make([]netip.Prefix, *nodes)
	for i := range *nodes {
		for {
			n, err := client.CoreV1().Nodes().Get(ctx, fmt.Sprintf("node-%d", i), metav1.GetOptions{})
			if err == nil && n.Spec.PodCIDR != "" {
				cidrs[i] = netip.MustParsePrefix(n.Spec.PodCIDR)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	nss := 10
	for i := range nss {
		must(client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns-%d", i),
			Labels: map[string]string{"team": fmt.Sprintf("t%d", i%3)}}}, metav1.CreateOptions{}))
	}
	ips := make([]string, *pods)
	parallel(*pods, func(i int) {
		node := i % *nodes
		ip := cidrs[node].Addr()
		for range 2 + i / *nodes {
			ip = ip.Next()
		}
		ips[i] = ip.String()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", i%nss), Name: fmt.Sprintf("pod-%d", i),
				Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%100), "tier": []string{"web", "api", "db"}[i%3]}},
			Spec: corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", node), Containers: []corev1.Container{{Name: "c", Image: "x",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
		}
		p, err := client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			log.Fatal(err)
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ips[i], PodIPs: []corev1.PodIP{{IP: ips[i]}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		must(client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}))
	})
	parallel(*services, func(i int) {
		ns := fmt.Sprintf("ns-%d", i%nss)
		name := fmt.Sprintf("svc-%d", i)
		must(client.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}, metav1.CreateOptions{}))
		must(client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice(ns, name, ips, i, 0), metav1.CreateOptions{}))
	})
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(8080)
	parallel(*policies, func(i int) {
		ns := fmt.Sprintf("ns-%d", i%nss)
		must(client.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pol-%d", i)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", i%100)}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", i%3)}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}},
					}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				}},
			},
		}, metav1.CreateOptions{}))
	})
	return ips
}

// slice is Service name's EndpointSlice: three pods, chosen by i and shifted by gen.
func slice(ns, name string, ips []string, i, gen int) *discoveryv1.EndpointSlice {
	ready := true
	port, pname, tcp := int32(8080), "http", corev1.ProtocolTCP
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "podnet-bench"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &tcp}},
	}
	for k := range 3 {
		j := (i*7 + k*131 + gen) % len(ips)
		node := fmt.Sprintf("node-%d", j%*nodes)
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ips[j]}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return s
}

var churnGen = 0

// churn changes 1,000 EndpointSlices (one endpoint each) over 10 s.
func churn(ctx context.Context, client kubernetes.Interface, ips []string) {
	churnGen++
	start := time.Now()
	for batch := range 10 {
		parallel(100, func(k int) {
			i := (batch*100 + k) * (*services / 1000)
			ns, name := fmt.Sprintf("ns-%d", i%10), fmt.Sprintf("svc-%d", i)
			s, err := client.DiscoveryV1().EndpointSlices(ns).Get(ctx, name+"-1", metav1.GetOptions{})
			if err != nil {
				log.Fatal(err)
			}
			n := slice(ns, name, ips, i, churnGen)
			s.Endpoints = n.Endpoints
			must(client.DiscoveryV1().EndpointSlices(ns).Update(ctx, s, metav1.UpdateOptions{}))
		})
		time.Sleep(time.Until(start.Add(time.Duration(batch+1) * time.Second)))
	}
}

func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

func must[T any](_ T, err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// cpuSeconds is the user and system time of pid and its waited-for children, from /proc.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ticks float64
	for _, i := range []int{11, 12} { // utime, stime (fields 14 and 15)
		v, _ := strconv.ParseFloat(f[i], 64)
		ticks += v
	}
	return ticks / 100 // USER_HZ
}

// rssMiB is the resident memory of pid in MiB.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return 0
}
