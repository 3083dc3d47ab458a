package stack

import "time"

// Frame builders for the external tests (package stack_test).
var (
	UDPFrame        = udpFrame
	TCPFrame        = tcpSegmentFrame
	TCPGSOFrame     = tcpGSOFrame
	ICMPEchoFrame   = icmpEchoFrame
	ARPRequestFrame = arpRequestFrame
	IPv4HeaderValid = ipv4HeaderValid
	FragmentFrames  = fragmentFrames
)

// TCP flags for the external tests.
const (
	TCPSyn = tcpSyn
	TCPRst = tcpRst
	TCPAck = tcpAck
)

// Frame offsets for the external tests.
const (
	EthOff = ethOff
	NetOff = netOff
)

// Service NAT internals for the external tests and benchmarks.
var RewriteFlow = rewriteFlow

// NATProbe drives translateOut and translateReply on a raw IPv4 packet, as
// the readers do.
func (s *Stack) NATOut(ip []byte, partial bool) bool {
	return s.translateOut(nil, ip, partial, nil) == natDone
}
func (s *Stack) NATReply(ip []byte) bool { return s.translateReply(ip, false) }

// FloodRest is how long a reader rests after a frame its pod should not have sent.
const FloodRest = floodRest

// SetRest replaces the readers' rest (time.Sleep); call it before attaching pods.
func (s *Stack) SetRest(rest func(time.Duration)) { s.rest = rest }

// SweepConntrack runs the sweeper once at now.
func (s *Stack) SweepConntrack(now time.Time) { s.ct.sweep(now) }

// ClockSecond is the Stack's clock, in seconds, that the bound on new flows counts in.
func (s *Stack) ClockSecond() uint32 { return s.clock.Load() }
