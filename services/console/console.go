// Package console is Kurier's web console: pages rendered on the server
// from the admin gRPC API, its only backend, so that it can do nothing an
// admin token cannot do through the API itself. A user signs in with the
// admin token; the session cookie carries it sealed (AES-GCM), so any
// replica with the same key serves any session and none keeps state.
//
//	console.go   Config, the Console and its routes
//	session.go   signing in and out, the sealed session cookie, CSRF tokens
//	render.go    templates, static files, answering API errors as pages
//	orgs.go      the organisations
//
// Pages work without JavaScript; the live tail of the delivery log alone
// needs it.
package console

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// Config holds the console's settings.
type Config struct {
	// Admin is the admin API's address, host:port.
	Admin string
	// AdminTLS, when set, is how the admin API is reached over TLS.
	AdminTLS *tls.Config
	// Key seals the session cookies. Replicas that share it share
	// sessions; without one a random key is made, and sessions end with
	// the process.
	Key string
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration
	// Secure marks the cookie Secure even on plain HTTP, for a console
	// behind a proxy that ends TLS; under TLS it always is.
	Secure bool
}

// DefaultConfig is the console's settings unless told otherwise.
func DefaultConfig() Config {
	return Config{SessionTTL: 8 * time.Hour}
}

// Prefix is where the console's pages are, on whatever listener serves them.
const Prefix = "/console"

// Console serves the pages.
type Console struct {
	cfg   Config
	api   adminv1.AdminServiceClient
	cc    *grpc.ClientConn
	seal  *sealer
	pages map[string]*template.Template
	log   *slog.Logger
	// stopping is closed by Run when the process stops.
	stopping chan struct{}
}

// New connects to the admin API (without I/O: an unreachable API shows on
// the first page) and parses the templates.
func New(cfg Config, log *slog.Logger) (*Console, error) {
	if cfg.Admin == "" {
		return nil, errors.New("console: the admin API's address is required (KURIER_CONSOLE_ADMIN)")
	}
	if cfg.SessionTTL <= 0 {
		return nil, fmt.Errorf("console: session lifetime %v must be positive", cfg.SessionTTL)
	}
	creds := insecure.NewCredentials()
	if cfg.AdminTLS != nil {
		creds = credentials.NewTLS(cfg.AdminTLS)
	}
	cc, err := grpc.NewClient(cfg.Admin, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("console: admin API %q: %w", cfg.Admin, err)
	}
	seal, err := newSealer(cfg.Key)
	if err != nil {
		cc.Close()
		return nil, err
	}
	pages, err := parsePages()
	if err != nil {
		cc.Close()
		return nil, err
	}
	return &Console{cfg: cfg, api: adminv1.NewAdminServiceClient(cc), cc: cc, seal: seal, pages: pages, log: log, stopping: make(chan struct{})}, nil
}

// Close ends the connection to the admin API.
func (c *Console) Close() error { return c.cc.Close() }

// Run serves until ctx ends, then ends the live tails: a stop waits for
// the requests in flight, and a tail would hold it for the whole grace.
func (c *Console) Run(ctx context.Context) error {
	<-ctx.Done()
	close(c.stopping)
	return nil
}

// Routes adds the console's pages to mux, under Prefix.
func (c *Console) Routes(mux *http.ServeMux) {
	mux.Handle("GET "+Prefix+"/static/", c.static())
	mux.HandleFunc("GET "+Prefix+"/login", c.loginForm)
	mux.HandleFunc("POST "+Prefix+"/login", c.login)
	mux.HandleFunc("POST "+Prefix+"/logout", c.form(c.logout))
	mux.HandleFunc("GET "+Prefix+"/{$}", c.page(c.orgs))
	mux.HandleFunc("GET "+Prefix+"/orgs/{org}", c.page(c.org))
	mux.HandleFunc("POST "+Prefix+"/orgs/{org}/keys", c.form(c.createKey))
	mux.HandleFunc("POST "+Prefix+"/orgs/{org}/keys/{key}/revoke", c.form(c.revokeKey))
	mux.HandleFunc("GET "+Prefix+"/orgs/{org}/subscriptions/new", c.page(c.newSub))
	mux.HandleFunc("POST "+Prefix+"/orgs/{org}/subscriptions", c.form(c.createSub))
	mux.HandleFunc("GET "+Prefix+"/subscriptions/{id}", c.page(c.showSub))
	mux.HandleFunc("POST "+Prefix+"/subscriptions/{id}", c.form(c.updateSub))
	mux.HandleFunc("POST "+Prefix+"/subscriptions/{id}/active", c.form(c.setSubActive))
	mux.HandleFunc("POST "+Prefix+"/subscriptions/{id}/rotate", c.form(c.rotateSecret))
	mux.HandleFunc("POST "+Prefix+"/subscriptions/{id}/preview", c.form(c.previewSub))
	mux.HandleFunc("POST "+Prefix+"/subscriptions/{id}/test", c.form(c.testSub))
	mux.HandleFunc("POST "+Prefix+"/subscriptions/{id}/delete", c.form(c.deleteSub))
	mux.HandleFunc("GET "+Prefix+"/orgs/{org}/deliveries", c.page(c.deliveries))
	mux.HandleFunc("GET "+Prefix+"/orgs/{org}/deliveries/tail", c.tail)
	mux.HandleFunc("GET "+Prefix+"/orgs/{org}/deadletters", c.page(c.deadLetters))
	mux.HandleFunc("POST "+Prefix+"/orgs/{org}/deadletters/redeliver", c.form(c.redeliver))
	mux.HandleFunc("GET "+Prefix+"/orgs/{org}/plots/deliveries.svg", c.page(c.plotDeliveries))
	mux.HandleFunc("GET "+Prefix+"/orgs/{org}/plots/latency.svg", c.page(c.plotLatency))
	mux.HandleFunc("GET "+Prefix, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
	})
}

// path joins parts under Prefix, each escaped as one path segment.
func path(parts ...string) string {
	var b strings.Builder
	b.WriteString(Prefix)
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(urlSegment(p))
	}
	return b.String()
}
