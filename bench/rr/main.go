// Command rr measures TCP request/response latency: a client sends a 64-byte request over one
// connection and waits for the 64-byte response, N times, then prints the median and the 99th
// percentile of the round trips in microseconds as JSON.
//
//	rr -listen :47400                 # server: echoes every 64-byte request
//	rr -connect 10.0.0.1:47400 -n 2000
//	{"p50_us":41.2,"p99_us":88.0,"n":2000}
//
// Used by bench/crossnode.sh; iperf3 measures throughput, not latency.
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
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("rr: ")

	switch {
	case *listen != "" && *connect == "":
		log.Fatal(serve(*listen))
	case *connect != "" && *listen == "" && *n > 0 && *warmup >= 0:
		res, err := measure(*connect, *n, *warmup, *dialFor)
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
	P50 float64 `json:"p50_us"`
	P99 float64 `json:"p99_us"`
	N   int     `json:"n"`
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
	slices.Sort(rtts)
	pct := func(p int) float64 {
		i := (len(rtts)*p+99)/100 - 1 // nearest rank
		return float64(rtts[max(i, 0)].Nanoseconds()/100) / 10
	}
	return result{P50: pct(50), P99: pct(99), N: n}, nil
}
