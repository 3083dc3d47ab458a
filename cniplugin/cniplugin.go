// Package cniplugin is podnet-cni, podnet's CNI plugin (spec 1.1.0): the container runtime's
// side of the attach protocol. containerd runs it for every pod sandbox; it hands the pod's
// network namespace to the node agent over the agent's unix socket (package attach) and prints
// what the agent gave the pod as a CNI result. It does no networking of its own: the agent makes
// the interface, address and routes, and owns the data path.
//
// The verbs:
//
//   - ADD asks the agent to attach CNI_NETNS under the attachment ID CNI_CONTAINERID and prints a
//     result (interface, address, gateway route, DNS) in the configuration's cniVersion. With the
//     agent down it fails with code 11 (try again later): containerd retries the sandbox.
//   - DEL asks the agent to detach; it is idempotent. With the agent down the DEL is queued on
//     disk (Config.StateDir) and the plugin succeeds; the next call that reaches the agent
//     finishes every queued DEL first, so no address, interface or flow state is leaked (the
//     pattern of Cilium's CNI).
//   - CHECK asks the agent to verify the attachment: the interface in the namespace, up, with
//     the pod's address.
//   - GC detaches every attachment not in cni.dev/valid-attachments.
//   - STATUS fails with code 50 (plugin not available) while the agent is not ready, so
//     containerd reports NetworkReady=false and schedules no pods on the node.
//   - VERSION lists the spec versions it speaks.
//
// Errors are the spec's JSON on stdout, with the spec's codes; the process exits with that code
// where it fits in an exit status (50 for STATUS), else 1.
package cniplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/podnet/podnet/attach"
)

// Defaults of Config.
const (
	DefaultSocket   = "/run/podnet/cni.sock"
	DefaultStateDir = "/var/lib/podnet/cni"
)

// Config is the plugin's network configuration (stdin).
type Config struct {
	types.PluginConf
	// Socket is the node agent's unix socket. Empty means DefaultSocket.
	Socket string `json:"socket,omitempty"`
	// StateDir keeps the DELs the agent could not take. Empty means DefaultStateDir.
	StateDir string `json:"stateDir,omitempty"`
	// Timeout bounds each call to the agent, as a Go duration. Empty means 60s.
	Timeout string `json:"timeout,omitempty"`
	// RuntimeConfig carries the capabilities the runtime fills in: portMappings (hostPorts),
	// when the configuration list declares {"capabilities": {"portMappings": true}}.
	RuntimeConfig struct {
		PortMappings []PortMapping `json:"portMappings,omitempty"`
	} `json:"runtimeConfig,omitzero"`
}

// PortMapping is one entry of the portMappings capability, as containerd writes it.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// portMappings validates the capability's entries and converts them for the agent.
func (c *Config) portMappings() ([]attach.PortMapping, error) {
	var out []attach.PortMapping
	for i, m := range c.RuntimeConfig.PortMappings {
		f := fmt.Sprintf("runtimeConfig.portMappings[%d]", i)
		if m.HostPort < 1 || m.HostPort > 65535 {
			return nil, fmt.Errorf("%s.hostPort: %d is not a port (1-65535)", f, m.HostPort)
		}
		if m.ContainerPort < 1 || m.ContainerPort > 65535 {
			return nil, fmt.Errorf("%s.containerPort: %d is not a port (1-65535)", f, m.ContainerPort)
		}
		proto := strings.ToLower(m.Protocol)
		switch proto {
		case "":
			proto = "tcp"
		case "tcp", "udp":
		default:
			return nil, fmt.Errorf("%s.protocol: %q: podnet serves hostPorts for tcp and udp", f, m.Protocol)
		}
		out = append(out, attach.PortMapping{HostPort: uint16(m.HostPort), ContainerPort: uint16(m.ContainerPort), Protocol: proto, HostIP: m.HostIP})
	}
	return out, nil
}

// Versions are the CNI spec versions the plugin speaks.
func Versions() version.PluginInfo {
	return version.PluginSupports("0.3.1", "0.4.0", "1.0.0", "1.1.0")
}

// About is printed when the plugin is run without CNI_COMMAND.
const About = "podnet-cni: podnet's CNI plugin; it hands each pod's network namespace to the podnet node agent"

// Funcs returns the plugin's verbs for skel.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus}
}

// Main runs the plugin: it prints an error as the spec's JSON and returns the exit status.
func Main() int {
	e := skel.PluginMainFuncsWithError(Funcs(), Versions(), About)
	if e == nil {
		return 0
	}
	if err := e.Print(); err != nil {
		fmt.Fprintln(os.Stderr, "podnet-cni: write the error:", err)
	}
	if e.Code > 0 && e.Code < 256 {
		return int(e.Code)
	}
	return 1
}

// podArgs are the Kubernetes names containerd passes in CNI_ARGS.
type podArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE types.UnmarshallableString //nolint:revive // the names are the protocol's
	K8S_POD_NAME      types.UnmarshallableString
}

// load decodes the configuration and makes the agent's client.
func load(stdin []byte) (*Config, *attach.Client, error) {
	conf := &Config{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, nil, types.NewError(types.ErrDecodingFailure, "podnet-cni: decode the network configuration", err.Error())
	}
	if conf.Socket == "" {
		conf.Socket = DefaultSocket
	}
	if conf.StateDir == "" {
		conf.StateDir = DefaultStateDir
	}
	timeout := 60 * time.Second
	if conf.Timeout != "" {
		d, err := time.ParseDuration(conf.Timeout)
		if err != nil || d <= 0 {
			return nil, nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("podnet-cni: network configuration %q: timeout: %q is not a positive duration", conf.Name, conf.Timeout), "")
		}
		timeout = d
	}
	return conf, attach.NewClient(conf.Socket, timeout), nil
}

// agentError turns an error of the agent's client into the spec's error: an agent that cannot be
// reached is a temporary condition.
func agentError(verb string, err error) error {
	if errors.Is(err, attach.ErrUnavailable) {
		return types.NewError(types.ErrTryAgainLater, "podnet-cni "+verb+": the podnet node agent is not running", err.Error())
	}
	return types.NewError(types.ErrInternal, "podnet-cni "+verb+": "+err.Error(), "")
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, client, err := load(args.StdinData)
	if err != nil {
		return err
	}
	var pa podArgs
	if err := types.LoadArgs(args.Args, &pa); err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "podnet-cni: CNI_ARGS", err.Error())
	}
	mappings, err := conf.portMappings()
	if err != nil {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("podnet-cni: network configuration %q", conf.Name), err.Error())
	}
	ctx := context.Background()
	finishQueuedDels(ctx, conf, client)
	if _, err := os.Stat(filepath.Join(queuedDir(conf), args.ContainerID)); err == nil {
		// A DEL of this ID waits for the agent: attaching first would let it undo this ADD.
		return types.NewError(types.ErrTryAgainLater, "podnet-cni ADD: a DEL of this container waits for the podnet node agent", args.ContainerID)
	}
	res, err := client.Attach(ctx, attach.Request{
		ID:           args.ContainerID,
		Namespace:    string(pa.K8S_POD_NAMESPACE),
		Name:         string(pa.K8S_POD_NAME),
		NetNS:        args.Netns,
		IfName:       args.IfName,
		PortMappings: mappings,
	})
	if err != nil {
		return agentError("ADD", err)
	}
	return types.PrintResult(cniResult(res, args.Netns), conf.CNIVersion)
}

// cniResult is the CNI form of what the agent gave the pod.
func cniResult(res attach.Result, netns string) *types100.Result {
	zero := 0
	mac := res.MAC
	if _, err := net.ParseMAC(mac); err != nil {
		mac = ""
	}
	gw := net.IP(res.Gateway.AsSlice())
	return &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{{Name: res.Interface, Mac: mac, Mtu: res.MTU, Sandbox: netns}},
		IPs: []*types100.IPConfig{{
			Interface: &zero,
			Address:   net.IPNet{IP: res.IP.AsSlice(), Mask: net.CIDRMask(res.IP.BitLen(), res.IP.BitLen())},
			Gateway:   gw,
		}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw}},
		DNS:    types.DNS{Nameservers: res.DNS.Nameservers, Search: res.DNS.Search, Options: res.DNS.Options},
	}
}

func cmdDel(args *skel.CmdArgs) error {
	conf, client, err := load(args.StdinData)
	if err != nil {
		return err
	}
	ctx := context.Background()
	err = client.Detach(ctx, args.ContainerID)
	if errors.Is(err, attach.ErrUnavailable) {
		// The agent is down: keep the DEL and succeed, so the runtime can go on; the next call
		// that reaches the agent finishes it.
		if qerr := queueDel(conf, args.ContainerID); qerr != nil {
			return types.NewError(types.ErrTryAgainLater, "podnet-cni DEL: the podnet node agent is not running, and the DEL could not be queued", qerr.Error())
		}
		return nil
	}
	if err != nil {
		return agentError("DEL", err)
	}
	finishQueuedDels(ctx, conf, client)
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, client, err := load(args.StdinData)
	if err != nil {
		return err
	}
	ctx := context.Background()
	finishQueuedDels(ctx, conf, client)
	if err := client.Check(ctx, args.ContainerID, args.Netns); err != nil {
		return agentError("CHECK", err)
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	conf, client, err := load(args.StdinData)
	if err != nil {
		return err
	}
	ctx := context.Background()
	finishQueuedDels(ctx, conf, client)
	keep := make([]string, 0, len(conf.ValidAttachments))
	for _, a := range conf.ValidAttachments {
		keep = append(keep, a.ContainerID)
	}
	if err := client.GC(ctx, keep); err != nil {
		return agentError("GC", err)
	}
	return nil
}

func cmdStatus(args *skel.CmdArgs) error {
	conf, client, err := load(args.StdinData)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := client.Ready(ctx); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "podnet-cni STATUS: the podnet node agent is not ready", err.Error())
	}
	finishQueuedDels(ctx, conf, client)
	return nil
}

// queuedDir holds one file per queued DEL, named by its attachment ID.
func queuedDir(conf *Config) string { return filepath.Join(conf.StateDir, "queued-del") }

func queueDel(conf *Config, id string) error {
	dir := queuedDir(conf)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// The ID is a container ID (skel checks it: letters, digits, '.', '_', '-'): a safe name.
	tmp := filepath.Join(dir, "."+id+".tmp")
	if err := os.WriteFile(tmp, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, id))
}

// QueuedDels returns the IDs whose DEL waits for the agent, for tests and tools.
func QueuedDels(stateDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(stateDir, "queued-del"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var ids []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			ids = append(ids, e.Name())
		}
	}
	return ids, err
}

// finishQueuedDels sends every queued DEL to the agent; each one the agent took is forgotten.
// Each entry is claimed first (renamed to a name of this process's), so two plugin runs never
// send the same queued DEL, and a failure puts it back for the next call.
func finishQueuedDels(ctx context.Context, conf *Config, client *attach.Client) {
	ids, _ := QueuedDels(conf.StateDir)
	dir := queuedDir(conf)
	for _, id := range ids {
		path := filepath.Join(dir, id)
		claim := filepath.Join(dir, fmt.Sprintf(".claim-%d-%s", os.Getpid(), id))
		if os.Rename(path, claim) != nil {
			continue // another run has it
		}
		if err := client.Detach(ctx, id); err != nil {
			os.Rename(claim, path)
			return
		}
		os.Remove(claim)
	}
}

// ResultAddress returns the pod address of a CNI result printed by ADD, for tests and tools.
func ResultAddress(out []byte) (netip.Addr, error) {
	var r types100.Result
	if err := json.Unmarshal(out, &r); err != nil {
		return netip.Addr{}, err
	}
	if len(r.IPs) == 0 {
		return netip.Addr{}, errors.New("no ips in the result")
	}
	a, ok := netip.AddrFromSlice(r.IPs[0].Address.IP)
	if !ok {
		return netip.Addr{}, fmt.Errorf("bad address %v", r.IPs[0].Address)
	}
	return a.Unmap(), nil
}
