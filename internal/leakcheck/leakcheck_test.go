package leakcheck

import (
	"testing"
	"time"
)

func parkedGoroutineForLeakcheckTest(stop chan struct{}, started chan struct{}) {
	close(started)
	<-stop
}

func TestGoroutinesFindsAndForgets(t *testing.T) {
	o := Options{Match: []string{"parkedGoroutineForLeakcheckTest"}, Wait: time.Second}
	stop, started := make(chan struct{}), make(chan struct{})
	go parkedGoroutineForLeakcheckTest(stop, started)
	<-started
	if got := Goroutines(o); len(got) != 1 {
		t.Fatalf("found %d running goroutines, want the 1 left running", len(got))
	}
	if got := Goroutines(Options{Match: o.Match, Ignore: []string{"parkedGoroutine"}}); len(got) != 0 {
		t.Errorf("Ignore did not exclude the goroutine")
	}
	close(stop)
	if leaked := wait(o); len(leaked) != 0 {
		t.Errorf("the goroutine ended but is still reported: %v", leaked)
	}
}
