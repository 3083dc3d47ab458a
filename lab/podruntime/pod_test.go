package podruntime

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
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
		r := &Runtime{opts: Options{Status: w}, log: slog.New(slog.DiscardHandler)}
		p := &pod{r: r, namespace: "default", name: "p", uid: "u"}
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

func TestPodResolvConf(t *testing.T) {
	host := t.TempDir() + "/resolv.conf"
	os.WriteFile(host, []byte("# host\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0 ndots:2\n"), 0o644)
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		want string
	}{
		{"ClusterFirst", corev1.PodSpec{},
			"search team.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"},
		{"ClusterFirst with dnsConfig", corev1.PodSpec{DNSConfig: &corev1.PodDNSConfig{
			Nameservers: []string{"192.0.2.1"}, Searches: []string{"extra.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptrTo("2")}, {Name: "edns0"}}}},
			"search team.svc.cluster.local svc.cluster.local cluster.local extra.example\nnameserver 10.96.0.10\nnameserver 192.0.2.1\noptions ndots:2 edns0\n"},
		{"Default: the host's", corev1.PodSpec{DNSPolicy: corev1.DNSDefault},
			"search corp.example\nnameserver 192.0.2.53\noptions edns0 ndots:2\n"},
		{"None", corev1.PodSpec{DNSPolicy: corev1.DNSNone, DNSConfig: &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.9"}}},
			"nameserver 192.0.2.9\n"},
	} {
		if got := podResolvConf(&tc.spec, "team", "cluster.local", "10.96.0.10", host); got != tc.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.name, got, tc.want)
		}
	}
}
