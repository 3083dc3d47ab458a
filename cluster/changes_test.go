package cluster

import "testing"

func TestChanges(t *testing.T) {
	var c Changes
	a, endA := c.Subscribe()
	b, endB := c.Subscribe()
	defer endB()
	c.Notify()
	c.Notify() // coalesced with the first
	for name, ch := range map[string]<-chan struct{}{"a": a, "b": b} {
		select {
		case <-ch:
		default:
			t.Errorf("subscriber %s got no signal", name)
		}
		select {
		case <-ch:
			t.Errorf("subscriber %s got two signals for two coalesced changes", name)
		default:
		}
	}
	endA()
	c.Notify()
	select {
	case <-a:
		t.Error("an ended subscription was signalled")
	default:
	}
	select {
	case <-b:
	default:
		t.Error("subscriber b got no signal")
	}
}
