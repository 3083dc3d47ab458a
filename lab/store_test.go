package lab

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/podnet/podnet/cluster"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

const baseLab = `
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: t}
spec:
  nodes: [{name: a}, {name: b}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, command: ["podnet", "serve", "--http", "80"]}]
`

func decode(t *testing.T, manifest string) []cluster.Document {
	t.Helper()
	docs, err := cluster.Decode(strings.NewReader(manifest), "test.yaml")
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return docs
}

func newTestStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := OpenStore(path, 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(decode(t, baseLab)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	return s
}

func pods(s *Store) []*corev1.Pod {
	objs, _ := s.Get(cluster.KindPod, "", "")
	var out []*corev1.Pod
	for _, o := range objs {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}

func TestApplyCreatesNodesAndSpreadsReplicas(t *testing.T) {
	s := newTestStore(t, "")
	nodes := s.Nodes()
	if len(nodes) != 2 || nodes[0].Spec.PodCIDR != "10.244.0.0/24" || nodes[1].Spec.PodCIDR != "10.244.1.0/24" {
		t.Fatalf("nodes: %+v", nodes)
	}
	if got := nodeAddress(nodes[1]); got != "127.0.7.2" {
		t.Errorf("node b address = %s, want 127.0.7.2", got)
	}
	per := map[string]int{}
	for _, p := range pods(s) {
		if !strings.HasPrefix(p.Name, "web-") || len(p.Name) != len("web-")+10+1+5 {
			t.Errorf("pod name %q is not web-<hash>-<suffix>", p.Name)
		}
		per[p.Spec.NodeName]++
	}
	if per["a"]+per["b"] != 3 || per["a"] == 0 || per["b"] == 0 {
		t.Errorf("replicas per node = %v, want 3 spread over both", per)
	}
}

func TestApplyIsAllOrNothing(t *testing.T) {
	s := newTestStore(t, "")
	before := len(pods(s))
	bad := `
apiVersion: v1
kind: Pod
metadata: {name: ok-pod}
spec: {containers: [{name: c, command: [sleep, "1"]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: lost, namespace: nowhere}
spec: {containers: [{name: c, command: [sleep, "1"]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: misplaced}
spec: {nodeName: zz, containers: [{name: c, command: [sleep, "1"]}]}
`
	_, err := s.Apply(decode(t, bad))
	if err == nil {
		t.Fatal("apply of a pod in a missing namespace succeeded")
	}
	for _, want := range []string{
		`test.yaml: document 2 (line 7): pod/lost: metadata.namespace: Not found: namespaces "nowhere" not found`,
		`test.yaml: document 3 (line 12): pod/misplaced: spec.nodeName: Not found: "zz" is not a node of lab t`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if got := len(pods(s)); got != before {
		t.Errorf("pods after a failed apply = %d, want %d (nothing applied)", got, before)
	}
}

func TestApplyRejectsPodSpecChange(t *testing.T) {
	s := newTestStore(t, "")
	pod := `
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c, command: [sleep, "1"]}]}
`
	if res, err := s.Apply(decode(t, pod)); err != nil || res[0] != "pod/p created" {
		t.Fatalf("create: %v %v", res, err)
	}
	if res, err := s.Apply(decode(t, pod)); err != nil || res[0] != "pod/p unchanged" {
		t.Fatalf("re-apply: %v %v", res, err)
	}
	_, err := s.Apply(decode(t, strings.Replace(pod, `"1"`, `"2"`, 1)))
	if err == nil || !strings.Contains(err.Error(), "pod/p: spec: Forbidden: pod updates may not change fields") {
		t.Errorf("spec change: %v", err)
	}
}

func TestDeploymentScaleAndTemplateChange(t *testing.T) {
	s := newTestStore(t, "")
	scaled := strings.Replace(baseLab, "replicas: 3", "replicas: 5", 1)
	res, err := s.Apply(decode(t, scaled))
	if err != nil {
		t.Fatal(err)
	}
	if res[1] != "deployment.apps/web configured" {
		t.Errorf("results = %v", res)
	}
	if n := len(pods(s)); n != 5 {
		t.Errorf("pods after scaling to 5 = %d", n)
	}
	old := map[string]bool{}
	for _, p := range pods(s) {
		old[p.Name] = true
	}
	changed := strings.Replace(scaled, `"--http", "80"`, `"--http", "8080"`, 1)
	if _, err := s.Apply(decode(t, changed)); err != nil {
		t.Fatal(err)
	}
	ps := pods(s)
	if len(ps) != 5 {
		t.Fatalf("pods after template change = %d", len(ps))
	}
	for _, p := range ps {
		if old[p.Name] {
			t.Errorf("pod %s of the old template survived a template change", p.Name)
		}
	}
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindDeployment, Namespace: "default", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	if n := len(pods(s)); n != 0 {
		t.Errorf("pods after deleting their deployment = %d", n)
	}
}

func TestDeletedDeploymentPodIsReplaced(t *testing.T) {
	s := newTestStore(t, "")
	victim := pods(s)[0]
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindPod, Namespace: "default", Name: victim.Name}}); err != nil {
		t.Fatal(err)
	}
	ps := pods(s)
	if len(ps) != 3 {
		t.Fatalf("pods = %d, want the deployment to keep 3", len(ps))
	}
	for _, p := range ps {
		if p.Name == victim.Name {
			t.Errorf("deleted pod %s is still there", p.Name)
		}
	}
	_, err := s.Delete([]ObjectRef{{Kind: cluster.KindPod, Namespace: "default", Name: "nope"}, {Kind: cluster.KindPod, Namespace: "default", Name: ps[0].Name}})
	if err == nil || !strings.Contains(err.Error(), `pods "nope" not found`) {
		t.Errorf("delete of a missing pod: %v", err)
	}
	if len(pods(s)) != 3 {
		t.Errorf("a failed delete removed something")
	}
}

func TestNodeRemovalDropsItsPods(t *testing.T) {
	s := newTestStore(t, "")
	one := strings.Replace(baseLab, "[{name: a}, {name: b}]", "[{name: a}]", 1)
	if _, err := s.Apply(decode(t, one)); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Nodes()); n != 1 {
		t.Fatalf("nodes = %d", n)
	}
	ps := pods(s)
	if len(ps) != 3 {
		t.Fatalf("pods = %d, want 3 rescheduled", len(ps))
	}
	for _, p := range ps {
		if p.Spec.NodeName != "a" {
			t.Errorf("pod %s on removed node %s", p.Name, p.Spec.NodeName)
		}
	}
	_, err := s.Apply(decode(t, strings.Replace(one, "kind: Lab\nmetadata: {name: t}\nspec:\n", "kind: Lab\nmetadata: {name: t}\nspec:\n  clusterCIDR: 10.200.0.0/16\n", 1)))
	if err == nil || !strings.Contains(err.Error(), "spec.clusterCIDR") {
		t.Errorf("changing clusterCIDR of a running lab: %v", err)
	}
}

func TestStatusAndPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.json")
	s := newTestStore(t, path)
	p := pods(s)[0]
	ch, cancel := s.Subscribe()
	defer cancel()
	st := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.9",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if err := s.UpdatePodStatus(p.Namespace, p.Name, p.UID, st); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Error("no change notification after a status update")
	}
	if err := s.UpdatePodStatus(p.Namespace, p.Name, "other-uid", corev1.PodStatus{PodIP: "1.2.3.4"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil { // status is written in the background
		t.Fatal(err)
	}
	reopened, err := OpenStore(path, 99)
	if err != nil {
		t.Fatal(err)
	}
	objs, _ := reopened.Get(cluster.KindPod, p.Namespace, p.Name)
	if len(objs) != 1 || objs[0].(*corev1.Pod).Status.PodIP != "10.244.0.9" {
		t.Fatalf("persisted pod: %+v", objs)
	}
	deps, _ := reopened.Get(cluster.KindDeployment, "default", "web")
	if got := deps[0].(*appsv1.Deployment).Status.ReadyReplicas; got != 1 {
		t.Errorf("deployment readyReplicas = %d, want 1", got)
	}
	if reopened.state.LabNumber != 7 {
		t.Errorf("lab number = %d, want the persisted 7", reopened.state.LabNumber)
	}
}

func TestFirstApplyNeedsLab(t *testing.T) {
	s, _ := OpenStore("", 1)
	_, err := s.Apply(decode(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n"))
	if err == nil || !strings.Contains(err.Error(), "no Lab document") {
		t.Errorf("apply without a Lab: %v", err)
	}
}

// lab up reads a resumed lab's saved Lab, to check its real-time priority before the daemon
// starts.
func TestSavedLab(t *testing.T) {
	dir := t.TempDir()
	if l := savedLab(dir); l != nil {
		t.Errorf("savedLab of a directory without a store = %v, want nil", l)
	}
	s := newServiceStore(t, filepath.Join(dir, "store.json"), "apiVersion: podnet.dev/v1alpha1\nkind: Lab\nmetadata: {name: rt}\nspec:\n  realtimePriority: 3\n  nodes: [{name: a}]\n")
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	l := savedLab(dir)
	if l == nil || l.Name != "rt" || l.Spec.RealtimePriority != 3 {
		t.Errorf("savedLab = %+v, want Lab rt with realtimePriority 3", l)
	}
	if err := checkRealtime(nil, dir, false); err != nil {
		t.Errorf("checkRealtime of a new lab without a file = %v, want nil (nothing asked)", err)
	}
}
