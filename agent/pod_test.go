package agent

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// slowStatus records the last status written, sleeping a random moment first so that racing
// writers would overtake each other.
type slowStatus struct {
	mu   sync.Mutex
	last corev1.PodStatus
}

func (s *slowStatus) UpdatePodStatus(_, _ string, _ types.UID, st corev1.PodStatus) error {
	time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
	s.mu.Lock()
	s.last = st
	s.mu.Unlock()
	return nil
}

// TestPublishKeepsTheLatestStatus: containers change a pod's status and publish it from several
// goroutines at once; whatever the interleaving, the status written last must be the pod's final
// one (an older snapshot landing last left pods unready for good).
func TestPublishKeepsTheLatestStatus(t *testing.T) {
	for round := 0; round < 50; round++ {
		w := &slowStatus{}
		a := &Agent{opts: Options{Status: w}, log: slog.New(slog.DiscardHandler)}
		p := &pod{a: a, namespace: "default", name: "p", uid: "u"}
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.mu.Lock()
				p.status.Message += fmt.Sprint(g)
				p.mu.Unlock()
				p.publish()
			}()
		}
		wg.Wait()
		if w.last.Message != p.status.Message {
			t.Fatalf("round %d: last written status %q, but the pod's status is %q", round, w.last.Message, p.status.Message)
		}
	}
}
