package stack

// Frame builders for the external tests (package stack_test).
var (
	UDPFrame        = udpFrame
	TCPGSOFrame     = tcpGSOFrame
	ICMPEchoFrame   = icmpEchoFrame
	ARPRequestFrame = arpRequestFrame
	IPv4HeaderValid = ipv4HeaderValid
)

// Frame offsets for the external tests.
const (
	EthOff = ethOff
	NetOff = netOff
)
