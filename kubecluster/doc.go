// Package kubecluster runs a real multi-node Kubernetes cluster on one Linux machine whose only
// network is podnet (`podnet cluster up`): etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, and on every node a kubelet with its own containerd and Debian's runc. There
// is no Docker, no kind, no kube-proxy, no CoreDNS, no iptables and no kernel module: podnet is
// installed from deploy/podnet.yaml as its DaemonSet, from an image built on the machine.
//
// # Layout
//
// Everything a cluster makes is named after it and recorded in its state directory
// (/var/lib/podnet-cluster/NAME; not under /var/lib/podnet, which each node has its own of), so Down removes it all, also after the processes were killed:
//
//   - a network namespace podnet-NAME (the cluster's own) holding the bridge br0 at 10.250.0.1,
//     the nodes' underlay;
//   - for each node a network namespace podnet-NAME-node-I, its "host", joined to the bridge by
//     a veth (eth0, 10.250.0.(10+I)/24), and a mount namespace of its own (a file under the
//     state directory), in which the node's /etc/cni/net.d, /opt/cni/bin, /var/lib/kubelet,
//     /var/lib/containerd, /run/containerd, /var/lib/podnet, /run/podnet, /run/netns and
//     /var/log/pods are directories of the node's under the state directory: each node sees its
//     own, as on a machine of its own, so deploy/podnet.yaml runs unchanged;
//   - cgroups podnet-NAME-node-I in every cgroup v1 hierarchy, the node kubelet's cgroupRoot;
//   - the control plane (etcd, kube-apiserver on the node's address, kube-controller-manager,
//     kube-scheduler) in node-1's network namespace, as on a kubeadm control-plane node that also
//     runs pods: the API server reaches pods through that node's podnet0;
//   - a forwarder (`podnet cluster proxy`) from 127.0.0.1:PORT on the host to the API server, for
//     kubectl.
//
// The host's own interfaces, routes and sysctls are never touched. Directories made on the host
// as mount points are recorded and removed at Down when empty.
package kubecluster
