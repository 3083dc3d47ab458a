package ingress

import (
	"path"
	"strings"
)

// Route says where a request goes.
type Route struct {
	Ingress string // namespace/name of the Ingress that routes it
	Field   string // what matched: "spec.rules[0].http.paths[1]" or "spec.defaultBackend"
	Backend string // "namespace/service:port", the port as the Ingress names it
}

// Route returns where a request for host (a Host header: any case, with or
// without port) and path (the URL's path) goes now, or false when it gets
// 404. It is the lookup every request makes.
func (c *Controller) Route(host, path string) (Route, bool) {
	r := c.table.Load().route(normalizeHost(host), cleanPath(path))
	if r == nil {
		return Route{}, false
	}
	return Route{Ingress: r.ingress, Field: r.field, Backend: r.backend.name}, true
}

// route finds the route of a normalized host and a clean path: the host's
// own rules, then the wildcard rules of its parent domain, then the rules
// without host, each only if it has a matching path; then the default
// backend.
func (t *table) route(host, path string) *route {
	if hr := t.exact[host]; hr != nil {
		if r := hr.match(path); r != nil {
			return r
		}
	}
	if i := strings.IndexByte(host, '.'); i > 0 && len(t.wildcard) > 0 {
		if hr := t.wildcard[host[i+1:]]; hr != nil {
			if r := hr.match(path); r != nil {
				return r
			}
		}
	}
	if t.any != nil {
		if r := t.any.match(path); r != nil {
			return r
		}
	}
	return t.def
}

// match finds the longest path matching p; an Exact path, when it matches,
// is always at least as long as any Prefix that does (it is p itself), and
// wins a tie. A Prefix matches element-wise: it is p, or p's path up to one
// of its "/".
func (hr *hostRoutes) match(p string) *route {
	if r := hr.exact[p]; r != nil {
		return r
	}
	if len(hr.prefix) == 0 {
		return nil
	}
	q := p
	if len(q) > 1 && q[len(q)-1] == '/' {
		q = q[:len(q)-1]
	}
	for {
		if r := hr.prefix[q]; r != nil {
			return r
		}
		i := strings.LastIndexByte(q, '/')
		if i <= 0 {
			break
		}
		q = q[:i]
	}
	return hr.prefix["/"]
}

// normalizeHost lower-cases a Host header or SNI name and drops its port and
// a trailing dot. It allocates only for upper-case letters.
func normalizeHost(h string) string {
	if strings.HasPrefix(h, "[") { // an IPv6 literal
		if i := strings.IndexByte(h, ']'); i > 0 {
			return strings.ToLower(h[:i+1])
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// cleanPath makes a request path what rules are matched against: rooted,
// without "//", "." and ".." elements (as nginx's $uri, so that "/a/../b"
// cannot pass as "/a"), keeping a trailing "/". It allocates only for a
// path that is not clean already.
func cleanPath(p string) string {
	if p == "" || p == "*" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	c := path.Clean(p)
	if c == p || c == "/" || p[len(p)-1] != '/' {
		return c
	}
	if len(p) == len(c)+1 && strings.HasPrefix(p, c) {
		return p // c plus the trailing slash, as given
	}
	return c + "/"
}
