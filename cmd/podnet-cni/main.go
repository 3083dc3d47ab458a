// Command podnet-cni is podnet's CNI plugin; see package cniplugin.
package main

import (
	"os"

	"github.com/podnet/podnet/cniplugin"
)

func main() { os.Exit(cniplugin.Main()) }
