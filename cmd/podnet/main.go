// Command podnet gives a set of nodes the Kubernetes network model in userspace. See the README.
package main

import (
	"os"

	"github.com/podnet/podnet/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
