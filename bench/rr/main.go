// Command rr measures TCP request/response latency: a client sends a 64-byte request over one
// connection and waits for the 64-byte response, N times, then prints the median and the 99th
// percentile of the round trips in microseconds as JSON.
//
//	rr -listen :47400                 # server: echoes every 64-byte request
//	rr -connect 10.0.0.1:47400 -n 2000
//	{"p50_us":41.2,"p99_us":88.0,"n":2000}
//
// With -new-conns every round trip opens a connection of its own (connect, request, response,
// close), so the figures include the handshake, and the output adds the connections per second
// (over -c concurrent clients):
//
//	rr -connect 10.96.0.20:47400 -new-conns -n 5000 -c 4
//	{"p50_us":180.5,"p99_us":420.1,"n":5000,"conns_per_s":9100}
//
// Used by bench/crossnode.sh and bench/services.sh; iperf3 measures throughput, not latency.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"slices"
	"time"
)

const msgSize = 64

func main() {
	listen := flag.String("listen", "", "serve on this address (host:port or :port)")
	connect := flag.String("connect", "", "measure against the server at host:port")
	n := flag.Int("n", 2000, "round trips to measure")
	warmup := flag.Int("warmup", 200, "round trips before measuring (not counted)")
	dialFor := flag.Duration("dial-timeout", 10*time.Second, "keep retrying the connect this long")
	newConns := flag.Bool("new-conns", false, "open a new connection for every round trip")
	conc := flag.Int("c", 1, "concurrent clients (with -new-conns)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("rr: ")

	switch {
	case *listen != "" && *connect == "":
		log.Fatal(serve(*listen))
	case *connect != "" && *listen == "" && *n > 0 && *warmup >= 0:
		measureFn := measure
		if *newConns {
			measureFn = func(addr string, n, warmup int, dialFor time.Duration) (result, error) {
				return measureConns(addr, n, warmup, max(*conc, 1), dialFor)
			}
		}
		res, err := measureFn(*connect, *n, *warmup, *dialFor)
		if err != nil {
			log.Fatal(err)
		}
		if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
			log.Fatal(err)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: rr -listen ADDR | rr -connect HOST:PORT [-n N] [-warmup N]")
		os.Exit(2)
	}
}

func serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			buf := make([]byte, msgSize)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					if !errors.Is(err, io.EOF) {
						log.Printf("%s: %v", c.RemoteAddr(), err)
					}
					return
				}
				if _, err := c.Write(buf); err != nil {
					log.Printf("%s: %v", c.RemoteAddr(), err)
					return
				}
			}
		}()
	}
}

type result struct {
	P50      float64 `json:"p50_us"`
	P99      float64 `json:"p99_us"`
	N        int     `json:"n"`
	ConnsPer float64 `json:"conns_per_s,omitempty"`
}

// percentiles returns the result of the sorted-in-place durations d.
func percentiles(d []time.Duration) result {
	slices.Sort(d)
	pct := func(p int) float64 {
		i := (len(d)*p+99)/100 - 1 // nearest rank
		return float64(d[max(i, 0)].Nanoseconds()/100) / 10
	}
	return result{P50: pct(50), P99: pct(99), N: len(d)}
}

// oneConn connects to addr, makes one round trip and closes.
func oneConn(addr string, req, resp []byte) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		return err
	}
	_, err = io.ReadFull(c, resp)
	return err
}

// measureConns makes n round trips, each on a new connection, from conc clients at once.
func measureConns(addr string, n, warmup, conc int, dialFor time.Duration) (result, error) {
	req, resp := make([]byte, msgSize), make([]byte, msgSize)
	var err error
	for deadline := time.Now().Add(dialFor); ; {
		if err = oneConn(addr, req, resp); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return result{}, err
	}
	for range warmup {
		if err := oneConn(addr, req, resp); err != nil {
			return result{}, err
		}
	}
	type out struct {
		d   []time.Duration
		err error
	}
	outs := make(chan out, conc)
	start := time.Now()
	for w := range conc {
		count := n / conc
		if w < n%conc {
			count++
		}
		go func() {
			req, resp := make([]byte, msgSize), make([]byte, msgSize)
			var o out
			for range count {
				t := time.Now()
				if o.err = oneConn(addr, req, resp); o.err != nil {
					break
				}
				o.d = append(o.d, time.Since(t))
			}
			outs <- o
		}()
	}
	var all []time.Duration
	for range conc {
		o := <-outs
		if o.err != nil && err == nil {
			err = o.err
		}
		all = append(all, o.d...)
	}
	elapsed := time.Since(start)
	if err != nil {
		return result{}, err
	}
	res := percentiles(all)
	res.ConnsPer = float64(int(float64(n)/elapsed.Seconds()*10)) / 10
	return res, nil
}

func measure(addr string, n, warmup int, dialFor time.Duration) (result, error) {
	var c net.Conn
	var err error
	for deadline := time.Now().Add(dialFor); ; {
		if c, err = net.DialTimeout("tcp", addr, 2*time.Second); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return result{}, err
	}
	defer c.Close() // Go sets TCP_NODELAY on TCP connections by default
	req, resp := make([]byte, msgSize), make([]byte, msgSize)
	rtts := make([]time.Duration, 0, n)
	for i := range warmup + n {
		req[0] = byte(i)
		start := time.Now()
		if _, err := c.Write(req); err != nil {
			return result{}, err
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			return result{}, err
		}
		if i >= warmup {
			rtts = append(rtts, time.Since(start))
		}
		if resp[0] != req[0] {
			return result{}, fmt.Errorf("response %d out of order", i)
		}
	}
	return percentiles(rtts), nil
}
