package netns

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

// TestDo: a listener made in another namespace stays there (it is not reachable from this one),
// and the caller's thread never moved.
func TestDo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: making a network namespace needs root here")
	}
	before, _ := os.Readlink("/proc/thread-self/ns/net")
	child := exec.Command("sleep", "30")
	child.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	f, err := os.Open("/proc/" + strconv.Itoa(child.Process.Pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ln net.Listener
	if err := Do(int(f.Fd()), func() (err error) {
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if c, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("a listener made in the other namespace answered in this one")
	}
	if after, _ := os.Readlink("/proc/thread-self/ns/net"); after != before {
		t.Errorf("the caller's thread moved from %s to %s", before, after)
	}
	if err := Do(-1, func() error { return nil }); err == nil {
		t.Error("Do with a bad descriptor succeeded")
	}
}
