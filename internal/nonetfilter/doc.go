// Package nonetfilter is podnet's no-netfilter test mode: it makes the kernel look, to one
// process and everything it starts, like a kernel built without netfilter and without XFRM, the
// kernels podnet is for. The machines podnet is developed on have netfilter built in, so without
// this a dependency that quietly opens a netfilter socket (vishvananda/netlink's default handle
// did) would go unnoticed until a user's pods fail to start.
//
// A seccomp filter answers as such a kernel does:
//
//   - socket(AF_NETLINK, *, NETLINK_NETFILTER or NETLINK_XFRM): EPROTONOSUPPORT, as for a netlink
//     family with no kernel socket;
//   - setsockopt and getsockopt of the ip_tables, ip6_tables, arp_tables and ebtables control
//     options, the conntrack SO_ORIGINAL_DST lookups, IPVS's options and XFRM's per-socket
//     policies (IP_IPSEC_POLICY, IP_XFRM_POLICY and their IPv6 twins): ENOPROTOOPT, as
//     ip_setsockopt answers an option nobody registered;
//   - init_module and finit_module: ENOSYS, as on a kernel without loadable modules;
//   - any system call of another ABI (32-bit compat, x32): ENOSYS, so the rules cannot be
//     sidestepped through socketcall(2).
//
// Everything else is allowed. Files are not filtered: /proc/net/nf_conntrack and
// /proc/sys/net/netfilter still read as on this machine, so a program that probes netfilter
// through files is not caught (podnet reads neither). Filters are inherited across fork, clone and execve and cannot be
// removed, so a lab daemon, its pods and their clients all run under it.
//
// Two ways to use it:
//
//   - Install puts the filter on the calling process with errno answers. Tests that re-execute
//     themselves use it in the child.
//   - Run starts a command under the filter and supervises it (SECCOMP_RET_USER_NOTIF): every
//     refused call is answered with the same errno, and recorded with the process that made it,
//     so a run can fail on the first attempt instead of merely surviving it. Run can also put a
//     directory of stand-ins for iptables, ip6tables, nft, ebtables, modprobe and sysctl first on
//     PATH; each records its call and fails. The program in cmd/nonetfilter wraps Run for
//     `make test`.
//
// The rules exist twice, as BPF (Program) and in Go (Verdict), built from the same tables; the
// tests run the BPF in x/net/bpf's VM against Verdict, and the real filter against the kernel.
//
// This package is a test harness: podnet's own programs never import it. It supports
// linux/amd64 and linux/arm64 (little-endian: the filter reads the low word of each argument).
package nonetfilter
