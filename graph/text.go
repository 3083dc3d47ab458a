package graph

import (
	"fmt"
	"strings"
)

// The texts of the picture, shared by the DOT and SVG renderers.

// addressTooltip is the hover text of an address: its kind and address,
// and a group's pods.
func addressTooltip(a Address) string {
	s := a.Kind.String() + " " + a.Address
	if len(a.Pods) > 0 {
		s += ": " + strings.Join(a.Pods, ", ")
	}
	return s
}

// summary counts what the picture shows, for its title.
func (g *Graph) summary() string {
	pods := 0
	for _, n := range g.Nodes {
		pods += len(n.Pods)
	}
	flows, denied := 0, 0
	for _, e := range g.Edges {
		if e.Kind == EdgeFlow {
			flows += e.Count
			if !e.Allowed {
				denied += e.Count
			}
		}
	}
	return fmt.Sprintf("%s, %s, %s, %s, %s (%d denied)",
		plural(len(g.Nodes), "node"), plural(pods, "pod"), plural(len(g.Services), "Service"),
		plural(len(g.Policies), "NetworkPolicy"), plural(flows, "flow"), denied)
}

// plural returns "1 noun" or "n nouns".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, noun[:len(noun)-1])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// nodeLabel is a node box's title: its name and pod CIDR.
func nodeLabel(n Node) string {
	s := "node " + n.Name
	if n.PodCIDR != "" {
		s += "\n" + n.PodCIDR
	}
	if n.Unlisted {
		s += "\n(node not listed)"
	}
	return s
}

// podLabel is a pod's text: namespace/name, IP and the selecting policies.
func podLabel(p Pod) string {
	return strings.Join(podLines(p), "\n")
}

// podLines are the lines of podLabel.
func podLines(p Pod) []string {
	ip := p.IP
	if ip == "" {
		ip = "(no IP)"
	}
	lines := []string{p.Namespace + "/" + p.Name, ip}
	for _, pol := range p.Policies {
		lines = append(lines, "policy: "+shortPolicy(pol, p.Namespace))
	}
	return lines
}

// serviceLabel is a Service's text: namespace/name, type and ClusterIP,
// ports.
func serviceLabel(s Service) string {
	return strings.Join(serviceLines(s), "\n")
}

// serviceLines are the lines of serviceLabel; ports wrap three to a line.
func serviceLines(s Service) []string {
	lines := []string{s.Namespace + "/" + s.Name, s.Type + " " + s.ClusterIP}
	if s.ClusterIP == "" {
		lines[1] = s.Type
	}
	const perLine = 3
	for i := 0; i < len(s.Ports); i += perLine {
		lines = append(lines, strings.Join(s.Ports[i:min(i+perLine, len(s.Ports))], ", "))
	}
	if !s.HasSelector && s.Type != "ExternalName" {
		lines = append(lines, "(no selector)")
	}
	return lines
}
