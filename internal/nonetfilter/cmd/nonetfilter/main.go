//go:build linux && (amd64 || arm64)

// Command nonetfilter runs a command as if the kernel had been built without netfilter and XFRM:
// podnet's no-netfilter test mode (package nonetfilter). Refused system calls get the errno such a
// kernel gives; stand-ins for iptables, nft, modprobe, sysctl and the like are first on PATH.
//
//	nonetfilter [-allow] [-tolerate NAME[,NAME...]] -- COMMAND [ARG...]
//
// It prints what was refused or called, and exits with the command's status, or 3 if the command
// succeeded but something was refused or a stand-in was called (unless -allow). Refusals to the
// programs named by -tolerate (by their process name) are printed but do not fail the run: test
// tools that probe netfilter and carry on without it, as tshark's dumpcap does when it lists
// nflog capture interfaces.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/podnet/podnet/internal/nonetfilter"
)

func main() {
	nonetfilter.MaybeChild()
	allow := flag.Bool("allow", false, "exit with the command's status even if calls were refused or stand-ins called")
	tolerate := flag.String("tolerate", "", "comma-separated process names whose refused calls do not fail the run")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: nonetfilter [-allow] [-tolerate NAME[,NAME...]] -- COMMAND [ARG...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var tolerated []string
	if *tolerate != "" {
		tolerated = strings.Split(*tolerate, ",")
	}
	os.Exit(run(flag.Args(), *allow, tolerated))
}

func run(args []string, allow bool, tolerated []string) int {
	dir, err := os.MkdirTemp("", "nonetfilter-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "nonetfilter:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // stand-ins run as other users too
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	rep, err := nonetfilter.Run(cmd, nonetfilter.Options{StandIns: dir})
	fmt.Fprintf(os.Stderr, "nonetfilter: %s\n", rep)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return max(exit.ExitCode(), 1) // -1 (killed by a signal) is a failure too
	case err != nil:
		fmt.Fprintln(os.Stderr, "nonetfilter:", err)
		return 1
	case !allow && !clean(rep, tolerated):
		fmt.Fprintln(os.Stderr, "nonetfilter: FAIL: the command needed what a kernel without netfilter does not have")
		return 3
	}
	return 0
}

// clean reports whether nothing but the tolerated programs' calls was refused and no stand-in was
// called.
func clean(rep nonetfilter.Report, tolerated []string) bool {
	if rep.Unlisted > 0 {
		return false // whose they were is not known
	}
	for _, r := range rep.Refused {
		if !slices.Contains(tolerated, r.Command) {
			return false
		}
	}
	return len(rep.StandIns) == 0
}
