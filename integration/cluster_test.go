package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const clusterObjects = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints: [{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}]
      containers:
      - name: web
        image: docker.io/library/podnet:dev
        imagePullPolicy: Never
        command: [/podnet, serve, --http, "8080"]
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: podnet
  rules: [{host: web.example, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers: [{name: c, image: docker.io/library/toolbox:1, imagePullPolicy: Never, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Pod
metadata: {name: stranger, namespace: other}
spec:
  containers: [{name: c, image: docker.io/library/toolbox:1, imagePullPolicy: Never, command: [sleep, "3600"]}]
`

// clusterPolicy admits to web only pods of namespace default (so not the Ingress controller on
// the nodes either: it is applied after the Ingress check).
const clusterPolicy = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-default-only}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}}]}]
`

// TestCluster brings up a real 2-node cluster (kubelet, containerd and runc on each node, podnet
// installed from deploy/podnet.yaml as its DaemonSet), applies a Deployment, a Service, an
// Ingress and a NetworkPolicy written here, checks them from inside pods, and takes the cluster
// down, leaving the host as it was.
func TestCluster(t *testing.T) {
	requireLab(t)
	if os.Geteuid() != 0 {
		t.Skip("skipped: podnet cluster runs kubelets and containerd as root (the root and no-netfilter runs cover it)")
	}
	bin := kubeBin()
	for _, c := range []string{"kubelet", "kube-scheduler", "containerd", "ctr", "cni/loopback", "kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(bin, c)); err != nil {
			t.Skipf("skipped: %s not in %s: make kube-bin builds it", c, bin)
		}
	}
	for _, tool := range []string{"runc", "busybox", "nsenter", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s is not installed (apt-get install runc busybox-static util-linux)", tool)
		}
	}
	name := fmt.Sprintf("it%d", os.Getpid())
	root := t.TempDir()
	before := clusterHostSnapshot(t)
	podnet := func(args ...string) (string, error) {
		cmd := exec.Command(podnetBin, append([]string{"cluster", "--name", name, "--kube-bin", bin, "--state-root", root}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			if out, err := podnet("down"); err != nil {
				t.Errorf("cluster down: %v\n%s", err, out)
			}
		}
	})
	start := time.Now()
	out, err := podnet("up", "--nodes", "2")
	if err != nil {
		logs, _ := exec.Command("sh", "-c", "tail -n 30 "+filepath.Join(root, name, "logs", "*.log")).CombinedOutput()
		t.Fatalf("cluster up: %v\n%s\n%s", err, out, logs)
	}
	t.Logf("cluster up took %v", time.Since(start).Round(time.Second))
	kubeconfig := filepath.Join(root, name, "kubeconfig")
	if !strings.Contains(out, "export KUBECONFIG="+kubeconfig) {
		t.Errorf("cluster up printed no export line:\n%s", out)
	}
	kubectl := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(bin, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	nodes, err := kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.conditions[?(@.type=="Ready")].status};{end}`)
	if err != nil || strings.Count(nodes, " True;") != 2 || !strings.Contains(nodes, "10.244.") {
		t.Fatalf("nodes: %q (%v), want two Ready with pod CIDRs", nodes, err)
	}
	if out, err := podnet("status"); err != nil || !strings.Contains(out, "node-2") || strings.Contains(out, "not running") {
		t.Errorf("cluster status: %v\n%s", err, out)
	}
	manifest := filepath.Join(t.TempDir(), "objects.yaml")
	os.WriteFile(manifest, []byte(clusterObjects), 0o644)
	if out, err := kubectl("apply", "-f", manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if out, err := kubectl("wait", "--for=condition=Ready", "pod", "--all", "-A", "--timeout=180s"); err != nil {
		desc, _ := kubectl("describe", "pods", "-A")
		t.Fatalf("pods not Ready: %v\n%s\n%s", err, out, desc)
	}
	exec := func(ns, pod string, args ...string) (string, error) {
		return kubectl(append([]string{"exec", "-n", ns, pod, "--"}, args...)...)
	}
	t.Run("pod to pod on both nodes, source kept", func(t *testing.T) {
		ips, _ := kubectl("get", "pods", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.status.podIP} {.spec.nodeName};{end}`)
		clientIP, _ := kubectl("get", "pod", "client", "-o", "jsonpath={.status.podIP}")
		if strings.Count(ips, ";") != 2 || !strings.Contains(ips, "node-1") || !strings.Contains(ips, "node-2") {
			t.Fatalf("web pods %q: want one on each node", ips)
		}
		for _, e := range strings.Split(strings.TrimSuffix(ips, ";"), ";") {
			ip := strings.Fields(e)[0]
			out, err := exec("default", "client", "curl", "-sS", "--max-time", "5", "http://"+ip+":8080/clientip")
			if err != nil || out != clientIP {
				t.Errorf("client to web %s: %q (%v), want the client's address %s", e, out, err, clientIP)
			}
		}
	})
	t.Run("Service by DNS name", func(t *testing.T) {
		out, err := exec("default", "client", "curl", "-sS", "--max-time", "5", "http://web.default.svc.cluster.local/")
		if err != nil || !strings.HasPrefix(out, "web-") {
			t.Errorf("curl http://web.default.svc.cluster.local/: %q (%v), want a web pod's name", out, err)
		}
		if out, err := exec("default", "client", "getent", "hosts", "kubernetes.default"); err != nil || !strings.Contains(out, "10.96.0.1") {
			t.Errorf("getent hosts kubernetes.default: %q (%v)", out, err)
		}
	})
	t.Run("the kubernetes Service from a pod", func(t *testing.T) {
		out, err := exec("default", "client", "curl", "-sSk", "--max-time", "5", "https://kubernetes.default/version")
		if err != nil || !strings.Contains(out, "gitVersion") {
			t.Errorf("https://kubernetes.default/version: %q (%v)", out, err)
		}
	})
	t.Run("Ingress on a node's address", func(t *testing.T) {
		out, err := exec("default", "client", "curl", "-sS", "--max-time", "5", "-H", "Host: web.example", "http://10.250.0.12/")
		if err != nil || !strings.HasPrefix(out, "web-") {
			t.Errorf("Ingress on node-2: %q (%v)", out, err)
		}
	})
	t.Run("NetworkPolicy", func(t *testing.T) {
		if out, err := exec("other", "stranger", "curl", "-sS", "--max-time", "5", "http://web.default/"); err != nil {
			t.Fatalf("before the policy, stranger to web: %q (%v)", out, err)
		}
		policy := filepath.Join(t.TempDir(), "policy.yaml")
		os.WriteFile(policy, []byte(clusterPolicy), 0o644)
		if out, err := kubectl("apply", "-f", policy); err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := exec("other", "stranger", "curl", "-sS", "--max-time", "2", "http://web.default/")
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a pod of namespace other still reaches web, which admits only namespace default")
			}
		}
		if out, err := exec("default", "client", "curl", "-sS", "--max-time", "5", "http://web.default/"); err != nil {
			t.Errorf("client of namespace default to web under the policy: %q (%v)", out, err)
		}
	})
	t.Run("operator tools through the API server", func(t *testing.T) {
		clusterOperatorTools(t, kubeconfig, kubectl, exec)
	})
	t.Run("upstream smoke specs", func(t *testing.T) {
		upstreamSmoke(t, bin, kubeconfig)
	})
	// Last: it restarts the agents.
	t.Run("agents under SCHED_RR", func(t *testing.T) {
		clusterRealtime(t, name, kubectl, exec)
	})
	if out, err := podnet("down"); err != nil {
		t.Fatalf("cluster down: %v\n%s", err, out)
	}
	downDone = true
	if after := clusterHostSnapshot(t); after != before {
		t.Errorf("the host changed:\nbefore: %s\nafter:  %s", before, after)
	}
	if _, err := os.Stat(filepath.Join(root, name)); err == nil {
		t.Errorf("the cluster's state directory is still there")
	}
}

// clusterHostSnapshot describes what a cluster must leave as it found it: the host's links and routes,
// its network namespaces, its mounts and its top-level cgroups.
func clusterHostSnapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	fmt.Fprintf(&b, "links: %s\n", linkNames(string(links)))
	for _, c := range [][]string{{"ip", "route"}, {"ip", "netns", "list"}} {
		out, _ := exec.Command(c[0], c[1:]...).Output()
		fmt.Fprintf(&b, "%s: %s\n", strings.Join(c, " "), out)
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	fmt.Fprintf(&b, "mounts: %d lines\n", strings.Count(string(mounts), "\n"))
	cg, _ := filepath.Glob("/sys/fs/cgroup/memory/*")
	fmt.Fprintf(&b, "cgroups: %v\n", cg)
	return b.String()
}

// upstreamSmoke runs six specs of the upstream suites (hack/smoke-focus.txt: pod to pod, node to
// pod, a Service, DNS, a NodePort, a default-deny NetworkPolicy) with e2e.test against the
// cluster, three at a time. make conformance runs the whole suites.
func upstreamSmoke(t *testing.T, bin, kubeconfig string) {
	e2e, ginkgo := filepath.Join(bin, "e2e.test"), filepath.Join(bin, "ginkgo")
	for _, f := range []string{e2e, ginkgo, filepath.Join(bin, "agnhost")} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("skipped: %s is missing: make kube-bin builds it (make test does)", f)
		}
	}
	focus, err := os.ReadFile("../hack/smoke-focus.txt")
	if os.IsNotExist(err) {
		focus, err = os.ReadFile(filepath.Join(os.Getenv("PODNET_REPO"), "hack/smoke-focus.txt"))
	}
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command(ginkgo, "--procs", "3", "--focus", strings.TrimSpace(string(focus)), "--no-color", "--timeout", "20m",
		e2e, "--", "--kubeconfig", kubeconfig, "--provider", "local", "--num-nodes", "2", "--disable-log-dump", "--dump-logs-on-failure=false")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	var result string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Ran ") || strings.Contains(l, " Passed | ") {
			result += strings.TrimSpace(l) + " "
		}
	}
	t.Logf("upstream smoke specs in %v: %s", time.Since(start).Round(time.Second), result)
	if err != nil || !strings.Contains(result, "Ran 6 of") || !strings.Contains(result, "SUCCESS!") {
		var failed []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "[FAIL]") || strings.Contains(l, "[FAILED]") {
				failed = append(failed, strings.TrimSpace(l))
			}
		}
		tail := string(out)
		if len(tail) > 6000 {
			tail = tail[len(tail)-6000:]
		}
		t.Errorf("upstream smoke specs: %v: %s\n%s\n%s", err, result, strings.Join(failed, "\n"), tail)
	}
}

// clusterOperatorTools runs podnet check, flows and capture against a cluster through its API
// server, after TestCluster's NetworkPolicy subtest denied other/stranger.
func clusterOperatorTools(t *testing.T, kubeconfig string, kubectl func(...string) (string, error), podExec func(ns, pod string, args ...string) (string, error)) {
	ops := func(args ...string) (string, error) {
		out, err := exec.Command(podnetBin, append(args, "--kubeconfig", kubeconfig)...).CombinedOutput()
		return string(out), err
	}
	out, err := ops("check")
	if err != nil {
		t.Errorf("podnet check --kubeconfig: %v\n%s", err, out)
	}
	if rows := checkRows(out); rows["pod to pod, across nodes"] != "pass" || rows["NetworkPolicy denies"] != "pass" || rows["ClusterIP"] != "pass" {
		t.Errorf("podnet check --kubeconfig:\n%s", out)
	}
	// The NetworkPolicy subtest's stranger was denied at web's node, by its policy.
	out, err = ops("flows", "-o", "json", "--verdict", "denied", "--namespace", "other")
	if err != nil {
		t.Fatalf("podnet flows --kubeconfig: %v\n%s", err, out)
	}
	found := false
	for _, r := range flowRecords(t, out) {
		found = found || r.Source == "other/stranger" && strings.HasPrefix(r.Dest, "default/web-") && strings.Join(r.Policies, ",") == "default/web-from-default-only"
	}
	if !found {
		t.Errorf("podnet flows --kubeconfig shows no denied flow from other/stranger to web by default/web-from-default-only:\n%s", out)
	}
	// A capture of the client while it talks to a web pod, through the podnet pod of its node.
	file := filepath.Join(t.TempDir(), "client.pcap")
	capture := exec.Command(podnetBin, "capture", "--kubeconfig", kubeconfig, "client", "-c", "6", "-w", file, "tcp", "port", "8080")
	var capOut strings.Builder
	capture.Stdout, capture.Stderr = &capOut, &capOut
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- capture.Wait() }()
	ip, _ := kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].status.podIP}")
	deadline := time.After(60 * time.Second)
loop:
	for {
		podExec("default", "client", "curl", "-sS", "--max-time", "2", "-o", "/dev/null", "http://"+ip+":8080/")
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("podnet capture --kubeconfig: %v\n%s", err, capOut.String())
			}
			break loop
		case <-deadline:
			capture.Process.Kill()
			t.Fatalf("podnet capture --kubeconfig -c 6 did not end:\n%s", capOut.String())
		case <-time.After(time.Second):
		}
	}
	if !strings.Contains(capOut.String(), "6 packets written") {
		t.Errorf("podnet capture: %s", capOut.String())
	}
	if tshark, err := exec.LookPath("tshark"); err == nil {
		b, err := exec.Command(tshark, "-r", file, "-T", "fields", "-e", "tcp.dstport", "-e", "tcp.srcport").Output()
		if n := strings.Count(strings.TrimSpace(string(b)), "8080"); err != nil || n < 6 {
			t.Errorf("tshark -r the capture: %v, %d packets to or from port 8080, want 6\n%s", err, n, b)
		}
	}
}

// clusterRealtime adds --realtime-priority=1 to the DaemonSet, as an operator would, and checks
// that every thread of both agents then runs under SCHED_RR while the pods' programs do not, that
// on a kernel with CONFIG_RT_GROUP_SCHED each agent gave its cgroups the budget that Kubernetes
// does not, and that the network works after the restart.
func clusterRealtime(t *testing.T, name string, kubectl func(...string) (string, error), podExec func(ns, pod string, args ...string) (string, error)) {
	patch := `[{"op": "add", "path": "/spec/template/spec/containers/0/command/-", "value": "--realtime-priority=1"}]`
	if out, err := kubectl("-n", "podnet-system", "patch", "daemonset", "podnet", "--type=json", "-p", patch); err != nil {
		t.Fatalf("patch: %v\n%s", err, out)
	}
	if out, err := kubectl("-n", "podnet-system", "rollout", "status", "daemonset", "podnet", "--timeout=180s"); err != nil {
		logs, _ := kubectl("-n", "podnet-system", "logs", "-l", "app=podnet", "--tail=20")
		t.Fatalf("rollout: %v\n%s\n%s", err, out, logs)
	}
	budgets := false
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"); err == nil {
		budgets = true
	}
	// The new agents: both found, each with every thread under SCHED_RR (one just started may
	// not have reached Enable yet, and an old one may still be going).
	var agents []int
	var notRR []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		agents, notRR = clusterAgents(t, name), nil
		for _, pid := range agents {
			notRR = append(notRR, threadsNotRR(pid)...)
		}
		if (len(agents) == 2 && len(notRR) == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(agents) != 2 || len(notRR) > 0 {
		t.Fatalf("found %d podnet node processes in the cluster's cgroups, want 2, each with every thread under SCHED_RR at priority 1: %v", len(agents), notRR)
	}
	// Started once each: an agent refused its budget would have exited and been restarted.
	if out, err := kubectl("-n", "podnet-system", "get", "pods", "-l", "app=podnet", "-o", `jsonpath={range .items[*]}{.status.containerStatuses[0].restartCount};{end}`); err != nil || out != "0;0;" {
		t.Errorf("the agents' restart counts: %q (%v), want 0;0;", out, err)
	}
	for _, pid := range agents {
		if budgets {
			cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			dir := ""
			for _, line := range strings.Split(string(cg), "\n") {
				if f := strings.SplitN(line, ":", 3); len(f) == 3 && slices.Contains(strings.Split(f[1], ","), "cpu") {
					dir = filepath.Join("/sys/fs/cgroup/cpu", f[2])
				}
			}
			b, err := os.ReadFile(filepath.Join(dir, "cpu.rt_runtime_us"))
			if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || n <= 0 {
				t.Errorf("agent %d's cgroup %s: cpu.rt_runtime_us %q (%v), want the budget it gave itself", pid, dir, b, err)
			}
		}
	}
	if budgets {
		pods, err := kubectl("-n", "podnet-system", "get", "pods", "-l", "app=podnet", "-o", "name")
		if n := len(strings.Fields(pods)); err != nil || n != 2 {
			t.Errorf("agent pods: %q (%v), want 2", pods, err)
		}
		for _, pod := range strings.Fields(pods) {
			if logs, _ := kubectl("-n", "podnet-system", "logs", pod, "-c", "podnet"); !strings.Contains(logs, "gave a cgroup a real-time budget") {
				t.Errorf("%s's log does not say it gave its cgroups a real-time budget:\n%s", pod, logs)
			}
		}
	}
	// A pod's program: the client's sleep, started by runc, not by the agent.
	if out, err := podExec("default", "client", "cat", "/proc/1/stat"); err != nil || len(strings.Fields(out)) < 41 || strings.Fields(out)[40] != "0" {
		t.Errorf("the client pod's program: /proc/1/stat %q (%v); want policy field 0 (SCHED_OTHER)", out, err)
	}
	// The network after the agents' restart: DNS, a Service, the other node.
	deadline = time.Now().Add(30 * time.Second)
	for {
		out, err := podExec("default", "client", "curl", "-sS", "--max-time", "5", "http://web.default.svc.cluster.local/")
		if err == nil && strings.HasPrefix(out, "web-") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the agents restarted under SCHED_RR, curl http://web.default.svc.cluster.local/: %q (%v)", out, err)
		}
		time.Sleep(time.Second)
	}
}

// clusterAgents returns the pids of the podnet node processes in cluster name's node cgroups.
func clusterAgents(t *testing.T, name string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if strings.HasPrefix(string(cmdline), "/podnet\x00node\x00") && strings.Contains(string(cg), "/podnet-"+name+"-node-") {
			pids = append(pids, pid)
		}
	}
	return pids
}
