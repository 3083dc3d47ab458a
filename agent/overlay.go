package agent

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/overlay"
	corev1 "k8s.io/api/core/v1"
)

// WireGuardPort is the UDP port of every node's WireGuard endpoint, on the node's address.
const WireGuardPort = 51820

// keyPath is where the node's WireGuard private key is kept (mode 0600).
func (a *Agent) keyPath() string { return filepath.Join(a.opts.StateDir, "wireguard.key") }

// saveKey replaces the key file atomically, mode 0600 (the format of overlay.LoadOrCreateKey).
func saveKey(path string, k overlay.Key) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(k.String()+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// publishKey tells the other nodes (through the Node object) this node's key and endpoint.
func (a *Agent) publishKey() error {
	return a.opts.Nodes.UpdateNodeAnnotations(a.opts.NodeName, map[string]string{
		cluster.AnnotationWireGuardKey:      a.overlay.PublicKey().String(),
		cluster.AnnotationWireGuardEndpoint: netip.AddrPortFrom(a.opts.NodeAddress, a.overlay.Port()).String(),
	})
}

// syncPeers makes every other node that has published its key a WireGuard peer whose allowed IPs
// are its pod CIDR, and routes those CIDRs from the stack into the overlay. Nodes that left are
// dropped, so their keys are no longer accepted.
func (a *Agent) syncPeers() {
	var peers []overlay.Peer
	var routes []netip.Prefix
	for _, n := range a.opts.Source.Nodes() {
		if n.Name == a.opts.NodeName {
			continue
		}
		p, err := peerOf(n)
		if err != nil {
			if n.Annotations[cluster.AnnotationWireGuardKey] != "" {
				a.log.Warn("ignoring node with a bad WireGuard annotation", "peer", n.Name, "err", err)
			}
			continue
		}
		peers = append(peers, p)
		routes = append(routes, p.AllowedIPs...)
	}
	if err := a.overlay.SetPeers(peers); err != nil {
		a.log.Error("set WireGuard peers", "err", err)
		return
	}
	a.stack.SetRemoteRoutes(routes, a.overlay)
}

func peerOf(n *corev1.Node) (overlay.Peer, error) {
	key, err := overlay.ParseKey(n.Annotations[cluster.AnnotationWireGuardKey])
	if err != nil {
		return overlay.Peer{}, fmt.Errorf("key: %w", err)
	}
	ep, err := netip.ParseAddrPort(n.Annotations[cluster.AnnotationWireGuardEndpoint])
	if err != nil {
		return overlay.Peer{}, fmt.Errorf("endpoint: %w", err)
	}
	cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
	if err != nil {
		return overlay.Peer{}, fmt.Errorf("pod CIDR: %w", err)
	}
	return overlay.Peer{PublicKey: key, Endpoint: ep, AllowedIPs: []netip.Prefix{cidr}}, nil
}

// RotateKey gives the node a new WireGuard key, saves it, and publishes it; the other nodes update
// their peer when they see the Node change. Connections between pods survive: WireGuard starts a
// new handshake with the new key and the packets in between are retransmitted.
func (a *Agent) RotateKey() (overlay.Key, error) {
	k, err := overlay.GenerateKey()
	if err != nil {
		return overlay.Key{}, err
	}
	if err := saveKey(a.keyPath(), k); err != nil {
		return overlay.Key{}, fmt.Errorf("save new key: %w", err)
	}
	if err := a.overlay.SetPrivateKey(k); err != nil {
		return overlay.Key{}, fmt.Errorf("set new key: %w", err)
	}
	if err := a.publishKey(); err != nil {
		return overlay.Key{}, err
	}
	a.log.Info("WireGuard key rotated", "publicKey", k.PublicKey().String())
	return k.PublicKey(), nil
}
