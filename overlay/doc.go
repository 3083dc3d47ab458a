// Package overlay carries a node's pod traffic to other nodes over an
// encrypted WireGuard overlay, in userspace: a wireguard-go device whose TUN
// side is in memory (no kernel TUN device, no wireguard module, no
// privileges) and whose UDP side is one socket bound to the node's address.
//
// The data path (package stack) hands SendPackets the IPv4 packets for other
// nodes' pods, already cut to at most the MTU; they wait in a bounded queue
// (full: dropped and counted) from which wireguard-go reads batches of up to
// 128 packets, encrypts them for the peer whose AllowedIPs contain the
// destination and sends them. Decrypted packets are passed, in batches, to
// Options.Deliver. WireGuard authenticates every packet and drops those
// whose source is not in the sending peer's AllowedIPs, so what reaches
// Deliver comes from the pod CIDR of the node that sent it.
//
// Peers are configured declaratively (SetPeers): unchanged peers keep their
// sessions. The private key can be rotated (SetPrivateKey); peers need the
// new public key before traffic resumes.
//
// The package never imports Kubernetes packages or the rest of podnet: it is
// given keys, addresses and prefixes by the node agent. The packet path counts
// (Stats); it does not log. Close stops every goroutine the device started.
package overlay
