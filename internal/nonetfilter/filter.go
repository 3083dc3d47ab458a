//go:build linux && (amd64 || arm64)

package nonetfilter

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// netlinkFamily is a netlink protocol that a kernel without netfilter or XFRM does not have.
type netlinkFamily struct {
	proto uint32
	name  string
}

// deniedFamilies are the netlink families of nfnetlink (nftables, conntrack, ipset, NFLOG/NFQUEUE)
// and of XFRM (IPsec).
func deniedFamilies() []netlinkFamily {
	return []netlinkFamily{
		{unix.NETLINK_NETFILTER, "NETLINK_NETFILTER"},
		{unix.NETLINK_XFRM, "NETLINK_XFRM"},
	}
}

// optionRange is a run of socket options at one level that only netfilter registers
// (nf_register_sockopt); without it ip_setsockopt and ip_getsockopt answer ENOPROTOOPT.
type optionRange struct {
	level       uint32
	first, last uint32
	name        string
}

// deniedOptions lists them, from the kernel's uapi headers. At SOL_IPV6, 66 and 67 are
// IPV6_RECVTCLASS and IPV6_TCLASS, ordinary options between ip6_tables' two runs.
func deniedOptions() []optionRange {
	return []optionRange{
		{unix.SOL_IP, 16, 17, "IP_IPSEC_POLICY/IP_XFRM_POLICY"},       // XFRM's per-socket policies
		{unix.SOL_IP, 64, 67, "ip_tables"},                            // IPT_SO_SET_REPLACE .. IPT_SO_GET_REVISION_TARGET
		{unix.SOL_IP, 80, 80, "SO_ORIGINAL_DST"},                      // conntrack's original destination
		{unix.SOL_IP, 96, 99, "arp_tables"},                           // ARPT_SO_*
		{unix.SOL_IP, 128, 131, "ebtables"},                           // EBT_SO_*
		{unix.SOL_IP, 1152, 1167, "IPVS"},                             // IP_VS_SO_* (IP_VS_BASE_CTL = 64+1024+64)
		{unix.SOL_IPV6, 34, 35, "IPV6_IPSEC_POLICY/IPV6_XFRM_POLICY"}, // XFRM's per-socket policies
		{unix.SOL_IPV6, 64, 65, "ip6_tables"},                         // IP6T_SO_SET_REPLACE, IP6T_SO_SET_ADD_COUNTERS
		{unix.SOL_IPV6, 68, 69, "ip6_tables"},                         // IP6T_SO_GET_REVISION_MATCH, _TARGET
		{unix.SOL_IPV6, 80, 80, "IP6T_SO_ORIGINAL_DST"},               // conntrack's original destination
	}
}

// moduleCalls load kernel modules.
func moduleCalls() []struct {
	nr   uint32
	name string
} {
	return []struct {
		nr   uint32
		name string
	}{{unix.SYS_INIT_MODULE, "init_module"}, {unix.SYS_FINIT_MODULE, "finit_module"}}
}

// Call is one system call as seccomp sees it (struct seccomp_data, less the instruction pointer).
type Call struct {
	Nr   int32
	Arch uint32
	Args [6]uint64
}

// Verdict returns the errno with which a kernel without netfilter and XFRM refuses c, and a
// description of the call ("socket(AF_NETLINK, NETLINK_XFRM)"); errno 0 for a call it allows. It
// is the filter's rules in Go, for the supervisor of Run, which must answer what the BPF only
// flagged.
func Verdict(c Call) (unix.Errno, string) {
	if c.Arch != nativeArch || (x32Bit != 0 && uint32(c.Nr)&x32Bit != 0) {
		return unix.ENOSYS, fmt.Sprintf("system call %d of another ABI (arch %#x)", c.Nr, c.Arch)
	}
	nr := uint32(c.Nr)
	low := func(i int) uint32 { return uint32(c.Args[i]) } // the kernel reads int arguments as 32 bits
	switch nr {
	case unix.SYS_SOCKET:
		if low(0) != unix.AF_NETLINK {
			return 0, ""
		}
		for _, f := range deniedFamilies() {
			if low(2) == f.proto {
				return unix.EPROTONOSUPPORT, "socket(AF_NETLINK, " + f.name + ")"
			}
		}
	case unix.SYS_SETSOCKOPT, unix.SYS_GETSOCKOPT:
		name := "setsockopt"
		if nr == unix.SYS_GETSOCKOPT {
			name = "getsockopt"
		}
		for _, o := range deniedOptions() {
			if low(1) == o.level && low(2) >= o.first && low(2) <= o.last {
				return unix.ENOPROTOOPT, fmt.Sprintf("%s(level %d, option %d: %s)", name, o.level, low(2), o.name)
			}
		}
	default:
		for _, m := range moduleCalls() {
			if nr == m.nr {
				return unix.ENOSYS, m.name
			}
		}
	}
	return 0, ""
}

// Offsets into struct seccomp_data: nr, arch, then instruction_pointer and args[6] (u64 each;
// on a little-endian machine an argument's low word comes first).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

func argLow(i int) uint32 { return offArgs + 8*uint32(i) }

// Program returns the filter as BPF. A refused call returns deny(errno): SECCOMP_RET_ERRNO|errno
// to answer at once, or SECCOMP_RET_USER_NOTIF to let a supervisor answer (and record) it.
func Program(deny func(unix.Errno) uint32) ([]bpf.Instruction, error) {
	var p program
	p.add(bpf.LoadAbsolute{Off: offArch, Size: 4}, "")
	p.add(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: nativeArch}, "enosys")
	p.add(bpf.LoadAbsolute{Off: offNr, Size: 4}, "")
	if x32Bit != 0 {
		p.add(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: x32Bit}, "enosys")
	}
	p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SOCKET}, "socket")
	p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SETSOCKOPT}, "sockopt")
	p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_GETSOCKOPT}, "sockopt")
	for _, m := range moduleCalls() {
		p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: m.nr}, "enosys")
	}
	p.add(bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW}, "")

	p.label("socket")
	p.add(bpf.LoadAbsolute{Off: argLow(0), Size: 4}, "")
	p.add(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.AF_NETLINK}, "allow")
	p.add(bpf.LoadAbsolute{Off: argLow(2), Size: 4}, "")
	for _, f := range deniedFamilies() {
		p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: f.proto}, "eprotonosupport")
	}
	p.add(bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW}, "")

	p.label("sockopt")
	levels := map[uint32]bool{}
	for _, o := range deniedOptions() {
		levels[o.level] = true
	}
	for _, level := range []uint32{unix.SOL_IP, unix.SOL_IPV6} {
		if !levels[level] {
			continue
		}
		next := fmt.Sprintf("level-%d-end", level)
		p.add(bpf.LoadAbsolute{Off: argLow(1), Size: 4}, "")
		p.add(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: level}, next)
		p.add(bpf.LoadAbsolute{Off: argLow(2), Size: 4}, "")
		for i, o := range deniedOptions() {
			if o.level != level {
				continue
			}
			skip := fmt.Sprintf("range-%d-end", i)
			p.add(bpf.JumpIf{Cond: bpf.JumpLessThan, Val: o.first}, skip)
			p.add(bpf.JumpIf{Cond: bpf.JumpLessOrEqual, Val: o.last}, "enoprotoopt")
			p.label(skip)
		}
		p.label(next)
	}
	p.label("allow")
	p.add(bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW}, "")
	p.label("enosys")
	p.add(bpf.RetConstant{Val: deny(unix.ENOSYS)}, "")
	p.label("eprotonosupport")
	p.add(bpf.RetConstant{Val: deny(unix.EPROTONOSUPPORT)}, "")
	p.label("enoprotoopt")
	p.add(bpf.RetConstant{Val: deny(unix.ENOPROTOOPT)}, "")
	return p.resolve()
}

// program is a tiny assembler for forward jumps to labels: classic BPF jumps only forward, by
// an 8-bit count of instructions for a conditional one.
type program struct {
	ins    []bpf.Instruction
	target []string       // per instruction: the label a JumpIf's true branch goes to
	labels map[string]int // label -> index of the instruction it names
}

func (p *program) add(ins bpf.Instruction, target string) {
	p.ins = append(p.ins, ins)
	p.target = append(p.target, target)
}

func (p *program) label(name string) {
	if p.labels == nil {
		p.labels = map[string]int{}
	}
	p.labels[name] = len(p.ins)
}

func (p *program) resolve() ([]bpf.Instruction, error) {
	out := make([]bpf.Instruction, len(p.ins))
	for i, ins := range p.ins {
		out[i] = ins
		if p.target[i] == "" {
			continue
		}
		j, ok := ins.(bpf.JumpIf)
		at, known := p.labels[p.target[i]]
		switch {
		case !ok:
			return nil, fmt.Errorf("instruction %d: a target on %T", i, ins)
		case !known:
			return nil, fmt.Errorf("instruction %d: no label %q", i, p.target[i])
		case at <= i || at-i-1 > 255:
			return nil, fmt.Errorf("instruction %d: label %q at %d is out of reach", i, p.target[i], at)
		}
		j.SkipTrue = uint8(at - i - 1)
		out[i] = j
	}
	return out, nil
}
