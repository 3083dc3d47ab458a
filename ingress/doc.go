// Package ingress is the Ingress controller of one node agent: it serves the
// networking.k8s.io/v1 Ingresses of IngressClass "podnet" on host sockets on
// the node's address, terminates HTTP and HTTPS there, and proxies each
// request to a ready endpoint of the Service its rule names, through the
// node's own data path (a Dialer the agent gives it).
//
// The node agent hands Update the cluster's Ingresses, Secrets and each
// Service's ready endpoints; Update builds an immutable routing table and
// swaps it in atomically, so requests in flight finish on the backend they
// were given and no connection is dropped. The package imports Kubernetes'
// API types and nothing of podnet nor of gVisor (a test forbids it); it does
// not publish status.loadBalancer nor events: the agent does, from the
// Problems Update returns.
//
// # Routing
//
// The rules follow the API reference and the Ingress concept page:
//
//   - Hosts: an exact host, or a wildcard "*.example.com", which covers
//     exactly one DNS label (a.example.com, not b.a.example.com nor
//     example.com); a request's Host is matched lower-cased, without its
//     port or a trailing dot. Rules without host match any host.
//   - Precedence: the exact host's paths, then the wildcard's, then those
//     of rules without host, each taken only when one of its paths matches;
//     then the default backend; then 404. (ingress-nginx keeps a host's
//     server block even when none of its paths match; here a request falls
//     through to the less specific rules, as "precedence" says.)
//   - Paths of one host, from all Ingresses: the longest matching path wins,
//     and of equal ones Exact before Prefix. Prefix matches element-wise
//     (/foo matches /foo, /foo/ and /foo/bar, not /foobar; a trailing slash
//     in the rule is ignored; / matches everything). ImplementationSpecific
//     is matched as Prefix; a path in it that looks like a regular
//     expression (ingress-nginx's use) is a Problem rather than a literal
//     prefix that would never match. Paths are case-sensitive and matched
//     against the request's path cleaned of "//", "." and ".." elements (as
//     nginx matches $uri), so "/public/../admin" cannot pass as "/public";
//     the backend gets the path as the client sent it.
//   - Several Ingresses merge on a host. Where two route the same host,
//     path and type (after dropping the trailing slash) to different
//     backends, the oldest Ingress wins (creation time, then namespace and
//     name) and the other gets a Problem; the same goes for defaultBackend,
//     of which the oldest is used.
//   - The class: the legacy annotation kubernetes.io/ingress.class decides
//     when present, then spec.ingressClassName, then Config.DefaultClass.
//
// A backend is a Service and a port by number or by name, resolved against
// the Service's ports at Update; a resource backend is a Problem. A Service,
// port or ready endpoint that is missing is not a Problem of the Ingress
// (the Service may come later): the route stays and answers 503 with a
// short plain-text reason. Invalid parts (bad host, bad path for its type,
// missing Secret) are Problems naming the field; only that part is left
// out.
//
// # Proxying
//
// Two servers share each listener. HTTP/1.1 requests without a body
// (GET, HEAD, DELETE, …; not upgrades, not Expect) are served by the
// package's own: it reads them with http.ReadRequest, sends them over a pool
// of kept-alive HTTP/1.1 connections per endpoint and writes the response,
// all on the connection's goroutine, with no per-request goroutine and few
// copies (fast.go, upstream.go; on two cores it serves about 1.1× nginx,
// where net/http's server with ReverseProxy served 0.95×). The first
// request it does not take (a body, an upgrade, HTTP/1.0 or HTTP/2, a
// header it would refuse or that does not fit its 4 KiB buffer) is handed
// with the rest of its connection, the bytes already read first, to
// net/http's server and httputil.ReverseProxy over an http.Transport, which
// also make the error answers (400, 431, 505). Both send the same headers
// and follow the rules below; a test drives each.
//
// Requests to a backend take its ready endpoints in turn (round-robin). When
// the connection to an endpoint cannot be made (refused, or no answer within
// UpstreamDialTimeout), nothing was sent, and a GET, HEAD, OPTIONS, TRACE,
// PUT or DELETE (RFC 9110's idempotent methods; a body is replayed intact,
// as none of it was read) is tried once more on the next endpoint. A POST
// or PATCH is not, although nothing was sent either: nginx would retry it
// on a failed connect; this controller stays on the safe side. A request is
// never retried once bytes reached a backend. Failures answer 502, or 504
// on a timeout.
//
// A kept-alive connection to a backend is reused only if it has nothing to
// read (the peer has not closed it); one that fails all the same before any
// byte of an answer came back is retried on a new connection when the
// method is idempotent, as http.Transport does. A client that leaves while
// its request waits on the backend (noticed once the request has taken
// half a second) ends the request and closes that backend connection.
//
// The backend sees the client's Host unchanged and X-Forwarded-For (the
// client's IP appended to what the client sent), X-Forwarded-Proto (http or
// https), X-Forwarded-Host (the original Host), X-Forwarded-Port (the port
// the client connected to) and X-Real-IP; forwarding headers the client
// sent otherwise are replaced. Hop-by-hop headers are dropped; upgrades
// (WebSocket) pass through; responses of unknown length and event streams
// are flushed as they arrive, others when the copy buffer fills.
//
// HTTPS: the certificate is chosen by SNI among the spec.tls entries (the
// host's own, then a wildcard entry, then the default certificate, a
// self-signed one made at New unless Options gives one). An entry without
// hosts covers its certificate's DNS names; one without secretName, like
// a missing or invalid Secret (the latter a Problem), leaves its hosts with
// the default certificate while the rules keep working. HTTP/2 and
// HTTP/1.1 are offered by ALPN; plain HTTP is HTTP/1.1 only (no h2c).
// Plain HTTP is served for every host: unlike ingress-nginx there is no
// redirect to HTTPS when an Ingress has TLS, to keep the lab predictable.
//
// # Bounds
//
// Everything a client can grow is bounded (Options has the limits and their
// defaults): header bytes (431), body bytes (413), the time to send the
// headers and to finish the TLS handshake (ReadHeaderTimeout: a client
// dribbling its headers a byte at a time is closed, without holding anything
// else back), idle keep-alive time, open connections per client IP and in
// all — a connection over either cap is closed at accept, before the server
// reads a byte of it. The wait for a backend's response headers is bounded
// too. Streaming responses and WebSockets are not: they may last.
//
// Every goroutine is owned by the Controller: Close stops the listeners,
// ends the requests in flight, closes every connection (WebSockets
// included) and waits for the goroutines serving them. The request path
// counts (Stats) and never logs.
package ingress
