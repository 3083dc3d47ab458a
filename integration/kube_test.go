package integration

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/controlplane"
	"github.com/podnet/podnet/kubesource"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeBin is where the real Kubernetes components are: $PODNET_KUBE_BIN, else the checkout's
// bin/kube (make kube-bin).
func kubeBin() string {
	if d := os.Getenv("PODNET_KUBE_BIN"); d != "" {
		return d
	}
	abs, _ := filepath.Abs("../bin/kube")
	return abs
}

// startControlPlane starts etcd, kube-apiserver and kube-controller-manager on loopback for the
// test, or skips it naming what is missing.
func startControlPlane(t *testing.T) (*controlplane.ControlPlane, kubernetes.Interface) {
	t.Helper()
	bin := kubeBin()
	if missing := controlplane.Missing(bin); len(missing) > 0 {
		t.Skipf("skipped: %v not in %s: make kube-bin builds them (make test does)", missing, bin)
	}
	cp, err := controlplane.Start(context.Background(), controlplane.Options{Bin: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close() })
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cp, client
}

const kubeSourceObjects = `
apiVersion: v1
kind: Namespace
metadata: {name: web}
---
apiVersion: v1
kind: Node
metadata: {name: node-a}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: web, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: web, image: docker.io/library/web:1, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: web, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: web, image: docker.io/library/web:1, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: web}
type: kubernetes.io/tls
data: {tls.crt: "", tls.key: ""}
---
apiVersion: v1
kind: Secret
metadata: {name: password, namespace: web}
stringData: {password: hunter2}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ours, namespace: web}
spec:
  ingressClassName: podnet
  defaultBackend: {service: {name: web, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: theirs, namespace: web}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: web, port: {number: 80}}}
`

// TestKubeSource runs the agent's Kubernetes source against a real kube-apiserver and
// kube-controller-manager: objects made with kubectl reach it sorted, the controller-manager's
// pod CIDR and EndpointSlices too, and only TLS Secrets (the API server's field selector) and
// podnet's Ingresses are held.
func TestKubeSource(t *testing.T) {
	cp, client := startControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := kubesource.New(client, 0)
	src.Start(ctx)
	syncCtx, syncCancel := context.WithTimeout(ctx, 60*time.Second)
	defer syncCancel()
	if err := src.WaitForSync(syncCtx); err != nil {
		t.Fatal(err)
	}

	manifest := filepath.Join(t.TempDir(), "objects.yaml")
	os.WriteFile(manifest, []byte(kubeSourceObjects), 0o644)
	if _, err := cp.Kubectl(ctx, "apply", "-f", manifest); err != nil {
		t.Fatal(err)
	}
	// Report the pods running and ready, as their kubelet would.
	for i, name := range []string{"web-1", "web-2"} {
		p, err := client.CoreV1().Pods("web").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip := netip.AddrFrom4([4]byte{10, 244, 0, byte(10 + i)}).String()
		p.Status = corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		}
		if _, err := client.CoreV1().Pods("web").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	waitFor(t, "node-a's pod CIDR from the controller-manager", func() bool {
		nodes := src.Nodes()
		if len(nodes) != 1 || nodes[0].Spec.PodCIDR == "" {
			return false
		}
		cidr, err := netip.ParsePrefix(nodes[0].Spec.PodCIDR)
		return err == nil && cidr.Bits() == 24 && netip.MustParsePrefix("10.244.0.0/16").Contains(cidr.Addr())
	})
	waitFor(t, "the EndpointSlice of web/web with both pods ready", func() bool {
		for _, s := range src.EndpointSlices() {
			if s.Namespace != "web" || s.Labels["kubernetes.io/service-name"] != "web" {
				continue
			}
			var ready []string
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready = append(ready, e.Addresses...)
				}
			}
			slices.Sort(ready)
			return slices.Equal(ready, []string{"10.244.0.10", "10.244.0.11"})
		}
		return false
	})
	var svcs []string
	for _, s := range src.Services() {
		svcs = append(svcs, s.Namespace+"/"+s.Name)
	}
	if !slices.Equal(svcs, []string{"default/kubernetes", "web/web"}) {
		t.Errorf("services %v, want default/kubernetes and web/web in that order", svcs)
	}
	if pods := src.NodePods("node-a"); len(pods) != 2 || pods[0].Name != "web-1" || pods[1].Name != "web-2" {
		t.Errorf("pods of node-a: %d, want web-1 then web-2", len(pods))
	}
	if s := src.Secrets(); len(s) != 1 || s[0].Name != "cert" {
		t.Errorf("secrets: %d, want web/cert only", len(s))
	}
	if ing := src.Ingresses(); len(ing) != 1 || ing[0].Name != "ours" {
		t.Errorf("ingresses: %d, want web/ours only", len(ing))
	}

	// A deletion reaches it too.
	if out, err := cp.Kubectl(ctx, "delete", "-n", "web", "pod", "web-2", "--wait=false"); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, "deleted") {
		t.Errorf("kubectl delete: %s", out)
	}
	// Without a kubelet the pod only gets a deletion timestamp; force it as a kubelet would.
	zero := int64(0)
	client.CoreV1().Pods("web").Delete(ctx, "web-2", metav1.DeleteOptions{GracePeriodSeconds: &zero})
	waitFor(t, "web-2 gone", func() bool { return len(src.NodePods("node-a")) == 1 })
}

// waitFor polls cond for up to 60 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
