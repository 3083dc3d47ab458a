package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/podnet/podnet/capture"
	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/inspect"
	"github.com/podnet/podnet/lab"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newCaptureCommand(g *globals) *cobra.Command {
	var (
		ns, node, write, kubeconfig, socket, podIP string
		count                                      int
		overlay, local                             bool
	)
	cmd := &cobra.Command{
		Use:   "capture POD [-c COUNT] [-w FILE.pcap] [FILTER] | capture --node NODE --overlay [FILTER]",
		Short: "Capture the packets of a pod's eth0, or of a node's overlay, as pcap or one line each",
		Long: `Capture the frames of a pod's eth0, both ways, as the node's agent sees them, or with
--node NODE --overlay the inner packets of the node's WireGuard overlay (pod to pod across nodes,
before encryption and after decryption). GSO super-frames are written as the segments they stand
for, with their checksums complete, as they would be on a wire.

Without -w each packet is printed on one line, like tcpdump -n. With -w FILE the packets are
written in pcap format (-w - for standard output), which tshark, tcpdump and Wireshark read.
FILTER is a capture filter in tcpdump's language (a subset: host, src, dst, net, port, portrange,
tcp, udp, icmp, arp, ip, ip6, sctp, and, or, not, parentheses). The capture ends after COUNT
packets (-c), or at Ctrl-C.

It needs no privileges beyond the lab's (a rootless lab's user is enough). Against a Kubernetes
cluster (--kubeconfig), it runs "podnet capture --local" in the podnet pod of the pod's node, as
kubectl exec does.`,
		Example: `  podnet capture client -c 10
  podnet capture web-77cdf46795-pltwj -w web.pcap tcp port 80
  podnet capture client -w - | tshark -r -
  podnet capture --node node-a --overlay -c 20 host 10.244.1.2`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return fmt.Errorf("-c %d: want a number of packets, 0 for no limit", count)
			}
			var pod string
			if !overlay && !local {
				if len(args) == 0 {
					return errors.New("capture: name the pod (POD or NS/POD), or give --node NODE --overlay")
				}
				pod, args = args[0], args[1:]
			}
			if overlay && node == "" && !local {
				return errors.New("capture --overlay: name the node with --node")
			}
			filter := strings.Join(args, " ")
			if _, err := capture.ParseFilter(filter); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var out io.Writer = g.stdout
			if write != "" && write != "-" {
				f, err := os.Create(write)
				if err != nil {
					return err
				}
				defer f.Close()
				out = f
			}
			sink := &captureSink{out: out, pcap: write != "", count: count, summary: g.stdout}
			if pod != "" {
				if strings.Contains(pod, "/") {
					ns, pod, _ = strings.Cut(pod, "/")
				}
				if ns == "" {
					ns = "default"
				}
			}
			req := inspect.CaptureRequest{Node: node, PodIP: podIP, Overlay: overlay, Filter: filter}
			var err error
			switch {
			case local:
				err = sink.stream(ctx, inspect.NewClient(socket), req)
			case kubeconfig != "":
				err = kubeCapture(ctx, kubeconfig, ns, pod, req, sink)
			default:
				c := g.client()
				if pod != "" {
					if req.Node, req.PodIP, err = labPodPlace(c, ns, pod); err != nil {
						return err
					}
				}
				err = sink.stream(ctx, c.Inspect(), req)
			}
			if err == nil && write != "" && write != "-" {
				fmt.Fprintf(g.stderr, "%d packets written to %s\n", sink.n, write)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ns, "namespace", "n", "", "the pod's namespace (default: default)")
	f.IntVarP(&count, "count", "c", 0, "stop after this many packets (0: at Ctrl-C)")
	f.StringVarP(&write, "write", "w", "", "write the packets to this pcap file (-: standard output)")
	f.StringVar(&node, "node", "", "the node whose overlay to capture (with --overlay)")
	f.BoolVar(&overlay, "overlay", false, "capture the node's overlay: the inner packets between nodes")
	f.StringVar(&kubeconfig, "kubeconfig", "", "capture in this Kubernetes cluster instead of the lab")
	f.BoolVar(&local, "local", false, "ask the agent of this node, on its socket (what --kubeconfig runs in the podnet pod)")
	f.StringVar(&socket, "socket", agentInspectSocket, "the agent's socket, with --local")
	f.StringVar(&podIP, "pod-ip", "", "the pod's address, with --local")
	for _, h := range []string{"local", "socket", "pod-ip"} {
		f.MarkHidden(h)
	}
	return cmd
}

// labPodPlace returns the node and address of a lab pod.
func labPodPlace(c *lab.Client, ns, name string) (node, ip string, err error) {
	objs, err := c.Get(cluster.KindPod, ns, name)
	if err != nil {
		return "", "", err
	}
	if len(objs) != 1 {
		return "", "", fmt.Errorf("pod %s/%s not found", ns, name)
	}
	p, ok := objs[0].(*corev1.Pod)
	if !ok {
		return "", "", fmt.Errorf("pod %s/%s: not a pod", ns, name)
	}
	return podPlace(p)
}

// podPlace returns where a pod's eth0 is: its node and address.
func podPlace(p *corev1.Pod) (node, ip string, err error) {
	switch {
	case p.Spec.HostNetwork:
		return "", "", fmt.Errorf("pod %s/%s uses the node's network: it has no eth0 of podnet's to capture", p.Namespace, p.Name)
	case p.Spec.NodeName == "" || p.Status.PodIP == "":
		return "", "", fmt.Errorf("pod %s/%s has no address yet (phase %s)", p.Namespace, p.Name, p.Status.Phase)
	}
	return p.Spec.NodeName, p.Status.PodIP, nil
}

// kubeCapture captures in a Kubernetes cluster, through the podnet pod of the node.
func kubeCapture(ctx context.Context, kubeconfig, ns, pod string, req inspect.CaptureRequest, sink *captureSink) error {
	k, err := newKubeTarget(kubeconfig)
	if err != nil {
		return err
	}
	if pod != "" {
		p, err := k.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if req.Node, req.PodIP, err = podPlace(p); err != nil {
			return err
		}
	}
	pods, err := k.agentPods(ctx)
	if err != nil {
		return err
	}
	agentPod, ok := pods[req.Node]
	if !ok {
		return fmt.Errorf("node %s: no podnet pod runs there", req.Node)
	}
	args := []string{podnetBinary, "capture", "--local", "-w", "-"}
	if req.Overlay {
		args = append(args, "--overlay")
	} else {
		args = append(args, "--pod-ip", req.PodIP)
	}
	if req.Filter != "" {
		args = append(args, "--", req.Filter)
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	execErr := make(chan error, 1)
	go func() {
		err := k.exec(ctx, agentPod, args, pw)
		pw.CloseWithError(err)
		execErr <- err
	}()
	err = sink.copy(pr)
	cancel()
	pr.Close()
	if xerr := <-execErr; err == nil && xerr != nil {
		err = xerr
	}
	return err
}

// captureSink writes what a capture delivers: pcap records to out, or a line for each packet;
// it stops after count packets (0: never).
type captureSink struct {
	out     io.Writer
	summary io.Writer
	pcap    bool
	count   int
	n       int
}

// stream runs the capture req on c until ctx ends or count packets came.
func (s *captureSink) stream(ctx context.Context, c *inspect.Client, req inspect.CaptureRequest) error {
	body, err := c.Capture(ctx, req)
	if err != nil {
		return err
	}
	defer body.Close()
	err = s.copy(body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// copy reads a pcap stream from r and writes its packets.
func (s *captureSink) copy(r io.Reader) error {
	pr, err := capture.NewReader(r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
			return nil
		}
		return err
	}
	var pw *capture.Writer
	if s.pcap {
		if pw, err = capture.NewWriter(s.out, pr.LinkType(), 262144); err != nil {
			return err
		}
		if f, ok := s.out.(interface{ Sync() error }); ok && s.out != os.Stdout {
			defer f.Sync()
		}
	}
	for s.count == 0 || s.n < s.count {
		p, err := pr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		s.n++
		if pw != nil {
			if err := pw.WritePacket(p.Time, p.Data); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(s.summary, "%s %s\n", p.Time.Format("15:04:05.000000"), capture.Summary(pr.LinkType(), p.Data))
	}
	return nil
}
