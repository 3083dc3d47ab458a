package ipam

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func mustPool(t *testing.T, prefix string) *Pool {
	t.Helper()
	p, err := NewPool(netip.MustParsePrefix(prefix))
	if err != nil {
		t.Fatalf("NewPool(%s): %v", prefix, err)
	}
	return p
}

func TestNewPool(t *testing.T) {
	tests := []struct {
		prefix  string
		gateway string
		cap     int
		wantErr string
	}{
		{prefix: "10.244.0.0/24", gateway: "10.244.0.1", cap: 253},
		{prefix: "10.244.7.0/24", gateway: "10.244.7.1", cap: 253},
		{prefix: "10.0.0.0/16", gateway: "10.0.0.1", cap: 65533},
		{prefix: "192.168.1.0/30", gateway: "192.168.1.1", cap: 1},
		{prefix: "fd00::/120", gateway: "fd00::1", cap: 253},
		{prefix: "fd00::/64", gateway: "fd00::1", cap: int(^uint(0) >> 1)},
		{prefix: "10.244.0.1/24", wantErr: "not a network address; did you mean 10.244.0.0/24"},
		{prefix: "10.244.0.0/31", wantErr: "too small"},
		{prefix: "10.244.0.0/32", wantErr: "too small"},
		{prefix: "::ffff:10.0.0.0/120", wantErr: "IPv4-mapped"},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			p, err := NewPool(netip.MustParsePrefix(tt.prefix))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewPool(%s) error = %v, want one containing %q", tt.prefix, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewPool(%s): %v", tt.prefix, err)
			}
			if got := p.Gateway().String(); got != tt.gateway {
				t.Errorf("Gateway() = %s, want %s", got, tt.gateway)
			}
			if got := p.Cap(); got != tt.cap {
				t.Errorf("Cap() = %d, want %d", got, tt.cap)
			}
			if p.Prefix().String() != tt.prefix {
				t.Errorf("Prefix() = %s, want %s", p.Prefix(), tt.prefix)
			}
		})
	}
	if _, err := NewPool(netip.Prefix{}); err == nil {
		t.Error("NewPool(zero prefix) succeeded, want an error")
	}
}

// op is one step of a table test: Reserve if reserve is set, Release if
// release is set, Allocate otherwise.
type op struct {
	owner   string
	reserve string // Reserve this address
	release bool   // Release owner
	want    string // address Allocate must return
	wantErr string // substring of the error
}

func TestPoolSequences(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		ops    []op
		len    int
	}{
		{
			name:   "first addresses skip network and gateway",
			prefix: "10.244.1.0/24",
			ops: []op{
				{owner: "a", want: "10.244.1.2"},
				{owner: "b", want: "10.244.1.3"},
				{owner: "c", want: "10.244.1.4"},
			},
			len: 3,
		},
		{
			name:   "allocate is idempotent per owner",
			prefix: "10.244.1.0/24",
			ops: []op{
				{owner: "a", want: "10.244.1.2"},
				{owner: "a", want: "10.244.1.2"},
				{owner: "b", want: "10.244.1.3"},
				{owner: "a", want: "10.244.1.2"},
			},
			len: 2,
		},
		{
			name:   "a released address is not reused right away",
			prefix: "10.244.1.0/24",
			ops: []op{
				{owner: "a", want: "10.244.1.2"},
				{owner: "b", want: "10.244.1.3"},
				{owner: "a", release: true},
				{owner: "c", want: "10.244.1.4"},
				{owner: "a", want: "10.244.1.5"},
			},
			len: 3,
		},
		{
			name:   "wraps around to the lowest free address, never the broadcast",
			prefix: "10.0.0.0/29", // .2 to .6 can be handed out
			ops: []op{
				{owner: "a", want: "10.0.0.2"},
				{owner: "b", want: "10.0.0.3"},
				{owner: "c", want: "10.0.0.4"},
				{owner: "d", want: "10.0.0.5"},
				{owner: "e", want: "10.0.0.6"},
				{owner: "b", release: true},
				{owner: "d", release: true},
				{owner: "f", want: "10.0.0.3"},
				{owner: "g", want: "10.0.0.5"},
			},
			len: 5,
		},
		{
			name:   "exhaustion names the prefix",
			prefix: "10.0.0.0/30", // only .2
			ops: []op{
				{owner: "a", want: "10.0.0.2"},
				{owner: "b", wantErr: "no free address left in 10.0.0.0/30"},
				{owner: "a", want: "10.0.0.2"},
				{owner: "a", release: true},
				{owner: "b", want: "10.0.0.2"},
			},
			len: 1,
		},
		{
			name:   "reserve then allocate continues after the reserved address",
			prefix: "10.244.1.0/24",
			ops: []op{
				{owner: "a", reserve: "10.244.1.7"},
				{owner: "b", reserve: "10.244.1.3"},
				{owner: "c", want: "10.244.1.8"},
				{owner: "a", want: "10.244.1.7"},
			},
			len: 3,
		},
		{
			name:   "reserve conflicts",
			prefix: "10.244.1.0/24",
			ops: []op{
				{owner: "a", reserve: "10.244.1.9"},
				{owner: "a", reserve: "10.244.1.9"}, // again: fine
				{owner: "b", reserve: "10.244.1.9", wantErr: "already held by a"},
				{owner: "a", reserve: "10.244.1.10", wantErr: "a already holds 10.244.1.9"},
				{owner: "c", reserve: "10.244.2.9", wantErr: "outside 10.244.1.0/24"},
				{owner: "c", reserve: "10.244.1.0", wantErr: "network address"},
				{owner: "c", reserve: "10.244.1.1", wantErr: "gateway"},
				{owner: "c", reserve: "10.244.1.255", wantErr: "last address"},
				{owner: "c", reserve: "fd00::2", wantErr: "outside"},
				{owner: "", reserve: "10.244.1.20", wantErr: "empty owner"},
				{owner: "", wantErr: "empty owner"},
			},
			len: 1,
		},
		{
			name:   "allocate skips reserved addresses",
			prefix: "10.0.0.0/29",
			ops: []op{
				{owner: "x", reserve: "10.0.0.2"},
				{owner: "y", reserve: "10.0.0.3"},
				{owner: "y", release: true},
				// The cursor is at .3 (the highest reserved); .3 is free but was just freed.
				{owner: "a", want: "10.0.0.4"},
				{owner: "b", want: "10.0.0.5"},
				{owner: "c", want: "10.0.0.6"},
				{owner: "d", want: "10.0.0.3"},
				{owner: "e", wantErr: "no free address"},
			},
			len: 5,
		},
		{
			name:   "release of an unknown owner does nothing",
			prefix: "10.244.1.0/24",
			ops: []op{
				{owner: "nobody", release: true},
				{owner: "a", want: "10.244.1.2"},
			},
			len: 1,
		},
		{
			name:   "IPv6 wraps around after a reserved top address",
			prefix: "fd00:1::/120",
			ops: []op{
				{owner: "a", want: "fd00:1::2"},
				{owner: "b", reserve: "fd00:1::fe"},
				{owner: "c", want: "fd00:1::3"},
				{owner: "d", reserve: "fd00:1::ff", wantErr: "last address"},
			},
			len: 3,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPool(t, tt.prefix)
			for i, o := range tt.ops {
				switch {
				case o.release:
					p.Release(o.owner)
					if _, ok := p.Lookup(o.owner); ok {
						t.Fatalf("op %d: Lookup(%s) after Release found an address", i, o.owner)
					}
				case o.reserve != "":
					err := p.Reserve(o.owner, netip.MustParseAddr(o.reserve))
					checkErr(t, i, "Reserve", err, o.wantErr)
					if err == nil {
						if a, ok := p.Lookup(o.owner); !ok || a.String() != o.reserve {
							t.Fatalf("op %d: Lookup(%s) = %v, %v after Reserve(%s)", i, o.owner, a, ok, o.reserve)
						}
					}
				default:
					a, err := p.Allocate(o.owner)
					checkErr(t, i, "Allocate("+o.owner+")", err, o.wantErr)
					if err == nil && a.String() != o.want {
						t.Fatalf("op %d: Allocate(%s) = %s, want %s", i, o.owner, a, o.want)
					}
				}
			}
			if got := p.Len(); got != tt.len {
				t.Errorf("Len() = %d, want %d", got, tt.len)
			}
			if got := len(p.Allocations()); got != tt.len {
				t.Errorf("len(Allocations()) = %d, want %d", got, tt.len)
			}
		})
	}
}

func checkErr(t *testing.T, i int, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("op %d: %s: %v", i, what, err)
	case want != "" && err == nil:
		t.Fatalf("op %d: %s succeeded, want an error containing %q", i, what, want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("op %d: %s error = %q, want one containing %q", i, what, err, want)
	}
}

func TestPoolFillsEveryAddressOnce(t *testing.T) {
	p := mustPool(t, "10.244.3.0/24")
	seen := make(map[netip.Addr]bool)
	for i := 0; i < p.Cap(); i++ {
		a, err := p.Allocate(fmt.Sprint("pod-", i))
		if err != nil {
			t.Fatalf("Allocate #%d: %v", i, err)
		}
		if seen[a] {
			t.Fatalf("Allocate #%d: %s handed out twice", i, a)
		}
		if a == p.Gateway() || a.String() == "10.244.3.0" || a.String() == "10.244.3.255" {
			t.Fatalf("Allocate #%d: handed out reserved address %s", i, a)
		}
		seen[a] = true
	}
	if _, err := p.Allocate("one-too-many"); err == nil {
		t.Fatal("Allocate on a full pool succeeded")
	}
	if len(seen) != 253 {
		t.Fatalf("handed out %d addresses, want 253", len(seen))
	}
}

func TestPoolAllocationsIsACopy(t *testing.T) {
	p := mustPool(t, "10.244.0.0/24")
	if _, err := p.Allocate("a"); err != nil {
		t.Fatal(err)
	}
	m := p.Allocations()
	delete(m, "a")
	if _, ok := p.Lookup("a"); !ok {
		t.Fatal("changing the map from Allocations changed the pool")
	}
}

// TestPoolConcurrent is meant for -race: many goroutines allocate, look up
// and release at once, and no address is ever held by two owners.
func TestPoolConcurrent(t *testing.T) {
	p := mustPool(t, "10.244.0.0/24")
	const workers, rounds = 8, 200
	var (
		mu     sync.Mutex
		holder = make(map[netip.Addr]string)
		wg     sync.WaitGroup
		errs   = make(chan error, workers)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				owner := fmt.Sprintf("w%d-pod%d", w, r%20)
				a, err := p.Allocate(owner)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if h, ok := holder[a]; ok && h != owner {
					mu.Unlock()
					errs <- fmt.Errorf("%s handed to %s while %s holds it", a, owner, h)
					return
				}
				holder[a] = owner
				mu.Unlock()
				if got, ok := p.Lookup(owner); !ok || got != a {
					errs <- fmt.Errorf("Lookup(%s) = %s, %v, want %s", owner, got, ok, a)
					return
				}
				_ = p.Len()
				if r%3 == 0 {
					mu.Lock()
					delete(holder, a)
					mu.Unlock()
					p.Release(owner)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, want := p.Len(), len(p.Allocations()); got != want {
		t.Errorf("Len() = %d, len(Allocations()) = %d", got, want)
	}
}

func BenchmarkAllocateRelease(b *testing.B) {
	p, err := NewPool(netip.MustParsePrefix("10.244.0.0/24"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := p.Allocate(fmt.Sprint("fill-", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Allocate("churn"); err != nil {
			b.Fatal(err)
		}
		p.Release("churn")
	}
}
