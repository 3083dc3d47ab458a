//go:build linux

package nonetfilter

import "golang.org/x/sys/unix"

// nativeArch is the AUDIT_ARCH of this program's ABI; a system call of any other ABI is refused.
const nativeArch = unix.AUDIT_ARCH_AARCH64

// x32Bit is zero: arm64 has no second ABI under the same AUDIT_ARCH.
const x32Bit = 0
