package kubesource_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/kubesource"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

var _ agent.Source = (*kubesource.Source)(nil)

func pod(ns, name, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: node}}
}

func names[T metav1.Object](objs []T) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetNamespace()+"/"+o.GetName())
	}
	return out
}

// start runs a Source on a fake clientset holding objs, stopping it at the test's end.
func start(t *testing.T, objs ...runtime.Object) (*kubesource.Source, *fake.Clientset, context.Context) {
	t.Helper()
	client := fake.NewClientset(objs...)
	src := kubesource.New(client, 0)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	src.Start(ctx)
	return src, client, ctx
}

// eventually waits for cond, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNothingBeforeSync: until WaitForSync has seen the informers synced, the lists are empty and
// no change is signalled; then everything is there at once, with one signal.
func TestNothingBeforeSync(t *testing.T) {
	client := fake.NewClientset(pod("default", "a", "node-a"), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}})
	src := kubesource.New(client, 0)
	changed, unsubscribe := src.Subscribe()
	defer unsubscribe()
	if len(src.Pods()) != 0 || len(src.Nodes()) != 0 || src.Synced() {
		t.Fatal("objects handed out before the informers started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src.Start(ctx)
	time.Sleep(200 * time.Millisecond) // the informers list and sync meanwhile
	if len(src.Pods()) != 0 {
		t.Error("pods handed out before WaitForSync")
	}
	select {
	case <-changed:
		t.Error("a change signalled before WaitForSync")
	default:
	}
	if err := src.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(time.Second):
		t.Error("no change signalled by WaitForSync")
	}
	if got := names(src.Pods()); !slices.Equal(got, []string{"default/a"}) {
		t.Errorf("pods %v", got)
	}
	if got := names(src.Nodes()); !slices.Equal(got, []string{"/node-a"}) {
		t.Errorf("nodes %v", got)
	}
}

// TestWaitForSyncGivesUp: a context that ends first is an error naming what had not synced.
func TestWaitForSyncGivesUp(t *testing.T) {
	src := kubesource.New(fake.NewClientset(), 0) // never started: nothing syncs
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := src.WaitForSync(ctx); err == nil {
		t.Fatal("WaitForSync of informers never started: want an error")
	}
}

// TestSortedWhateverTheOrder: objects created in any order come out sorted by namespace, then
// name, for every kind and for NodePods.
func TestSortedWhateverTheOrder(t *testing.T) {
	var objs []runtime.Object
	for _, ns := range []string{"b", "a", "c"} {
		for _, n := range []string{"z", "m", "a", "q"} {
			node := "node-a"
			if n == "m" {
				node = "node-b"
			}
			objs = append(objs, pod(ns, n, node))
			objs = append(objs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: n}})
		}
	}
	rand.Shuffle(len(objs), func(i, j int) { objs[i], objs[j] = objs[j], objs[i] })
	src, _, ctx := start(t, objs...)
	if err := src.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"a/a", "a/m", "a/q", "a/z", "b/a", "b/m", "b/q", "b/z", "c/a", "c/m", "c/q", "c/z"}
	if got := names(src.Pods()); !slices.Equal(got, want) {
		t.Errorf("pods %v, want %v", got, want)
	}
	if got := names(src.Services()); !slices.Equal(got, want) {
		t.Errorf("services %v, want %v", got, want)
	}
	if got := names(src.NodePods("node-b")); !slices.Equal(got, []string{"a/m", "b/m", "c/m"}) {
		t.Errorf("pods of node-b %v", got)
	}
}

// TestFollowsChanges: objects added, changed and deleted reach the lists, each with a signal.
func TestFollowsChanges(t *testing.T) {
	src, client, ctx := start(t, pod("default", "a", "node-a"))
	if err := src.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	changed, unsubscribe := src.Subscribe()
	defer unsubscribe()
	pods := client.CoreV1().Pods("default")
	if _, err := pods.Create(ctx, pod("default", "b", "node-a"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no change signalled for a new pod")
	}
	eventually(t, "pod b", func() bool { return slices.Equal(names(src.Pods()), []string{"default/a", "default/b"}) })
	b := pod("default", "b", "node-a")
	b.Status.PodIP = "10.244.0.9"
	if _, err := pods.UpdateStatus(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod b's address", func() bool {
		ps := src.Pods()
		return len(ps) == 2 && ps[1].Status.PodIP == "10.244.0.9"
	})
	select { // what the update signalled
	case <-changed:
	default:
	}
	if err := pods.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod a gone", func() bool { return slices.Equal(names(src.Pods()), []string{"default/b"}) })
	select {
	case <-changed:
	case <-time.After(time.Second):
		t.Error("no change signalled")
	}
}

// TestIngressesAndSecrets: only podnet's Ingresses and only TLS Secrets are handed out.
func TestIngressesAndSecrets(t *testing.T) {
	podnet, other := cluster.IngressClassName, "nginx"
	src, _, ctx := start(t,
		&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "ours"}, Spec: networkingv1.IngressSpec{IngressClassName: &podnet}},
		&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "theirs"}, Spec: networkingv1.IngressSpec{IngressClassName: &other}},
		&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "classless"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "cert"}, Type: corev1.SecretTypeTLS},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "password"}, Type: corev1.SecretTypeOpaque},
	)
	if err := src.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := names(src.Ingresses()); !slices.Equal(got, []string{"web/ours"}) {
		t.Errorf("ingresses %v, want web/ours (no default class: a classless one is not podnet's)", got)
	}
	if got := names(src.Secrets()); !slices.Equal(got, []string{"web/cert"}) {
		t.Errorf("secrets %v, want the TLS one only", got)
	}
}
