// Package gateway is the one entry point of a deployment whose services
// run in several replicas on one host, where only one process can own a
// published port: it forwards each HTTP request to a replica of the
// service that owns its path, and each admin gRPC call to a replica of
// admin. Replicas are found by resolving the service's name, which with
// Docker's DNS answers the address of every running replica.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/internal/web"
)

// Config names the upstream services. An empty one has no route: its
// paths answer 404.
type Config struct {
	Ingest      string // base URL of the ingest service: /v1/events, /v1/changes
	Queue       string // base URL of the queue service: /api/queues
	AddressSync string // base URL of the address-book sync service: /rest/addressbook
	Console     string // base URL of the web console: /console
	Admin       string // host:port of the admin gRPC API
	// DialTimeout bounds connecting to one replica before the next is
	// tried: a replica that just died may leave an address that answers
	// nothing rather than refusing.
	DialTimeout time.Duration
	// ResolveEvery is how long a name's addresses are reused before it is
	// resolved again.
	ResolveEvery time.Duration
}

// DefaultConfig is for docker-compose, where services are reached by
// their compose names.
func DefaultConfig() Config {
	return Config{
		Ingest:       "http://ingest:8080",
		Queue:        "http://queue:8080",
		AddressSync:  "http://addresssync:8080",
		Console:      "http://console:8080",
		Admin:        "admin:9090",
		DialTimeout:  time.Second,
		ResolveEvery: 2 * time.Second,
	}
}

// Gateway forwards requests; it keeps no state beyond connections and
// resolved addresses.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	resolver *resolver
	failures *prometheus.CounterVec
}

// New makes a gateway and registers its metrics with reg.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Gateway, error) {
	g := &Gateway{
		cfg:      cfg,
		log:      log,
		resolver: &resolver{every: cfg.ResolveEvery, lookupHost: net.DefaultResolver.LookupHost, cache: map[string]resolved{}},
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kurier_gateway_upstream_failures_total",
			Help: "Requests the gateway could not forward to any replica, by upstream service.",
		}, []string{"upstream"}),
	}
	if err := reg.Register(g.failures); err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}
	return g, nil
}

// Routes adds the HTTP APIs' paths to mux.
func (g *Gateway) Routes(mux *http.ServeMux) error {
	for _, r := range []struct {
		name, base string
		paths      []string
	}{
		{"ingest", g.cfg.Ingest, []string{"/v1/"}},
		{"queue", g.cfg.Queue, []string{"/api/queues", "/api/queues/"}},
		{"addresssync", g.cfg.AddressSync, []string{"/rest/addressbook/"}},
		{"console", g.cfg.Console, []string{"/console", "/console/"}},
	} {
		if r.base == "" {
			continue
		}
		target, err := url.Parse(r.base)
		if err != nil || target.Scheme == "" || target.Host == "" {
			return fmt.Errorf("gateway: %s upstream %q is not a base URL", r.name, r.base)
		}
		p := g.proxy(r.name, target, &http.Transport{
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}, func(w http.ResponseWriter, req *http.Request) {
			web.WriteError(w, req, &web.Error{Status: http.StatusBadGateway, Code: "unavailable",
				Message: "no replica of the " + r.name + " service answered", RetryAfter: 1})
		})
		for _, path := range r.paths {
			mux.Handle(path, p)
		}
	}
	return nil
}

// GRPC is the handler for the gateway's gRPC listener, which must speak
// unencrypted HTTP/2 (h2c).
func (g *Gateway) GRPC() http.Handler {
	if g.cfg.Admin == "" {
		return http.NotFoundHandler()
	}
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	return g.proxy("admin", &url.URL{Scheme: "http", Host: g.cfg.Admin}, &http.Transport{Protocols: &h2c}, func(w http.ResponseWriter, _ *http.Request) {
		// A gRPC client understands a status in the headers, not an HTTP
		// error: UNAVAILABLE tells it to retry.
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "14")
		w.Header().Set("Grpc-Message", "no replica of the admin service answered")
		w.WriteHeader(http.StatusOK)
	})
}

func (g *Gateway) proxy(name string, target *url.URL, tr *http.Transport, unavailable func(http.ResponseWriter, *http.Request)) http.Handler {
	tr.DialContext = (&net.Dialer{Timeout: g.cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// The service's name, not the replica's address the balancer dials.
			r.Out.Host = target.Host
			r.SetXForwarded()
		},
		Transport: &balancer{next: tr, resolver: g.resolver},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				return // the client went away
			}
			g.failures.WithLabelValues(name).Inc()
			g.log.WarnContext(r.Context(), "upstream failed", "upstream", name, "path", r.URL.Path, "err", err)
			unavailable(w, r)
		},
	}
}

// balancer sends each request to the next address of its host in turn,
// so that replicas share the load with keep-alive connections to each,
// and moves on to another address when one cannot be dialled: nothing of
// the request has been sent then, so it is safe to send it again.
type balancer struct {
	next     http.RoundTripper
	resolver *resolver
	turn     atomic.Uint64
}

func (b *balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	host, port, err := net.SplitHostPort(req.URL.Host)
	if err != nil {
		host, port = req.URL.Host, "80"
	}
	addrs, err := b.resolver.lookup(req.Context(), host)
	if err != nil {
		return nil, err
	}
	first := b.turn.Add(1)
	body := req.Body
	if body != nil {
		defer body.Close()
	}
	var errs []error
	for i := range addrs {
		out := req.Clone(req.Context())
		out.URL.Host = net.JoinHostPort(addrs[(first+uint64(i))%uint64(len(addrs))], port)
		if body != nil {
			// The transport closes the body it was given, also after a
			// failed dial, when the next address still needs it.
			out.Body = io.NopCloser(body)
		}
		resp, err := b.next.RoundTrip(out)
		if err == nil {
			return resp, nil
		}
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			return nil, err
		}
		errs = append(errs, err)
	}
	b.resolver.forget(host)
	return nil, errors.Join(errs...)
}

// resolver keeps a name's addresses for a short while, so that not every
// request waits for DNS, yet a replica that comes or goes is seen soon.
type resolver struct {
	every      time.Duration
	lookupHost func(ctx context.Context, host string) ([]string, error)
	mu         sync.Mutex
	cache      map[string]resolved // by host name
}

type resolved struct {
	addrs []string
	at    time.Time
}

func (r *resolver) lookup(ctx context.Context, host string) ([]string, error) {
	if net.ParseIP(host) != nil {
		return []string{host}, nil
	}
	r.mu.Lock()
	c, ok := r.cache[host]
	r.mu.Unlock()
	if ok && time.Since(c.at) < r.every {
		return c.addrs, nil
	}
	addrs, err := r.lookupHost(ctx, host)
	if err != nil {
		if ok {
			return c.addrs, nil // DNS hiccup: the addresses known are the best guess
		}
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	r.mu.Lock()
	r.cache[host] = resolved{addrs: addrs, at: time.Now()}
	r.mu.Unlock()
	return addrs, nil
}

// forget drops a name whose every address failed, so the next request
// resolves it again.
func (r *resolver) forget(host string) {
	r.mu.Lock()
	delete(r.cache, host)
	r.mu.Unlock()
}
