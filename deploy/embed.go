// Package deploy holds podnet's Kubernetes manifest, deploy/podnet.yaml, for `podnet cluster up`
// to install as any cluster installs it.
package deploy

import _ "embed"

// Manifest is deploy/podnet.yaml.
//
//go:embed podnet.yaml
var Manifest []byte
