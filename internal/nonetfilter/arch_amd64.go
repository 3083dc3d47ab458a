//go:build linux

package nonetfilter

import "golang.org/x/sys/unix"

// nativeArch is the AUDIT_ARCH of this program's ABI; a system call of any other ABI is refused.
const nativeArch = unix.AUDIT_ARCH_X86_64

// x32Bit marks the x32 ABI's system calls, which share AUDIT_ARCH_X86_64: they are refused too.
const x32Bit = 0x40000000
