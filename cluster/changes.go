package cluster

import "sync"

// Changes tells subscribers that a source's state changed. Signals are coalesced: a
// subscriber's channel holds at most one pending value, which stands for every change since it
// last received. The zero value is ready; its methods may be called concurrently. It is what a
// source's Subscribe (agent.Source, podruntime.Source) hands out.
type Changes struct {
	mu   sync.Mutex // guards subs, next
	subs map[int]chan struct{}
	next int
}

// Subscribe returns a channel that receives a value after every Notify (coalesced), and a
// function that ends the subscription.
func (c *Changes) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	if c.subs == nil {
		c.subs = make(map[int]chan struct{})
	}
	id := c.next
	c.next++
	c.subs[id] = ch
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.subs, id)
		c.mu.Unlock()
	}
}

// Notify signals every subscriber without blocking.
func (c *Changes) Notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.subs {
		select {
		case ch <- struct{}{}:
		default: // a value is pending: it stands for this change too
		}
	}
}
