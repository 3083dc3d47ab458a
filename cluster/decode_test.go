package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// exampleLab is like the lab `podnet lab up` starts without -f: three nodes,
// a Deployment of `podnet serve` pods and a client pod.
const exampleLab = `# The built-in example lab.
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata:
  name: podnet
spec:
  nodes:
  - name: node-a
  - name: node-b
  - name: node-c
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        command: ["podnet", "serve", "--http", "80"]
        ports:
        - {name: http, containerPort: 80}
        readinessProbe:
          tcpSocket: {port: http}
          periodSeconds: 2
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  containers:
  - name: client
    command: [sleep, infinity]
`

// designLab is the example of DESIGN.md.
const designLab = `apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: demo}
spec:
  clusterCIDR: 10.244.0.0/16     # each node gets a /24 in node order
  serviceCIDR: 10.96.0.0/16
  clusterDomain: cluster.local
  dnsIP: 10.96.0.10
  dns: {upstreams: ["127.0.0.1:5353"]}   # unset: the host's resolv.conf
  nodes: [{name: node-a}, {name: node-b}, {name: node-c}]   # optional per node: address
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  nodeName: node-a                 # optional; unset: spread over the nodes
  containers:
  - name: web
    command: ["podnet", "serve", "--http", "80"]
    ports: [{name: http, containerPort: 80}]
    readinessProbe: {tcpSocket: {port: 80}}
`

// lab is a minimal valid Lab document with the given spec lines (indented by
// two spaces) added after its nodes.
func lab(extra string) string {
	return "apiVersion: podnet.dev/v1alpha1\nkind: Lab\nmetadata: {name: demo}\nspec:\n  nodes: [{name: node-a}, {name: node-b}, {name: node-c}]\n" + extra
}

// pod is a valid Pod document named web-1 whose container has the given
// lines (indented by four spaces) added.
func pod(extra string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, labels: {app: web}}\nspec:\n  containers:\n  - name: web\n    command: [podnet, serve, --http, \"80\"]\n    ports: [{name: http, containerPort: 80}]\n" + extra
}

// decodeCases are lab files and what Decode must say of them. Each of want
// must be found in its own line of the error, and the error must have as
// many lines as want has entries.
var decodeCases = []struct {
	name  string
	in    string
	docs  int // documents of a good file
	wants []string
}{
	// Good files.
	{name: "built-in example", in: exampleLab, docs: 3},
	{name: "design example", in: designLab, docs: 2},
	{name: "empty stream", in: "", docs: 0},
	{name: "only comments and separators", in: "# nothing\n---\n# still nothing\n---\n\n...\n", docs: 0},
	{name: "null document", in: "~\n---\nnull\n", docs: 0},
	{name: "leading and trailing separators", in: "---\n" + lab("") + "---\n" + pod("") + "---\n", docs: 2},
	{name: "separator with comment and CRLF", in: strings.ReplaceAll(lab("")+"--- # next\n"+pod(""), "\n", "\r\n"), docs: 2},
	{name: "lab with addresses, upstreams and mtu", in: strings.Replace(lab("  dns: {upstreams: [\"1.1.1.1:53\", \"[2606:4700::1111]:53\"]}\n  mtu: 9000\n"),
		"{name: node-a}", "{name: node-a, address: 192.168.1.10}", 1), docs: 1},
	{name: "namespace and pod in it", in: "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n---\n" +
		strings.Replace(pod(""), "name: web-1,", "name: web-1, namespace: dev,", 1), docs: 2},
	{name: "same name in two namespaces", in: pod("") + "---\n" + strings.Replace(pod(""), "name: web-1,", "name: web-1, namespace: dev,", 1), docs: 2},
	{name: "same name, different kinds", in: pod("") + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: web-1}\n", docs: 2},
	{name: "probes of every kind", in: pod(`    readinessProbe: {httpGet: {port: http, path: /healthz}}
    livenessProbe: {exec: {command: [cat, /dev/null]}, periodSeconds: 5}
    startupProbe: {grpc: {port: 9000}}
    env:
    - {name: GREETING, value: hello}
    - name: MY_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: APP
      valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}
`), docs: 1},
	{name: "JSON stream", in: `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "dev"},
 "spec": {"containers": [{"name": "c", "command": ["sleep", "1"]}]}}`, docs: 2},
	{name: "List of items", in: `apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: dev}}
- {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: dev}, spec: {containers: [{name: c, command: [sleep, "1"]}]}}
`, docs: 2},
	{name: "quoted YAML 1.1 words are strings", in: "apiVersion: v1\nkind: Namespace\nmetadata: {name: \"y\", labels: {enabled: \"yes\"}}\n", docs: 1},
	{name: "deployment with matchExpressions", in: `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector:
    matchExpressions: [{key: app, operator: In, values: [web, www]}]
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, command: [podnet, serve]}]}
`, docs: 1},

	// Lab problems.
	{name: "cluster CIDR not a network address", in: lab("  clusterCIDR: 10.244.0.1/16\n"), wants: []string{
		`lab.yaml: document 1 (line 1): lab/demo: spec.clusterCIDR: Invalid value: "10.244.0.1/16": must be a network address, e.g. 10.244.0.0/16`}},
	{name: "cluster CIDR /33", in: lab("  clusterCIDR: 10.244.0.0/33\n"), wants: []string{
		`lab/demo: spec.clusterCIDR: Invalid value: "10.244.0.0/33": must be an IPv4 network in CIDR notation`}},
	{name: "cluster CIDR smaller than a /24", in: lab("  clusterCIDR: 10.244.0.0/25\n"), wants: []string{
		`spec.clusterCIDR: Invalid value: "10.244.0.0/25": must be a /24 or larger`}},
	{name: "cluster CIDR too small for the nodes", in: lab("  clusterCIDR: 10.244.0.0/23\n"), wants: []string{
		`spec.clusterCIDR: Invalid value: "10.244.0.0/23": has room for 2 nodes (a /24 each), but the lab has 3 nodes`}},
	{name: "cluster CIDR IPv6", in: lab("  clusterCIDR: fd00::/48\n"), wants: []string{
		`spec.clusterCIDR: Invalid value: "fd00::/48": must be an IPv4 network`}},
	{name: "cluster CIDR overlaps loopback", in: lab("  clusterCIDR: 127.16.0.0/16\n"), wants: []string{
		`spec.clusterCIDR: Invalid value: "127.16.0.0/16": overlaps the loopback range`}},
	{name: "service CIDR overlaps cluster CIDR", in: lab("  serviceCIDR: 10.244.128.0/20\n"), wants: []string{
		`spec.serviceCIDR: Invalid value: "10.244.128.0/20": overlaps spec.clusterCIDR 10.244.0.0/16`}},
	{name: "service CIDR too small", in: lab("  serviceCIDR: 10.96.0.0/29\n  dnsIP: 10.96.0.2\n"), wants: []string{
		`spec.serviceCIDR: Invalid value: "10.96.0.0/29": must be a /28 or larger`}},
	{name: "dns IP outside the service CIDR", in: lab("  dnsIP: 10.97.0.10\n"), wants: []string{
		`lab/demo: spec.dnsIP: Invalid value: "10.97.0.10": must be inside spec.serviceCIDR 10.96.0.0/16`}},
	{name: "dns IP is the network address", in: lab("  dnsIP: 10.96.0.0\n"), wants: []string{
		`spec.dnsIP: Invalid value: "10.96.0.0": must not be the network address`}},
	{name: "dns IP is the broadcast address", in: lab("  serviceCIDR: 10.100.0.0/24\n  dnsIP: 10.100.0.255\n"), wants: []string{
		`spec.dnsIP: Invalid value: "10.100.0.255": must not be the broadcast address`}},
	{name: "bad cluster domain and mtu", in: lab("  clusterDomain: Cluster_Local\n  mtu: 1000\n"), wants: []string{
		`spec.clusterDomain: Invalid value: "Cluster_Local": a lowercase RFC 1123 subdomain`,
		`spec.mtu: Invalid value: 1000: must be between 1280 and 65520, inclusive`}},
	{name: "new flows per pod below -1", in: lab("  maxNewFlowsPerPod: -5\n"), wants: []string{
		`spec.maxNewFlowsPerPod: Invalid value: -5: must be a number of new flows a second, 0 for the default (1000 for each CPU), or -1 for no bound`}},
	{name: "real-time priority out of range", in: lab("  realtimePriority: 100\n"), wants: []string{
		`spec.realtimePriority: Invalid value: 100: must be a SCHED_RR priority from 1 to 99, or 0 for the ordinary policy`}},
	{name: "negative real-time priority", in: lab("  realtimePriority: -1\n"), wants: []string{
		`spec.realtimePriority: Invalid value: -1: must be a SCHED_RR priority`}},
	{name: "no nodes", in: "apiVersion: podnet.dev/v1alpha1\nkind: Lab\nmetadata: {name: demo}\nspec: {nodes: []}\n", wants: []string{
		`lab/demo: spec.nodes: Required value: a lab needs at least one node`}},
	{name: "bad and duplicate nodes", in: `apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: demo}
spec:
  nodes:
  - {name: node-a, address: 192.168.1.10}
  - {name: node-a, address: 192.168.1.10}
  - {name: Node_B, address: 10.244.9.9}
  - {name: node-c, address: "300.1.1.1"}
  - {address: 192.168.1.11}
`, wants: []string{
		`spec.nodes[1].name: Duplicate value: "node-a"`,
		`spec.nodes[1].address: Duplicate value: "192.168.1.10"`,
		`spec.nodes[2].name: Invalid value: "Node_B": a lowercase RFC 1123 label`,
		`spec.nodes[2].address: Invalid value: "10.244.9.9": must not be inside spec.clusterCIDR 10.244.0.0/16`,
		`spec.nodes[3].address: Invalid value: "300.1.1.1": must be an IPv4 address`,
		`spec.nodes[4].name: Required value`}},
	{name: "bad upstreams", in: lab("  dns: {upstreams: [\"1.1.1.1\", dns.google:53, \"10.96.0.10:53\", \"9.9.9.9:0\"]}\n"), wants: []string{
		`spec.dns.upstreams[0]: Invalid value: "1.1.1.1": must be an IP address and a port, e.g. 1.1.1.1:53 or [2606:4700::1111]:53; add the port, usually :53`,
		`spec.dns.upstreams[1]: Invalid value: "dns.google:53": must be an IP address and a port`,
		`spec.dns.upstreams[2]: Invalid value: "10.96.0.10:53": is the cluster DNS address itself`,
		`spec.dns.upstreams[3]: Invalid value: "9.9.9.9:0": port must be from 1 to 65535`}},
	{name: "lab without a name, with a namespace", in: "apiVersion: podnet.dev/v1alpha1\nkind: Lab\nmetadata: {namespace: default}\nspec: {nodes: [{name: a}]}\n", wants: []string{
		`document 1 (line 1): lab: metadata.name: Required value`,
		`lab: metadata.namespace: Forbidden: a Lab is not namespaced`}},
	{name: "two labs", in: lab("") + "---\n" + strings.Replace(lab(""), "name: demo", "name: other", 1), wants: []string{
		`lab.yaml: document 2 (line 7): lab/other: kind: Forbidden: a lab file may hold only one Lab: lab/demo is at lab.yaml: document 1 (line 1)`}},

	// Type problems, and YAML 1.1's booleans.
	{name: "YAML boolean node name", in: "apiVersion: podnet.dev/v1alpha1\nkind: Lab\nmetadata: {name: demo}\nspec:\n  nodes: [{name: node-a}, {name: no}]\n", wants: []string{
		`lab.yaml: document 1 (line 1): lab/demo: spec.nodes[1].name: Invalid value: false: must be a string, but YAML 1.1 read the unquoted no as the boolean false: quote it ("no")`}},
	{name: "YAML boolean pod name", in: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: y\nspec: {containers: [{name: c, command: [sleep, \"1\"]}]}\n", wants: []string{
		`lab.yaml: document 1 (line 1): pod: metadata.name: Invalid value: true: must be a string, but YAML 1.1 read the unquoted y as the boolean true: quote it ("y")`}},
	{name: "YAML boolean label value and command word", in: pod("    args: [on]\n") + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev, labels: {debug: off}}\n", wants: []string{
		`pod/web-1: spec.containers[0].args[0]: Invalid value: true: must be a string, but YAML 1.1 read the unquoted on as the boolean true: quote it ("on")`,
		`namespace/dev: metadata.labels[debug]: Invalid value: false: must be a string, but YAML 1.1 read the unquoted off as the boolean false: quote it ("off")`}},
	{name: "YAML boolean key", in: pod("    y: 1\n"), wants: []string{
		`pod/web-1: unknown field "spec.containers[0].true" (YAML 1.1 reads an unquoted key y, yes, on, n, no or off as a boolean: quote the key)`}},
	{name: "wrong types everywhere", in: `apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: [a]}
spec:
  containers:
  - name: web
    command: podnet serve
    ports: [{containerPort: "80"}, {containerPort: 1.5}, {containerPort: 99999999999}]
  - name: other
    command: [sleep, 1]
    readinessProbe: {tcpSocket: {port: true}}
`, wants: []string{
		`pod/web-1: metadata.labels: Invalid value: must be a mapping, not a list`,
		`spec.containers[0].command: Invalid value: "podnet serve": must be a list`,
		`spec.containers[0].ports[0].containerPort: Invalid value: "80": must be an integer: remove the quotes`,
		`spec.containers[0].ports[1].containerPort: Invalid value: 1.5: must be a whole number`,
		`spec.containers[0].ports[2].containerPort: Invalid value: 99999999999: is out of range`,
		`spec.containers[1].command[1]: Invalid value: 1: must be a string: quote the value`,
		`spec.containers[1].readinessProbe.tcpSocket.port: Invalid value: true: must be an integer or a string`}},
	{name: "unknown field", in: pod("    imagee: nginx\n"), wants: []string{
		`lab.yaml: document 1 (line 1): pod/web-1: unknown field "spec.containers[0].imagee"`}},
	{name: "duplicate field in YAML", in: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n", wants: []string{
		`lab.yaml: document 1 (line 1): namespace/b: duplicate field "name" at line 5`}},
	{name: "duplicate field in JSON", in: `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "name": "b"}}`, wants: []string{
		`lab.yaml: document 1 (line 1): namespace/b: duplicate field "metadata.name"`}},
	{name: "duplicate object", in: pod("") + "---\n# again\n" + pod(""), wants: []string{
		`lab.yaml: document 2 (line 11): pod/web-1: metadata.name: Duplicate value: "web-1": pod/web-1 is defined twice in namespace default: also at lab.yaml: document 1 (line 1)`}},
	{name: "duplicate namespace", in: "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n", wants: []string{
		`document 2 (line 5): namespace/dev: metadata.name: Duplicate value: "dev": namespace/dev is defined twice: also at lab.yaml: document 1 (line 1)`}},

	// Kinds and syntax.
	{name: "unknown kind", in: "apiVersion: v1\nkind: Frobnicator\nmetadata: {name: a}\n", wants: []string{
		`lab.yaml: document 1 (line 1): kind: Invalid value: "Frobnicator": unknown kind`}},
	{name: "kind podnet knows but a lab file does not take", in: "apiVersion: v1\nkind: Node\nmetadata: {name: a}\n", wants: []string{
		`kind: Invalid value: "Node": podnet does not take Node objects from lab files`}},
	{name: "kind in the wrong case", in: "apiVersion: v1\nkind: pod\nmetadata: {name: a}\n", wants: []string{
		`kind: Invalid value: "pod": kinds are case-sensitive: did you mean Pod?`}},
	{name: "wrong apiVersion", in: "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: a}\n", wants: []string{
		`apiVersion: Unsupported value: "extensions/v1beta1": supported values: "apps/v1"`}},
	{name: "missing apiVersion and kind", in: "apiVersion: v1\nmetadata: {name: a}\n---\nkind: Pod\n", wants: []string{
		`document 1 (line 1): kind: Required value`,
		`document 2 (line 4): apiVersion: Required value: Pod objects have apiVersion v1`}},
	{name: "document is not a mapping", in: "- a\n- b\n", wants: []string{
		`lab.yaml: document 1 (line 1): a document must be a mapping with apiVersion and kind, not a list`}},
	{name: "YAML syntax error has an absolute line", in: lab("") + "---\n\n# comment\napiVersion: v1\nkind: Pod\nmetadata: {name: [a}\n", wants: []string{
		`lab.yaml: document 2 (line 9): invalid YAML at line 11: did not find expected ',' or ']'`}},
	{name: "bad item of a List", in: `apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: dev}}
- {apiVersion: v1, kind: Namespace, metadata: {name: Dev}}
- {apiVersion: v1, kind: List}
`, wants: []string{
		`lab.yaml: document 1 (line 1), item 2: namespace/Dev: metadata.name: Invalid value: "Dev"`,
		`lab.yaml: document 1 (line 1), item 3: kind: Invalid value: "List": a List may not hold another List`}},

	// Pod problems.
	{name: "container without command", in: "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1}\nspec:\n  containers: [{name: web, image: nginx}]\n", wants: []string{
		`pod/web-1: spec.containers[0].command: Required value: podnet runs a container's command from the host's filesystem`}},
	{name: "pod without containers", in: "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1}\nspec: {}\n", wants: []string{
		`pod/web-1: spec.containers: Required value: a pod needs at least one container`}},
	{name: "bad pod and container names", in: "apiVersion: v1\nkind: Pod\nmetadata: {name: Web_1, namespace: Dev}\nspec:\n  containers: [{name: Web, command: [a]}, {name: b, command: [a]}, {name: b, command: [a]}]\n", wants: []string{
		`pod/Web_1: metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain`,
		`pod/Web_1: metadata.namespace: Invalid value: "Dev": a lowercase RFC 1123 label`,
		`pod/Web_1: spec.containers[0].name: Invalid value: "Web": a lowercase RFC 1123 label must consist of`,
		`pod/Web_1: spec.containers[2].name: Duplicate value: "b"`}},
	{name: "bad ports", in: `apiVersion: v1
kind: Pod
metadata: {name: web-1}
spec:
  containers:
  - name: web
    command: [podnet, serve]
    ports:
    - {containerPort: 80, name: http}
    - {containerPort: 0}
    - {containerPort: 81, protocol: ICMP}
    - {containerPort: 82, name: "http_2"}
    - {containerPort: 83, name: http}
    - {containerPort: 84, hostPort: 8080}
`, wants: []string{
		`spec.containers[0].ports[1].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive`,
		`spec.containers[0].ports[2].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"`,
		`spec.containers[0].ports[3].name: Invalid value: "http_2"`,
		`spec.containers[0].ports[4].name: Duplicate value: "http"`,
		`spec.containers[0].ports[5].hostPort: Forbidden: hostPort is not supported by podnet`}},
	{name: "bad restart policy, host network and node name", in: pod("") + "  restartPolicy: Sometimes\n  hostNetwork: true\n  nodeName: Node_A\n", wants: []string{
		`pod/web-1: spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"`,
		`pod/web-1: spec.hostNetwork: Forbidden: hostNetwork is not supported in the lab`,
		`pod/web-1: spec.nodeName: Invalid value: "Node_A"`}},
	{name: "bad probes", in: pod(`    readinessProbe: {tcpSocket: {port: 80}, httpGet: {port: 80}, periodSeconds: -1}
    livenessProbe: {initialDelaySeconds: 3, successThreshold: 2}
    startupProbe: {tcpSocket: {port: metrics}}
`), wants: []string{
		`spec.containers[0].readinessProbe.httpGet: Forbidden: may not set more than one handler: tcpSocket is set`,
		`spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0`,
		`spec.containers[0].livenessProbe: Required value: must set one handler: tcpSocket, httpGet, exec or grpc`,
		`spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1 for liveness and startup probes`,
		`spec.containers[0].startupProbe.tcpSocket.port: Invalid value: "metrics": must be a port number or the name of one of the container's ports: http`}},
	{name: "bad probe ports and paths", in: pod(`    readinessProbe: {httpGet: {port: 70000, path: healthz, scheme: FTP}}
    livenessProbe: {tcpSocket: {port: "80"}}
`), wants: []string{
		`readinessProbe.httpGet.port: Invalid value: 70000: must be between 1 and 65535, inclusive`,
		`readinessProbe.httpGet.path: Invalid value: "healthz": must be an absolute path`,
		`readinessProbe.httpGet.scheme: Unsupported value: "FTP"`,
		`livenessProbe.tcpSocket.port: Invalid value: "80": must contain at least one letter`}},
	{name: "bad env", in: pod(`    env:
    - {name: "1BAD", value: x}
    - name: SECRET
      valueFrom: {secretKeyRef: {name: s, key: k}}
    - name: WHERE
      valueFrom: {fieldRef: {fieldPath: spec.hostname}}
    envFrom: [{configMapRef: {name: c}}]
`), wants: []string{
		`spec.containers[0].env[0].name: Invalid value: "1BAD"`,
		`spec.containers[0].env[1].valueFrom.secretKeyRef: Forbidden: secretKeyRef is not supported by podnet`,
		`spec.containers[0].env[2].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.hostname"`,
		`spec.containers[0].envFrom: Forbidden: envFrom is not supported by podnet`}},
	{name: "bad labels", in: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dev\n  labels: {\"bad key!\": a, good: \"bad value!\"}\n", wants: []string{
		`namespace/dev: metadata.labels: Invalid value: "bad key!": name part must consist of`,
		`namespace/dev: metadata.labels[good]: Invalid value: "bad value!": a valid label must be`}},
	{name: "namespace with a namespace", in: "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev, namespace: default}\n", wants: []string{
		`namespace/dev: metadata.namespace: Forbidden: a Namespace is not namespaced: remove metadata.namespace`}},

	// Deployment problems.
	{name: "deployment selector does not match", in: `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: -2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: webb}}
    spec:
      restartPolicy: OnFailure
      containers: [{name: web}]
`, wants: []string{
		`deployment.apps/web: spec.replicas: Invalid value: -2: must be greater than or equal to 0`,
		"deployment.apps/web: spec.template.metadata.labels: Invalid value: {\"app\":\"webb\"}: `selector` does not match template `labels`",
		`deployment.apps/web: spec.template.spec.containers[0].command: Required value`,
		`deployment.apps/web: spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"`}},
	{name: "deployment without selector", in: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec: {containers: [{name: web, command: [a]}]}\n", wants: []string{
		`deployment.apps/web: spec.selector: Required value`}},

	// Everything at once: every document's problems are reported.
	{name: "all problems collected", in: lab("  clusterCIDR: 10.244.0.1/16\n  mtu: 1\n") + "---\n" + pod("    imagee: x\n") + "---\n" + pod("") +
		"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n---\nkind: Thing\n", wants: []string{
		`document 1 (line 1): lab/demo: spec.clusterCIDR`,
		`document 1 (line 1): lab/demo: spec.mtu`,
		`document 2 (line 9): pod/web-1: unknown field "spec.containers[0].imagee"`,
		`document 3 (line 19): pod/web-1: metadata.name: Duplicate value: "web-1": pod/web-1 is defined twice in namespace default: also at lab.yaml: document 2 (line 9)`,
		`document 4 (line 28): namespace: metadata.name: Invalid value: true: must be a string, but YAML 1.1 read the unquoted y`,
		`document 5 (line 32): namespace: metadata.name: Invalid value: false: must be a string, but YAML 1.1 read the unquoted n`,
		`document 6 (line 36): kind: Invalid value: "Thing"`}},
}

func TestDecode(t *testing.T) {
	for _, tt := range decodeCases {
		t.Run(tt.name, func(t *testing.T) { checkDecode(t, tt.in, tt.docs, tt.wants) })
	}
}

// checkDecode decodes in and checks that it gives want documents, or, if
// wants is not empty, an error with one line containing each of wants. It
// returns the documents.
func checkDecode(t *testing.T, in string, want int, wants []string) []Document {
	t.Helper()
	docs, err := Decode(strings.NewReader(in), "lab.yaml")
	if len(wants) == 0 {
		if err != nil {
			t.Fatalf("Decode: unexpected error:\n%v", err)
		}
		if len(docs) != want {
			t.Fatalf("Decode returned %d documents, want %d", len(docs), want)
		}
		return docs
	}
	if err == nil {
		t.Fatalf("Decode succeeded, want errors:\n%s", strings.Join(wants, "\n"))
	}
	if docs != nil {
		t.Errorf("Decode returned %d documents with an error", len(docs))
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("Decode error is %T, want *DecodeError", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(de.Problems) {
		t.Errorf("error has %d lines for %d problems", len(lines), len(de.Problems))
	}
	used := make([]bool, len(lines))
want:
	for _, w := range wants {
		for i, l := range lines {
			if !used[i] && strings.Contains(l, w) {
				used[i] = true
				continue want
			}
		}
		t.Errorf("no line of the error contains\n\t%s", w)
	}
	if len(lines) != len(wants) {
		t.Errorf("error has %d lines, want %d", len(lines), len(wants))
	}
	if t.Failed() {
		t.Logf("the error:\n%v", err)
	}
	return nil
}

func TestDecodeExample(t *testing.T) {
	docs, err := Decode(strings.NewReader(exampleLab), "example")
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 3 {
		t.Fatalf("got %d documents, want 3", len(docs))
	}
	var names []string
	for _, d := range docs {
		names = append(names, fmt.Sprintf("%s %s", d.Position(), ObjectName(d.Object)))
	}
	want := []string{
		"example: document 1 (line 2) lab/podnet",
		"example: document 2 (line 12) deployment.apps/web",
		"example: document 3 (line 34) pod/client",
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Errorf("documents:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}

	l := docs[0].Object.(*Lab)
	if l.APIVersion != LabAPIVersion || l.Kind != "Lab" {
		t.Errorf("lab TypeMeta = %+v", l.TypeMeta)
	}
	wantSpec := LabSpec{
		ClusterCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/16", ClusterDomain: "cluster.local",
		DNSIP: "10.96.0.10", MTU: 1500,
		Nodes: []LabNode{{Name: "node-a"}, {Name: "node-b"}, {Name: "node-c"}},
	}
	if fmt.Sprint(l.Spec) != fmt.Sprint(wantSpec) {
		t.Errorf("lab spec = %+v, want %+v", l.Spec, wantSpec)
	}

	dep := docs[1].Object.(*appsv1.Deployment)
	if dep.Namespace != "default" || *dep.Spec.Replicas != 3 {
		t.Errorf("deployment namespace %q replicas %d", dep.Namespace, *dep.Spec.Replicas)
	}
	ps := dep.Spec.Template.Spec
	if ps.RestartPolicy != corev1.RestartPolicyAlways || ps.DNSPolicy != corev1.DNSClusterFirst {
		t.Errorf("template restartPolicy %q dnsPolicy %q", ps.RestartPolicy, ps.DNSPolicy)
	}
	c := ps.Containers[0]
	if c.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("port protocol %q, want TCP", c.Ports[0].Protocol)
	}
	if p := c.ReadinessProbe; p.PeriodSeconds != 2 || p.TimeoutSeconds != 1 || p.FailureThreshold != 3 || p.SuccessThreshold != 1 || p.TCPSocket.Port.StrVal != "http" {
		t.Errorf("readiness probe %+v", p)
	}

	client := docs[2].Object.(*corev1.Pod)
	if client.Namespace != "default" || client.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		t.Errorf("client namespace %q restartPolicy %q", client.Namespace, client.Spec.RestartPolicy)
	}
	if got := strings.Join(client.Spec.Containers[0].Command, " "); got != "sleep infinity" {
		t.Errorf("client command %q", got)
	}
}

func TestDecodeDeploymentDefaultReplicas(t *testing.T) {
	in := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, command: [podnet, serve]}]}\n"
	docs, err := Decode(strings.NewReader(in), "d.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r := docs[0].Object.(*appsv1.Deployment).Spec.Replicas; r == nil || *r != 1 {
		t.Fatalf("replicas = %v, want 1", r)
	}
}

func TestDecodeErrorShape(t *testing.T) {
	in := lab("") + "---\n" + pod("    imagee: x\n  restartPolicy: Sometimes\n")
	_, err := Decode(strings.NewReader(in), "f.yaml")
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *DecodeError", err)
	}
	if len(de.Problems) != 2 {
		t.Fatalf("got %d problems, want 2:\n%v", len(de.Problems), err)
	}
	want := []Problem{
		{Source: "f.yaml", Index: 2, Line: 7, Object: "pod/web-1", Field: "spec.containers[0].imagee"},
		{Source: "f.yaml", Index: 2, Line: 7, Object: "pod/web-1", Field: "spec.restartPolicy"},
	}
	for i, p := range de.Problems {
		got := p
		got.Err = nil
		if got != want[i] {
			t.Errorf("problem %d = %+v, want %+v", i, got, want[i])
		}
	}
	var fe *field.Error
	if !errors.As(err, &fe) || fe.Type != field.ErrorTypeNotSupported || fe.Field != "spec.restartPolicy" {
		t.Errorf("errors.As(*field.Error) = %v", fe)
	}
}

func TestDecodeYAMLBooleanWords(t *testing.T) {
	for word, value := range yamlBools {
		t.Run(word, func(t *testing.T) {
			in := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + word + "\n"
			_, err := Decode(strings.NewReader(in), "ns.yaml")
			want := fmt.Sprintf("namespace: metadata.name: Invalid value: %t: must be a string, but YAML 1.1 read the unquoted %s as the boolean %t: quote it (%q)", value, word, value, word)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Decode error = %v\nwant it to contain %s", err, want)
			}
			in = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"" + word + "\"\n"
			_, err = Decode(strings.NewReader(in), "ns.yaml")
			if err != nil && strings.Contains(err.Error(), "YAML 1.1") {
				t.Fatalf("quoted %q: %v", word, err)
			}
		})
	}
	// Where the word cannot be told, the error still explains.
	in := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, command: [x, yes]}\n  - {name: b, command: [x, on]}\n"
	_, err := Decode(strings.NewReader(in), "p.yaml")
	if err == nil || !strings.Contains(err.Error(), "spec.containers[1].command[1]: Invalid value: true: must be a string, but YAML 1.1 read an unquoted word as the boolean true (y, yes, on and true are true; n, no, off and false are false): quote the value") {
		t.Fatalf("Decode error = %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestDecodeReadError(t *testing.T) {
	_, err := Decode(failingReader{}, "x.yaml")
	if err == nil || !strings.Contains(err.Error(), "read x.yaml: disk on fire") {
		t.Fatalf("Decode error = %v", err)
	}
	var de *DecodeError
	if errors.As(err, &de) {
		t.Fatalf("a read error should not be a *DecodeError")
	}
}

func TestDecodeTooLarge(t *testing.T) {
	big := strings.NewReader("# " + strings.Repeat("x", MaxStreamSize))
	_, err := Decode(big, "big.yaml")
	if err == nil || !strings.Contains(err.Error(), "big.yaml: too large") {
		t.Fatalf("Decode error = %v", err)
	}
}

func TestDocumentPosition(t *testing.T) {
	for _, tt := range []struct {
		d    Document
		want string
	}{
		{Document{Source: "lab.yaml", Index: 2, Line: 7}, "lab.yaml: document 2 (line 7)"},
		{Document{Source: "lab.yaml", Index: 2, Line: 7, Item: 3}, "lab.yaml: document 2 (line 7), item 3"},
		{Document{Index: 1, Line: 1}, "document 1 (line 1)"},
		{Document{Source: "-"}, "-"},
	} {
		if got := tt.d.Position(); got != tt.want {
			t.Errorf("Position() = %q, want %q", got, tt.want)
		}
	}
}

func BenchmarkDecodeExample(b *testing.B) {
	b.SetBytes(int64(len(exampleLab)))
	for i := 0; i < b.N; i++ {
		if _, err := Decode(strings.NewReader(exampleLab), "example"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeManyErrors decodes a document with a thousand YAML 1.1
// booleans where strings belong: the cost must stay linear.
func BenchmarkDecodeManyErrors(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    command:\n")
	for i := 0; i < 1000; i++ {
		sb.WriteString("    - yes\n")
	}
	in := sb.String()
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		if _, err := Decode(strings.NewReader(in), "many"); err == nil {
			b.Fatal("no error")
		}
	}
}
