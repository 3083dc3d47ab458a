package realtime

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
)

// tree makes a fake cgroup hierarchy: each path (relative, "" for the root) with its period and
// runtime in µs.
func tree(t *testing.T, levels map[string][2]int64) string {
	t.Helper()
	root := t.TempDir()
	for p, b := range levels {
		d := filepath.Join(root, p)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]int64{"cpu.rt_period_us": b[0], "cpu.rt_runtime_us": b[1]} {
			if err := os.WriteFile(filepath.Join(d, name), []byte(strconv.FormatInt(v, 10)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Only a hierarchy's root has release_agent.
	if err := os.WriteFile(filepath.Join(root, "release_agent"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func budgetOf(t *testing.T, dir string) [2]int64 {
	t.Helper()
	p, r, err := readBudget(dir)
	if err != nil {
		t.Fatal(err)
	}
	return [2]int64{p, r}
}

func TestGrant(t *testing.T) {
	defer SetReleaseWait(releaseWait)
	SetReleaseWait(100 * time.Millisecond)
	const sec, def = 1000000, 950000 // the kernel's root budget
	for _, tc := range []struct {
		name    string
		levels  map[string][2]int64
		mountAt string            // the cgroup shown at the mount point; "/" the whole hierarchy
		procs   map[string]string // cgroup.procs of some levels (the rest have none)
		want    map[string]int64
		wantErr string
	}{
		{
			// 95% less another child's 20%: 75% at every level down, over 10 ms.
			name: "every level down from the root",
			levels: map[string][2]int64{"": {sec, def}, "other": {10000, 2000}, "kube": {sec, 0}, "kube/pod": {sec, 0},
				"kube/pod/ctr": {sec, 0}, "kube/pod/pause": {sec, 0}},
			mountAt: "/",
			want:    map[string]int64{"kube": 7500, "kube/pod": 7500, "kube/pod/ctr": 7500},
		},
		{
			// The node's cgroup has 45% (given by `podnet cluster up`): the levels below take it.
			name:    "from the deepest ancestor with a budget",
			levels:  map[string][2]int64{"": {sec, def}, "node": {10000, 4500}, "node/kube": {sec, 0}, "node/kube/ctr": {sec, 0}},
			mountAt: "/",
			want:    map[string]int64{"node/kube": 4500, "node/kube/ctr": 4500},
		},
		{
			// The pod before this one is gone but for its cgroups, which hold the budget: it is
			// taken back (0), deepest first. Not from a cgroup with a process in it.
			name: "the budget of a pod that is gone is taken back",
			levels: map[string][2]int64{"": {sec, def}, "node": {10000, 4500}, "node/kube": {10000, 4500},
				"node/kube/old": {10000, 3000}, "node/kube/old/ctr": {10000, 3000}, "node/kube/busy": {10000, 1000},
				"node/kube/ctr": {sec, 0}},
			procs:   map[string]string{"node/kube/busy": "42\n"},
			mountAt: "/",
			want:    map[string]int64{"node/kube/old/ctr": 0, "node/kube/old": 0, "node/kube/ctr": 3500},
		},
		{
			name:    "a cgroup with a budget is left alone",
			levels:  map[string][2]int64{"": {sec, def}, "kube": {10000, 1000}, "kube/ctr": {10000, 500}},
			mountAt: "/",
			want:    map[string]int64{},
		},
		{
			name:    "only the container's cgroup is mounted",
			levels:  map[string][2]int64{"": {sec, 0}},
			mountAt: "/kube/ctr",
			wantErr: "mount the host's /sys/fs/cgroup",
		},
		{
			// A cgroup namespace of its own shows the container's cgroup as "/".
			name:    "a cgroup namespace of its own",
			levels:  map[string][2]int64{"": {sec, 0}},
			mountAt: "private",
			wantErr: "mount the host's /sys/fs/cgroup",
		},
		{
			name:    "the siblings hold it all",
			levels:  map[string][2]int64{"": {sec, def}, "kube": {sec, 0}, "kube/ctr": {sec, 0}, "rt-app": {10000, 9500}},
			mountAt: "/",
			wantErr: "its other children hold it all: rt-app (9500 µs of 10000 µs)",
		},
		{
			name:    "the kernel gives no time",
			levels:  map[string][2]int64{"": {sec, 0}, "kube": {sec, 0}, "kube/ctr": {sec, 0}},
			mountAt: "/",
			wantErr: "no time at all",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t, tc.levels)
			for p, v := range tc.procs {
				if err := os.WriteFile(filepath.Join(root, p, "cgroup.procs"), []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			path := "/kube/ctr"
			if _, ok := tc.levels["kube/pod/ctr"]; ok {
				path = "/kube/pod/ctr"
			}
			if _, ok := tc.levels["node/kube/ctr"]; ok {
				path = "/node/kube/ctr"
			}
			var order []string
			ms := []mount{{root: tc.mountAt, point: root}}
			if tc.mountAt == "private" {
				os.Remove(filepath.Join(root, "release_agent"))
				ms[0].root, path = "/", "/"
			}
			set, err := grant(ms, path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("grant: %v, want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, b := range set {
				rel, _ := filepath.Rel(root, b.Dir)
				got[rel] = b.Runtime.Microseconds()
				order = append(order, rel)
				if b.Period != BudgetPeriod {
					t.Errorf("%s: period %v, want %v", rel, b.Period, BudgetPeriod)
				}
				if f := budgetOf(t, b.Dir); f != [2]int64{BudgetPeriod.Microseconds(), b.Runtime.Microseconds()} {
					t.Errorf("%s: files say %v, Grant says %v", rel, f, b)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("set %v, want %v", got, tc.want)
			}
			if tc.name == "the budget of a pod that is gone is taken back" && !slices.Equal(order, []string{"node/kube/old/ctr", "node/kube/old", "node/kube/ctr"}) {
				t.Errorf("set in the order %v, want the gone pod's container, the gone pod, then ours", order)
			}
		})
	}
}

func TestGrantWithoutRealtimeGroups(t *testing.T) {
	root := t.TempDir() // no cpu.rt_* files: a kernel without CONFIG_RT_GROUP_SCHED
	if err := os.MkdirAll(filepath.Join(root, "kube"), 0o755); err != nil {
		t.Fatal(err)
	}
	set, err := grant([]mount{{root: "/", point: root}}, "/kube")
	if err != nil || len(set) != 0 {
		t.Fatalf("grant: %v %v, want nothing to do", set, err)
	}
}

func TestDivide(t *testing.T) {
	root := tree(t, map[string][2]int64{"": {1000000, 950000}, "other": {10000, 2000}, "n1": {1000000, 0}, "n2": {1000000, 0}})
	set, err := Divide(root, []string{filepath.Join(root, "n1"), filepath.Join(root, "n2")})
	if err != nil {
		t.Fatal(err)
	}
	if len(set) != 2 {
		t.Fatalf("set %v, want both", set)
	}
	for _, n := range []string{"n1", "n2"} {
		if got := budgetOf(t, filepath.Join(root, n)); got != [2]int64{10000, 3750} {
			t.Errorf("%s: %v, want 3750 µs of 10000 µs", n, got)
		}
	}
	// Again: the children's own budgets do not count against them.
	if _, err := Divide(root, []string{filepath.Join(root, "n1"), filepath.Join(root, "n2")}); err != nil {
		t.Fatal(err)
	}
	if got := budgetOf(t, filepath.Join(root, "n1")); got != [2]int64{10000, 3750} {
		t.Errorf("n1 after a second Divide: %v", got)
	}
	// A node cgroup whose children hold its budget is not given less.
	os.Mkdir(filepath.Join(root, "n1", "kube"), 0o755)
	for name, v := range map[string]string{"cpu.rt_period_us": "10000", "cpu.rt_runtime_us": "3750"} {
		os.WriteFile(filepath.Join(root, "n1", "kube", name), []byte(v), 0o644)
	}
	os.WriteFile(filepath.Join(root, "other", "cpu.rt_runtime_us"), []byte("4000"), 0o644)
	if _, err := Divide(root, []string{filepath.Join(root, "n1"), filepath.Join(root, "n2")}); err == nil || !strings.Contains(err.Error(), "its children hold more: kube (3750 µs of 10000 µs)") {
		t.Errorf("Divide that would shrink a cgroup below its children's budgets: %v", err)
	}
	if _, err := Divide(root, []string{filepath.Join(root, "n1", "x")}); err == nil || !strings.Contains(err.Error(), "is not right under it") {
		t.Errorf("Divide of a grandchild: %v", err)
	}
}

// The shares are the kernel's: the children's together never exceed the parent's.
func TestGiveStaysWithinTheShare(t *testing.T) {
	for _, s := range []uint64{1 << bwShift, share(1000000, 950000), share(1000000, 950000) / 2, share(1000000, 950000) / 3, 12345, 105} {
		root := tree(t, map[string][2]int64{"c": {1000000, 0}})
		b, err := give(filepath.Join(root, "c"), s)
		if err != nil {
			t.Fatalf("share %d: %v", s, err)
		}
		got := share(b.Period.Microseconds(), b.Runtime.Microseconds())
		if got > s || share(b.Period.Microseconds(), b.Runtime.Microseconds()+1) <= s {
			t.Errorf("share %d: runtime %v gives %d, not the most within it", s, b.Runtime, got)
		}
	}
	root := tree(t, map[string][2]int64{"c": {1000000, 0}})
	if _, err := give(filepath.Join(root, "c"), 50); err == nil {
		t.Error("a share under a microsecond of the period was given")
	}
}

func TestParseCgroup(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"12:pids:/a\n4:cpu,cpuacct:/kubepods/pod1/c1\n1:name=systemd:/x\n", "/kubepods/pod1/c1", true},
		{"3:cpuacct:/b\n2:cpu:/a/b c\n", "/a/b c", true},
		{"0::/user.slice\n", "", false},
		{"", "", false},
	} {
		got, ok := parseCgroup(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseCgroup(%q) = %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	in := `24 1 0:22 / /sys rw,nosuid - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
37 30 0:33 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
202 201 0:31 /kubepods/pod\0401/c1 /sys/fs/cgroup/cpu rw master:10 - cgroup cgroup rw,cpu
203 201 0:31 / /host/sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
`
	infos, err := mountinfo.GetMountsFromReader(strings.NewReader(in), cpuFilter)
	if err != nil {
		t.Fatal(err)
	}
	got := toMounts(infos)
	want := []mount{{"/", "/sys/fs/cgroup/cpu,cpuacct"}, {"/kubepods/pod 1/c1", "/sys/fs/cgroup/cpu"}, {"/", "/host/sys/fs/cgroup/cpu"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	dir, ok := ownDir(want[1:], "/kubepods/pod 1/c1")
	if !ok || dir != "/sys/fs/cgroup/cpu" {
		t.Errorf("ownDir in a container: %q %v", dir, ok)
	}
	if _, ok := ownDir(want[1:2], "/elsewhere"); ok {
		t.Error("ownDir found a cgroup outside the mount")
	}
}
