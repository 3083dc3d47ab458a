// Package inspect serves what an operator asks of a node's data path: its flows (`podnet flows`)
// and the packets of a pod or of the overlay (`podnet capture`), over HTTP. The lab daemon
// serves it on its socket for all its nodes; `podnet node` serves it on a Unix socket in its run
// directory, which `podnet flows` and `podnet capture` reach through `kubectl exec`'s channel
// (the API server's exec, authorized like any exec into the podnet pod).
//
// The API:
//
//	GET /v1/flows                 the kept flows of every node (JSON array, oldest first)
//	GET /v1/flows?follow=1        the kept flows, then new ones as they come (JSON lines)
//	GET /v1/capture?node=N&pod=IP [&filter=EXPR][&snaplen=N]
//	                              the frames of the pod's eth0, both ways (pcap, Ethernet)
//	GET /v1/capture?node=N&overlay=1 [&filter=EXPR]
//	                              the inner packets of the overlay (pcap, raw IP)
//
// A capture runs until the client goes away. Packets it cannot write fast enough are dropped
// rather than slowing the data path; the count of those is sent in the trailer
// Podnet-Capture-Dropped.
package inspect

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/capture"
)

// Agents returns the agents to serve, by node name. An agent may be nil (restarting).
type Agents func() map[string]*agent.Agent

// Handler serves the API for the agents.
func Handler(agents Agents) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/flows", func(w http.ResponseWriter, r *http.Request) { serveFlows(w, r, agents) })
	mux.HandleFunc("GET /v1/capture", func(w http.ResponseWriter, r *http.Request) { serveCapture(w, r, agents) })
	return mux
}

// Error is the body of a failed request.
type Error struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(Error{err.Error()})
}

func serveFlows(w http.ResponseWriter, r *http.Request, agents Agents) {
	all := agents()
	var recs []agent.FlowRecord
	var followers []*agent.FlowFollower
	follow := r.URL.Query().Get("follow") != ""
	for _, a := range all {
		if a == nil {
			continue
		}
		if follow {
			// Before reading the kept ones: a flow between the two is sent twice rather than never.
			followers = append(followers, a.FollowFlows())
		}
		recs = append(recs, a.Flows()...)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time.Before(recs[j].Time) })
	if !follow {
		w.Header().Set("Content-Type", "application/json")
		if recs == nil {
			recs = []agent.FlowRecord{}
		}
		json.NewEncoder(w).Encode(recs)
		return
	}
	defer func() {
		for _, f := range followers {
			f.Stop()
		}
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	for _, rec := range recs {
		if enc.Encode(rec) != nil {
			return
		}
	}
	if rc.Flush() != nil {
		return
	}
	merged := make(chan agent.FlowRecord, 256)
	done := r.Context().Done()
	for _, f := range followers {
		go func() {
			for {
				select {
				case <-done:
					return
				case rec := <-f.C():
					select {
					case merged <- rec:
					case <-done:
						return
					}
				}
			}
		}()
	}
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case rec := <-merged:
			if enc.Encode(rec) != nil {
				return
			}
			// Write what else is there before flushing: a burst costs one flush.
			for more := true; more; {
				select {
				case rec = <-merged:
					if enc.Encode(rec) != nil {
						return
					}
				default:
					more = false
				}
			}
			if rc.Flush() != nil {
				return
			}
		case <-tick.C:
			// A blank line keeps idle connections (and proxies between) from timing out.
			if _, err := w.Write([]byte("\n")); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// captureQueue is how many packets a capture holds for its writer; more are dropped.
const captureQueue = 4096

// capturedPacket is one packet a capture took from the data path.
type capturedPacket struct {
	t    time.Time
	data []byte
}

func serveCapture(w http.ResponseWriter, r *http.Request, agents Agents) {
	q := r.URL.Query()
	node := q.Get("node")
	all := agents()
	a := all[node]
	if a == nil {
		if _, ok := all[node]; ok {
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("node %s: its agent is restarting", node))
			return
		}
		if node == "" && len(all) == 1 {
			for _, only := range all {
				a = only
			}
		}
		if a == nil {
			writeError(w, http.StatusNotFound, fmt.Errorf("node %q: no such node here", node))
			return
		}
	}
	filter, err := capture.ParseFilter(q.Get("filter"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	snaplen := uint32(262144)
	if s := q.Get("snaplen"); s != "" {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n == 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("snaplen %q: want a positive number of bytes", s))
			return
		}
		snaplen = uint32(min(n, 262144))
	}

	c := make(chan capturedPacket, captureQueue)
	var dropped atomic.Uint64
	var closed atomic.Bool
	var mu sync.RWMutex // held for reading while a sink sends on c, for writing to end it
	linkType := capture.LinkTypeEthernet
	sink := func(pkt []byte, _ bool) {
		if !filter.Match(linkType, pkt) {
			return
		}
		mu.RLock()
		defer mu.RUnlock()
		if closed.Load() {
			return
		}
		p := capturedPacket{t: time.Now(), data: append(make([]byte, 0, len(pkt)), pkt...)}
		select {
		case c <- p:
		default:
			dropped.Add(1)
		}
	}
	var stop func()
	if q.Get("overlay") != "" {
		linkType = capture.LinkTypeRaw
		stop = a.Stack().CaptureOverlay(sink)
	} else {
		ip, err := netip.ParseAddr(q.Get("pod"))
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("pod %q: want the pod's IP address", q.Get("pod")))
			return
		}
		if stop, err = a.Stack().CapturePod(ip, sink); err != nil {
			writeError(w, http.StatusNotFound, fmt.Errorf("node %s: %w", node, err))
			return
		}
	}
	defer func() {
		stop()
		mu.Lock()
		closed.Store(true)
		mu.Unlock()
	}()

	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	w.Header().Set("Trailer", "Podnet-Capture-Dropped")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	bw := bufio.NewWriterSize(w, 64<<10)
	pw, err := capture.NewWriter(bw, linkType, snaplen)
	if err != nil {
		return
	}
	flush := func() bool { return bw.Flush() == nil && rc.Flush() == nil }
	if !flush() {
		return
	}
	done := r.Context().Done()
	for {
		select {
		case <-done:
			w.Header().Set("Podnet-Capture-Dropped", strconv.FormatUint(dropped.Load(), 10))
			return
		case p := <-c:
			if pw.WritePacket(p.t, p.data) != nil {
				return
			}
			for more := true; more; {
				select {
				case p = <-c:
					if pw.WritePacket(p.t, p.data) != nil {
						return
					}
				default:
					more = false
				}
			}
			if !flush() {
				return
			}
		}
	}
}
