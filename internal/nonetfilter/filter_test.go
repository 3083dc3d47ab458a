//go:build linux && (amd64 || arm64)

package nonetfilter

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// runBPF runs the filter in x/net/bpf's VM. The VM loads words big-endian (network order) where
// seccomp loads them in the machine's order, so each 32-bit word the filter reads is laid out
// big-endian here: nr, arch and the low word of each argument.
func runBPF(t testing.TB, vm *bpf.VM, c Call) uint32 {
	t.Helper()
	in := make([]byte, 64)
	binary.BigEndian.PutUint32(in[offNr:], uint32(c.Nr))
	binary.BigEndian.PutUint32(in[offArch:], c.Arch)
	for i, a := range c.Args {
		binary.BigEndian.PutUint32(in[argLow(i):], uint32(a))
		binary.BigEndian.PutUint32(in[argLow(i)+4:], uint32(a>>32))
	}
	r, err := vm.Run(in)
	if err != nil {
		t.Fatalf("run the filter on %+v: %v", c, err)
	}
	return uint32(r)
}

func errnoVM(t testing.TB) *bpf.VM {
	t.Helper()
	prog, err := Program(func(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) })
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// answer turns a filter's return value into the errno the caller sees (0: allowed).
func answer(t testing.TB, ret uint32) unix.Errno {
	switch ret & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_ALLOW:
		return 0
	case unix.SECCOMP_RET_ERRNO:
		return unix.Errno(ret & unix.SECCOMP_RET_DATA)
	}
	t.Fatalf("unexpected filter action %#x", ret)
	return 0
}

func call(nr uintptr, args ...uint64) Call {
	c := Call{Nr: int32(nr), Arch: nativeArch}
	copy(c.Args[:], args)
	return c
}

func TestProgramAndVerdict(t *testing.T) {
	const high = 0xdead_0000_0000 // garbage in an int argument's high word: the kernel ignores it
	for _, tc := range []struct {
		name string
		call Call
		want unix.Errno
	}{
		{"netfilter netlink", call(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER), unix.EPROTONOSUPPORT},
		{"xfrm netlink", call(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_DGRAM, unix.NETLINK_XFRM), unix.EPROTONOSUPPORT},
		{"xfrm netlink, high bits set", call(unix.SYS_SOCKET, high|unix.AF_NETLINK, unix.SOCK_RAW, high|unix.NETLINK_XFRM), unix.EPROTONOSUPPORT},
		{"route netlink", call(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE), 0},
		{"generic netlink", call(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_GENERIC), 0},
		{"protocol 12 of another family", call(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_RAW, 12), 0},
		{"UDP socket", call(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_DGRAM, 0), 0},
		{"IPT_SO_SET_REPLACE", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IP, 64), unix.ENOPROTOOPT},
		{"IPT_SO_GET_REVISION_TARGET", call(unix.SYS_GETSOCKOPT, 3, unix.SOL_IP, 67), unix.ENOPROTOOPT},
		{"SO_ORIGINAL_DST", call(unix.SYS_GETSOCKOPT, 3, unix.SOL_IP, 80), unix.ENOPROTOOPT},
		{"ARPT_SO_SET_REPLACE", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IP, 96), unix.ENOPROTOOPT},
		{"ARPT_SO_GET_REVISION_TARGET", call(unix.SYS_GETSOCKOPT, 3, unix.SOL_IP, 99), unix.ENOPROTOOPT},
		{"EBT_SO_SET_ENTRIES", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IP, 128), unix.ENOPROTOOPT},
		{"EBT_SO_GET_INIT_ENTRIES", call(unix.SYS_GETSOCKOPT, 3, unix.SOL_IP, 131), unix.ENOPROTOOPT},
		{"IP_VS_SO_SET_ADD", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IP, 1154), unix.ENOPROTOOPT},
		{"IP6T_SO_SET_REPLACE", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IPV6, 64), unix.ENOPROTOOPT},
		{"IP6T_SO_GET_REVISION_MATCH", call(unix.SYS_GETSOCKOPT, 3, unix.SOL_IPV6, 68), unix.ENOPROTOOPT},
		{"IP6T_SO_ORIGINAL_DST", call(unix.SYS_GETSOCKOPT, 3, unix.SOL_IPV6, 80), unix.ENOPROTOOPT},
		{"IPV6_RECVTCLASS", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IPV6, unix.IPV6_RECVTCLASS), 0},
		{"IPV6_TCLASS", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IPV6, unix.IPV6_TCLASS), 0},
		{"IP_TOS", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IP, unix.IP_TOS), 0},
		{"IP_XFRM_POLICY", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IP, unix.IP_XFRM_POLICY), unix.ENOPROTOOPT},
		{"IPV6_IPSEC_POLICY", call(unix.SYS_GETSOCKOPT, 3, unix.SOL_IPV6, unix.IPV6_IPSEC_POLICY), unix.ENOPROTOOPT},
		{"IP_RECVERR (just above XFRM's)", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IP, unix.IP_RECVERR), 0},
		{"IP_PROTOCOL", call(unix.SYS_GETSOCKOPT, 3, unix.SOL_IP, 52), 0},
		{"just below ebtables", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IP, 127), 0},
		{"just above ebtables", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_IP, 132), 0},
		{"option 64 at SOL_SOCKET", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_SOCKET, 64), 0},
		{"UDP_GRO", call(unix.SYS_SETSOCKOPT, 3, unix.SOL_UDP, unix.UDP_GRO), 0},
		{"init_module", call(unix.SYS_INIT_MODULE), unix.ENOSYS},
		{"finit_module", call(unix.SYS_FINIT_MODULE, 3), unix.ENOSYS},
		{"read", call(unix.SYS_READ, 0), 0},
		{"another ABI", Call{Nr: 102, Arch: 0x40000003}, unix.ENOSYS}, // i386 socketcall
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, what := Verdict(tc.call)
			if got != tc.want {
				t.Errorf("Verdict = %v (%q), want %v", got, what, tc.want)
			}
			if got != 0 && what == "" {
				t.Errorf("Verdict refuses without saying what")
			}
			if bpfGot := answer(t, runBPF(t, errnoVM(t), tc.call)); bpfGot != tc.want {
				t.Errorf("filter answers %v, want %v", bpfGot, tc.want)
			}
		})
	}
}

// TestNotifyProgram checks that with supervisor answers every refusal becomes a notification.
func TestNotifyProgram(t *testing.T) {
	prog, err := Program(func(unix.Errno) uint32 { return unix.SECCOMP_RET_USER_NOTIF })
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	if got := runBPF(t, vm, call(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_XFRM)); got != unix.SECCOMP_RET_USER_NOTIF {
		t.Errorf("xfrm socket: filter returns %#x, want SECCOMP_RET_USER_NOTIF", got)
	}
	if got := runBPF(t, vm, call(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)); got != unix.SECCOMP_RET_ALLOW {
		t.Errorf("route socket: filter returns %#x, want SECCOMP_RET_ALLOW", got)
	}
}

// FuzzProgramAgreesWithVerdict checks the two forms of the rules against each other on any call.
func FuzzProgramAgreesWithVerdict(f *testing.F) {
	f.Add(int32(unix.SYS_SOCKET), uint32(nativeArch), uint64(unix.AF_NETLINK), uint64(unix.SOCK_RAW), uint64(unix.NETLINK_NETFILTER))
	f.Add(int32(unix.SYS_SETSOCKOPT), uint32(nativeArch), uint64(3), uint64(unix.SOL_IPV6), uint64(69))
	f.Add(int32(unix.SYS_GETSOCKOPT), uint32(nativeArch), uint64(3), uint64(unix.SOL_IP), uint64(1167))
	f.Add(int32(unix.SYS_FINIT_MODULE), uint32(nativeArch), uint64(0), uint64(0), uint64(0))
	f.Add(int32(unix.SYS_SOCKET|0x40000000), uint32(nativeArch), uint64(unix.AF_NETLINK), uint64(0), uint64(unix.NETLINK_XFRM))
	vm := errnoVM(f)
	f.Fuzz(func(t *testing.T, nr int32, arch uint32, a0, a1, a2 uint64) {
		c := Call{Nr: nr, Arch: arch, Args: [6]uint64{a0, a1, a2}}
		want, _ := Verdict(c)
		if got := answer(t, runBPF(t, vm, c)); got != want {
			t.Errorf("%+v: filter answers %v, Verdict %v", c, got, want)
		}
	})
}
