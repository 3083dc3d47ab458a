package clusterdns

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// cacheKey identifies an upstream answer: the lowercase name, type, class
// and the DO bit of the question.
type cacheKey struct {
	name          string
	qtype, qclass uint16
	do            bool
}

type cacheEntry struct {
	key     cacheKey
	msg     *dns.Msg // read-only
	expires time.Time
}

// cache holds upstream answers, positive and negative, for at most
// MaxCacheTTL and at most their TTL (a negative answer: its SOA's minimum
// and TTL, RFC 2308), evicting the least recently used beyond its size.
type cache struct {
	max int
	mu  sync.Mutex // guards m, lru
	m   map[cacheKey]*list.Element
	lru list.List // front: most recently used; values *cacheEntry
}

func newCache(size int) *cache {
	return &cache{max: size, m: map[cacheKey]*list.Element{}}
}

// get returns a copy of the cached answer for key with its TTLs counted
// down to now.
func (c *cache) get(key cacheKey, now time.Time) (*dns.Msg, bool) {
	if c.max <= 0 {
		return nil, false
	}
	c.mu.Lock()
	el, ok := c.m[key]
	if !ok {
		c.mu.Unlock()
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	left := e.expires.Sub(now)
	if left < time.Second {
		c.lru.Remove(el)
		delete(c.m, key)
		c.mu.Unlock()
		return nil, false
	}
	c.lru.MoveToFront(el)
	c.mu.Unlock()
	m := e.msg.Copy()
	setTTL(m, uint32(left/time.Second))
	return m, true
}

// put caches m when it may be cached and returns it with its TTLs capped
// to its cache lifetime; m must not be modified afterwards.
func (c *cache) put(key cacheKey, m *dns.Msg, now time.Time) *dns.Msg {
	life, ok := lifetime(m)
	if !ok {
		return m
	}
	setTTL(m, uint32(life/time.Second))
	if c.max <= 0 {
		return m
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{key: key, msg: m, expires: now.Add(life)}
	if el, ok := c.m[key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return m
	}
	c.m[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.m, old.Value.(*cacheEntry).key)
	}
	return m
}

// lifetime is how long m may be cached: the smallest TTL of its records for
// an answer, the SOA's minimum (and TTL) for NXDOMAIN and NODATA, at most
// MaxCacheTTL. Truncated answers, other rcodes, negative answers without
// SOA and zero TTLs are not cached.
func lifetime(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated {
		return 0, false
	}
	ttl := uint32(MaxCacheTTL / time.Second)
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
			for _, rr := range sec {
				if rr.Header().Rrtype != dns.TypeOPT {
					ttl = min(ttl, rr.Header().Ttl)
				}
			}
		}
	case m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError:
		var soa *dns.SOA
		for _, rr := range m.Ns {
			if s, ok := rr.(*dns.SOA); ok {
				soa = s
				break
			}
		}
		if soa == nil {
			return 0, false
		}
		ttl = min(ttl, soa.Hdr.Ttl, soa.Minttl)
	default:
		return 0, false
	}
	if ttl == 0 {
		return 0, false
	}
	return time.Duration(ttl) * time.Second, true
}

// setTTL sets the TTL of every record of m but OPT to at most ttl.
func setTTL(m *dns.Msg, ttl uint32) {
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT && h.Ttl > ttl {
				h.Ttl = ttl
			}
		}
	}
}
