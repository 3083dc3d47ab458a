package lab

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podnet/podnet/cluster"
	corev1 "k8s.io/api/core/v1"
)

// benchLab is a lab of three nodes with a Deployment of 10 pods that declare the port http.
const benchLab = `
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: bench}
spec:
  nodes: [{name: a}, {name: b}, {name: c}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 10
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, command: [podnet, serve, --http, "80"], ports: [{name: http, containerPort: 80}]}]
`

// manyServices is n Services selecting the bench's pods, as the 10,000-Service bench applies.
func manyServices(n int) string {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-%d\nspec:\n  selector: {app: web}\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n", i)
	}
	return sb.String()
}

// benchStore returns a store persisted under dir, with benchLab's pods running and ready.
func benchStore(b *testing.B, dir string) *Store {
	b.Helper()
	s := newServiceStore(b, filepath.Join(dir, "store.json"), benchLab)
	for i, p := range pods(s) {
		setPod(b, s, p.Name, fmt.Sprintf("10.244.%d.%d", i%3, 2+i), true)
	}
	return s
}

// stateDir is where a benchmark's store lives: tmpfs, as the lab's /run/podnet or
// $XDG_RUNTIME_DIR, when there is one.
func stateDir(b *testing.B) string {
	dir := b.TempDir()
	if shm := "/dev/shm"; dirExists(shm) {
		d, err := mkdirTemp(shm)
		if err == nil {
			b.Cleanup(func() { removeAll(d) })
			return d
		}
	}
	return dir
}

// BenchmarkApply10kServices applies 10,000 Services that select the same 10 pods in one apply:
// validation, allocation, the EndpointSlice controller (10,000 slices) and persistence.
func BenchmarkApply10kServices(b *testing.B) {
	docs, err := cluster.Decode(strings.NewReader(manyServices(10000)), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		s := benchStore(b, stateDir(b))
		b.StartTimer()
		if _, err := s.Apply(docs); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if n := len(s.EndpointSlices()); n != 10000 {
			b.Fatalf("%d slices", n)
		}
		b.StartTimer()
	}
}

// BenchmarkReapply10kServices applies the same 10,000 Services again: nothing changes.
func BenchmarkReapply10kServices(b *testing.B) {
	docs, err := cluster.Decode(strings.NewReader(manyServices(10000)), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	s := benchStore(b, stateDir(b))
	if _, err := s.Apply(docs); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Apply(docs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPodStatusUpdate10kServices flips the readiness of one pod that 10,000 Services
// select, so that 10,000 slices change.
func BenchmarkPodStatusUpdate10kServices(b *testing.B) {
	benchStatusUpdate(b, "app: web")
}

// BenchmarkUnselectedPodStatusUpdate10kServices flips the readiness of a pod no Service selects,
// with 10,000 Services present: the cost of a status update that changes no slice.
func BenchmarkUnselectedPodStatusUpdate10kServices(b *testing.B) {
	benchStatusUpdate(b, "app: other")
}

func benchStatusUpdate(b *testing.B, labels string) {
	docs, err := cluster.Decode(strings.NewReader(manyServices(10000)), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	s := benchStore(b, stateDir(b))
	mustApply(b, s, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: lone, labels: {"+labels+"}}\nspec: {nodeName: a, containers: [{name: c, command: [sleep, infinity]}]}\n")
	if _, err := s.Apply(docs); err != nil {
		b.Fatal(err)
	}
	objs, _ := s.Get(cluster.KindPod, "default", "lone")
	p := objs[0].(*corev1.Pod)
	ready := false
	for b.Loop() {
		ready = !ready
		cond := corev1.ConditionFalse
		if ready {
			cond = corev1.ConditionTrue
		}
		st := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.200",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}}}
		if err := s.UpdatePodStatus(p.Namespace, p.Name, p.UID, st); err != nil {
			b.Fatal(err)
		}
	}
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func mkdirTemp(parent string) (string, error) { return os.MkdirTemp(parent, "podnet-bench-") }

func removeAll(p string) { os.RemoveAll(p) }

// BenchmarkEncodeState10kServices writes the state of 10,000 Services and their slices (about
// 40 MB of JSON) as the store persists it: cold, every object encoded; warm, from the cache.
func BenchmarkEncodeState10kServices(b *testing.B) {
	docs, err := cluster.Decode(strings.NewReader(manyServices(10000)), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	s := benchStore(b, stateDir(b))
	if _, err := s.Apply(docs); err != nil {
		b.Fatal(err)
	}
	for _, warm := range []bool{false, true} {
		b.Run(map[bool]string{false: "cold", true: "warm"}[warm], func(b *testing.B) {
			var e stateEncoder
			if warm {
				e.encode(io.Discard, s.state)
			}
			for b.Loop() {
				if !warm {
					e = stateEncoder{}
				}
				if err := e.encode(io.Discard, s.state); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
