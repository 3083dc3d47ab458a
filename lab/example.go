package lab

import _ "embed"

// Example is the built-in example lab that `podnet lab up` runs without -f.
//
//go:embed example.yaml
var Example []byte
