package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"kurier.dev/services/addresssync"
	"kurier.dev/services/admin"
	"kurier.dev/services/bus"
	"kurier.dev/services/console"
	"kurier.dev/services/dispatcher"
	"kurier.dev/services/ingest"
	"kurier.dev/services/internal/config"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/natsd"
	"kurier.dev/services/internal/ratelimit"
	"kurier.dev/services/internal/telemetry"
	"kurier.dev/services/internal/web"
	"kurier.dev/services/openapi"
	"kurier.dev/services/queue"
)

// role is the command a process was started as.
type role string

func (r role) runs(service string) bool { return r == "all" || string(r) == service }

type settings struct {
	httpListen, grpcListen  string
	natsURL                 string
	natsAuth                jet.Auth
	dataDir, natsListen     string
	adminToken              string
	grpcTLSCert, grpcTLSKey string
	secretGrace             time.Duration
	logLevel                string
	grace                   time.Duration
	headerTimeout           time.Duration
	limits                  bus.Limits
	rate                    ratelimit.Rate
	ingest                  ingest.Config
	dispatcher              dispatcher.Config
	queue                   queue.Config
	addresssync             addresssync.Config
	console                 console.Config
	consoleCA               string
}

func bind(r role, set *config.Set, s *settings) {
	s.limits = bus.DefaultLimits()
	s.ingest = ingest.DefaultConfig()
	s.dispatcher = dispatcher.DefaultConfig()
	s.dispatcher.UserAgent = "kurier/" + version
	s.queue = queue.DefaultConfig()
	s.addresssync = addresssync.DefaultConfig()
	set.String(&s.httpListen, "http-listen", "KURIER_HTTP_LISTEN", ":8080", "HTTP address of the APIs, health and metrics")
	set.String(&s.logLevel, "log-level", "KURIER_LOG_LEVEL", "info", "debug, info, warn or error")
	set.Duration(&s.grace, "shutdown-grace", "KURIER_SHUTDOWN_GRACE", 30*time.Second, "how long a stop waits for work in flight")
	set.Duration(&s.headerTimeout, "http-header-timeout", "KURIER_HTTP_HEADER_TIMEOUT", web.DefaultHeaderTimeout, "how long a client may take to send a request's headers before its connection is closed")
	if r.runs("console") {
		s.console = console.DefaultConfig()
		// `kurier all` serves its console from its own admin API.
		if r == "console" {
			set.String(&s.console.Admin, "console-admin", "KURIER_CONSOLE_ADMIN", "127.0.0.1:9090", "host:port of the admin API, the console's only backend")
			set.String(&s.consoleCA, "console-admin-ca", "KURIER_CONSOLE_ADMIN_CA", "", "CA certificates (PEM) to check the admin API's certificate against; turns TLS on")
		}
		set.Secret(&s.console.Key, "console-key", "KURIER_CONSOLE_KEY", "key that seals the console's session cookies; replicas that share it share sessions (default: a random one, and sessions end with the process)")
		set.Duration(&s.console.SessionTTL, "console-session-ttl", "KURIER_CONSOLE_SESSION_TTL", s.console.SessionTTL, "how long a sign-in to the console lasts")
		set.Bool(&s.console.Secure, "console-secure", "KURIER_CONSOLE_SECURE", false, "mark the console's session cookie Secure on plain HTTP, behind a proxy that ends TLS")
	}
	if r == "console" {
		return // its only backend is the admin API: no NATS, no streams
	}
	if r == "all" {
		set.String(&s.dataDir, "data-dir", "KURIER_DATA_DIR", "./kurier-data", "where the embedded JetStream server keeps its data")
		set.String(&s.natsListen, "nats-listen", "KURIER_NATS_LISTEN", "127.0.0.1:4222", `client address of the embedded server, for the nats CLI; "off" for none`)
	} else {
		set.String(&s.natsURL, "nats-url", "KURIER_NATS_URL", nats.DefaultURL, "NATS server URLs, comma-separated")
		set.String(&s.natsAuth.Creds, "nats-creds", "KURIER_NATS_CREDS", "", "NATS credentials file (user JWT and NKey seed)")
		set.String(&s.natsAuth.User, "nats-user", "KURIER_NATS_USER", "", "NATS user name")
		set.Secret(&s.natsAuth.Password, "nats-password", "KURIER_NATS_PASSWORD", "NATS password")
		set.Secret(&s.natsAuth.Token, "nats-token", "KURIER_NATS_TOKEN", "NATS authentication token")
		set.String(&s.natsAuth.TLSCert, "nats-tls-cert", "KURIER_NATS_TLS_CERT", "", "client certificate (PEM) for NATS servers that verify clients")
		set.String(&s.natsAuth.TLSKey, "nats-tls-key", "KURIER_NATS_TLS_KEY", "", "key of the client certificate (PEM)")
		set.String(&s.natsAuth.TLSCA, "nats-tls-ca", "KURIER_NATS_TLS_CA", "", "CA certificates (PEM) to verify the NATS servers with; turns TLS on")
	}
	set.Count(&s.limits.Replicas, "replicas", "KURIER_REPLICAS", s.limits.Replicas, 1, "replicas of every stream and bucket (1, 3 or 5)")
	set.Duration(&s.limits.EventsMaxAge, "events-max-age", "KURIER_EVENTS_MAX_AGE", s.limits.EventsMaxAge, "how long events are kept")
	set.Duration(&s.limits.DedupeWindow, "dedupe-window", "KURIER_DEDUPE_WINDOW", s.limits.DedupeWindow, "how long a resent event id is recognised as a duplicate")
	set.Duration(&s.limits.LogMaxAge, "log-max-age", "KURIER_LOG_MAX_AGE", s.limits.LogMaxAge, "how long delivery attempts are kept")
	// Every role lays down every stream, so every role knows their sizes.
	mb := &s.limits.MaxBytes
	set.Bytes(&mb.Events, "events-max-bytes", "KURIER_EVENTS_MAX_BYTES", mb.Events, "bytes EVENTS holds; full, ingest refuses new events with 503 until old ones age out")
	set.Bytes(&mb.Deliveries, "deliveries-max-bytes", "KURIER_DELIVERIES_MAX_BYTES", mb.Deliveries, "bytes of payload delivery tasks and retries (DELIVERIES); near full, no new task is stored and events wait in EVENTS")
	set.Bytes(&mb.Notify, "notify-max-bytes", "KURIER_NOTIFY_MAX_BYTES", mb.Notify, "bytes of ping and digest timers (NOTIFY)")
	set.Bytes(&mb.DeliveryLog, "log-max-bytes", "KURIER_LOG_MAX_BYTES", mb.DeliveryLog, "bytes of delivery attempts kept (DELIVERY_LOG); the oldest go first")
	set.Bytes(&mb.DeadLetters, "dead-letters-max-bytes", "KURIER_DEAD_LETTERS_MAX_BYTES", mb.DeadLetters, "bytes of dead letters kept (DEAD_LETTERS); the oldest go first")
	set.Bytes(&mb.Queues, "queues-max-bytes", "KURIER_QUEUES_MAX_BYTES", mb.Queues, "bytes all pull queues hold together (QUEUES); full, posts are refused with 503")
	set.Bytes(&mb.SyncJournal, "sync-journal-max-bytes", "KURIER_SYNC_JOURNAL_MAX_BYTES", mb.SyncJournal, "bytes of address-book changes under way (SYNC_JOURNAL); full, syncs are refused")
	set.Bytes(&mb.Stats, "stats-max-bytes", "KURIER_STATS_MAX_BYTES", mb.Stats, "bytes of hourly delivery statistics (STATS), for the last day and week; the oldest go first")
	set.Bytes(&mb.StatsMinutes, "stats-minutes-max-bytes", "KURIER_STATS_MINUTES_MAX_BYTES", mb.StatsMinutes, "bytes of delivery statistics by minute (STATS_MINUTES), for the last hour; the oldest go first")
	if r.runs("admin") {
		set.String(&s.grpcListen, "grpc-listen", "KURIER_GRPC_LISTEN", ":9090", "gRPC address of the admin API")
		set.Secret(&s.adminToken, "admin-token", "KURIER_ADMIN_TOKEN", "bearer token of the admin API")
		set.Duration(&s.secretGrace, "secret-rotation-grace", "KURIER_SECRET_ROTATION_GRACE", 24*time.Hour, "how long a rotated-out signing secret still signs")
		set.String(&s.grpcTLSCert, "grpc-tls-cert", "KURIER_GRPC_TLS_CERT", "", "certificate (PEM) of the admin API; with it, the API speaks TLS only")
		set.String(&s.grpcTLSKey, "grpc-tls-key", "KURIER_GRPC_TLS_KEY", "", "key of the admin API's certificate (PEM)")
	}
	// Ingest sets a ping timer when a read of the change feed finds changes no ping tells of.
	if r.runs("dispatcher") || r.runs("ingest") {
		set.Duration(&s.dispatcher.NotifyDelay, "notify-delay", "KURIER_NOTIFY_DELAY", s.dispatcher.NotifyDelay, "delay of a ping after a change, and the least time between two pings")
	}
	if r.runs("dispatcher") {
		set.Count(&s.dispatcher.MaxUnacked, "notify-max-unacked", "KURIER_NOTIFY_MAX_UNACKED", s.dispatcher.MaxUnacked, 1, "unacknowledged pings after which a subscription gets none until its system reads the change feed")
		set.Duration(&s.dispatcher.PingTimeout, "ping-timeout", "KURIER_PING_TIMEOUT", s.dispatcher.PingTimeout, "how long a ping may take")
		set.Duration(&s.dispatcher.DisableAfter, "disable-after", "KURIER_DISABLE_AFTER", s.dispatcher.DisableAfter, "switch a payload subscription off once every delivery has failed for this long")
		set.Duration(&s.dispatcher.StatsInterval, "stats-interval", "KURIER_STATS_INTERVAL", s.dispatcher.StatsInterval, "how often delivery statistics are written, and so how late they may be")
		set.Bool(&s.dispatcher.AllowPrivate, "allow-private-targets", "KURIER_ALLOW_PRIVATE_TARGETS", false, "let webhooks reach loopback and private addresses (local receivers)")
	}
	if r.runs("ingest") {
		set.Count(&s.ingest.MaxData, "max-event-data", "KURIER_MAX_EVENT_DATA", s.ingest.MaxData, 1, "bytes of data one event may carry")
	}
	// Every role lays down the QUEUES stream, so every role knows its limit.
	set.Count(&s.limits.QueueMaxMsgs, "queue-max-messages", "KURIER_QUEUE_MAX_MESSAGES", s.limits.QueueMaxMsgs, 1, "messages one pull queue holds; a full queue refuses more with 429")
	if r.runs("queue") {
		set.String(&s.queue.PublicURL, "public-url", "KURIER_PUBLIC_URL", "", "base URL at which senders reach the queue API, for notificationURL (default http://<HTTP listen address>)")
		set.Count(&s.queue.MaxPerOrg, "queue-max-per-org", "KURIER_QUEUE_MAX_PER_ORG", s.queue.MaxPerOrg, 1, "queues one org may have (at most 10000)")
		set.Duration(&s.queue.MaxTimeout, "queue-max-timeout", "KURIER_QUEUE_MAX_TIMEOUT", s.queue.MaxTimeout, "the longest a peek may wait for a message")
	}
	// The admin service changes address books by hand, under the same lock as a sync.
	if r.runs("addresssync") || r.runs("admin") {
		set.Duration(&s.addresssync.Lock.Wait, "sync-lock-wait", "KURIER_SYNC_LOCK_WAIT", s.addresssync.Lock.Wait, "how long a change of an address book waits for a sync of the same org (423 after that)")
		set.Duration(&s.addresssync.Lock.TTL, "sync-lock-ttl", "KURIER_SYNC_LOCK_TTL", s.addresssync.Lock.TTL, "how long the lock of a replica that died outlives it, holding up syncs of its org")
	}
	if r.runs("ingest") || r.runs("queue") || r.runs("addresssync") {
		set.Count(&s.rate.PerSecond, "rate-limit", "KURIER_RATE_LIMIT", ratelimit.Default.PerSecond, 0, "requests per second one API key, or one queue's senders, may make to this process's APIs; 0 for no limit")
		set.Count(&s.rate.Burst, "rate-burst", "KURIER_RATE_BURST", ratelimit.Default.Burst, 1, "requests one API key may make at once before the rate limit applies")
	}
	if r.runs("addresssync") {
		set.Count(&s.addresssync.MaxBody, "sync-max-body", "KURIER_SYNC_MAX_BODY", s.addresssync.MaxBody, 1, "bytes of an address-book sync request")
		set.Duration(&s.addresssync.RecoveryInterval, "sync-recovery-interval", "KURIER_SYNC_RECOVERY_INTERVAL", s.addresssync.RecoveryInterval, "how often each replica finishes or undoes the syncs of replicas that died, once their locks have expired")
	}
}

// check refuses settings that each parse but together, or with the
// server's own limits, cannot work: JetStream refuses such a stream, and
// ensure would retry it for ever instead of ending the start.
func (s *settings) check(r role) error {
	switch strings.ToLower(s.logLevel) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("KURIER_LOG_LEVEL (--log-level) %q: must be debug, info, warn or error", s.logLevel)
	}
	if r == "console" {
		return nil
	}
	if s.limits.DedupeWindow > s.limits.EventsMaxAge {
		return fmt.Errorf("KURIER_DEDUPE_WINDOW (--dedupe-window) %v: must not exceed KURIER_EVENTS_MAX_AGE (--events-max-age) %v, how long events are kept", s.limits.DedupeWindow, s.limits.EventsMaxAge)
	}
	// EVENTS stores no message larger than MaxMsgBytes.
	if r.runs("ingest") {
		if most := s.ingest.MaxStructured(); most > int(s.limits.MaxMsgBytes) {
			return fmt.Errorf("KURIER_MAX_EVENT_DATA (--max-event-data) %d: an event carrying that much is larger than the %d bytes EVENTS stores of one message", s.ingest.MaxData, s.limits.MaxMsgBytes)
		}
	}
	return nil
}

// serve runs the services of a role until ctx ends, then stops them in
// order: stop taking requests, finish those in flight, flush to NATS, stop
// the embedded server.
func serve(ctx context.Context, r role, args []string) error {
	var s settings
	set := config.New("kurier " + string(r))
	bind(r, set, &s)
	if stop, err := parse(set, args); stop {
		return err
	}
	if err := s.check(r); err != nil {
		return err
	}
	if r == "admin" && s.adminToken == "" {
		return errors.New("kurier admin needs an admin token: set KURIER_ADMIN_TOKEN or --admin-token")
	}
	grpcTLS, err := serverTLS(s.grpcTLSCert, s.grpcTLSKey)
	if err != nil {
		return err
	}
	s.ingest.RateLimit, s.queue.RateLimit, s.addresssync.RateLimit = s.rate, s.rate, s.rate
	s.ingest.NotifyDelay = s.dispatcher.NotifyDelay
	log := telemetry.Logger(os.Stderr, s.logLevel).With("role", string(r))
	slog.SetDefault(log)
	if r == "console" {
		return serveConsole(ctx, s, log)
	}
	stopTracing, err := telemetry.Tracing(ctx, string(r))
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: it flushes the spans of all the work before it.
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn("tracing: spans not flushed", "err", err)
		}
	}()
	if telemetry.TracingOn(os.Getenv) {
		log.Info("tracing on: exporting spans over OTLP")
	}

	url, opts := s.natsURL, []nats.Option(nil)
	if r == "all" {
		srv, stop, err := startEmbedded(s, log)
		if err != nil {
			return err
		}
		defer stop()
		url, opts = "", []nats.Option{nats.InProcessServer(srv)}
	} else if opts, err = s.natsAuth.Options(); err != nil {
		return err
	}
	conn, err := jet.Connect(url, "kurier-"+string(r), log, opts...)
	if err != nil {
		return err
	}
	defer conn.NC.Close()
	if err := ensure(ctx, conn, s.limits, log); err != nil {
		return err
	}

	reg := telemetry.Registry()
	mux := web.NewMux()
	ready := func(ctx context.Context) error { return bus.Check(ctx, conn.NC, conn.JS, s.limits) }
	web.Health(mux, ready)
	mux.Handle("GET /metrics", telemetry.Handler(reg))
	openapi.Routes(mux)
	// Listening first lets the queue service name its own address.
	lis, err := net.Listen("tcp", s.httpListen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}

	var runs []func(context.Context) error
	var adminAddr net.Addr
	if r.runs("ingest") {
		svc, err := ingest.New(ctx, s.ingest, conn, log.With("service", "ingest"), reg)
		if err != nil {
			return err
		}
		svc.Routes(mux)
		runs = append(runs, svc.Run)
	}
	if r.runs("dispatcher") {
		svc, err := dispatcher.New(ctx, s.dispatcher, conn, log.With("service", "dispatcher"), reg)
		if err != nil {
			return err
		}
		runs = append(runs, svc.Run)
	}
	if r.runs("admin") {
		if s.adminToken == "" && r == "all" {
			if s.adminToken, err = adminToken(s.dataDir); err != nil {
				return err
			}
		}
		svc, err := admin.New(ctx, admin.Config{Token: s.adminToken, Limits: s.limits, SecretGrace: s.secretGrace, NotifyDelay: s.dispatcher.NotifyDelay, Book: s.addresssync.Lock, TLS: grpcTLS}, conn, log.With("service", "admin"), reg)
		if err != nil {
			return err
		}
		lis, err := net.Listen("tcp", s.grpcListen)
		if err != nil {
			return fmt.Errorf("grpc listen: %w", err)
		}
		log.Info("grpc listening", "addr", lis.Addr().String(), "tls", grpcTLS != nil)
		adminAddr = lis.Addr()
		runs = append(runs, func(ctx context.Context) error { return svc.Serve(ctx, lis, s.grace) })
	}
	if r.runs("queue") {
		if s.queue.PublicURL == "" {
			s.queue.PublicURL = publicURL(lis.Addr())
		}
		svc, err := queue.New(ctx, s.queue, conn, log.With("service", "queue"), reg)
		if err != nil {
			return err
		}
		svc.Routes(mux)
		runs = append(runs, svc.Run)
	}
	if r.runs("addresssync") {
		svc, err := addresssync.New(ctx, s.addresssync, conn, log.With("service", "addresssync"), reg)
		if err != nil {
			return err
		}
		svc.Routes(mux)
		runs = append(runs, svc.Run)
	}
	if r == "all" {
		s.console.Admin = localAddr(adminAddr)
		if grpcTLS != nil {
			s.console.AdminTLS = trustOwn(grpcTLS)
		}
		c, err := newConsole(r, s.console, log)
		if err != nil {
			return err
		}
		defer c.Close()
		// The console's pages are no API: not in the document, so not
		// among the patterns checked against it.
		c.Routes(mux.ServeMux)
		runs = append(runs, c.Run)
	}
	if err := openapi.Check(mux.Patterns(), func(tag string) bool { return tag == openapi.Process || r.runs(tag) }); err != nil {
		return err
	}
	log.Info("http listening", "addr", lis.Addr().String())
	runs = append(runs, func(ctx context.Context) error {
		return web.Serve(ctx, lis, web.Routes(mux.ServeMux), s.grace, log, web.HeaderTimeout(s.headerTimeout))
	})

	err = runAll(ctx, runs)
	// Everything taken in has been answered: flush what is still buffered.
	if derr := drain(conn.NC, s.grace); derr != nil {
		log.Warn("nats drain", "err", derr)
	}
	log.Info("stopped")
	return err
}

// serveConsole runs `kurier console`: the web console alone, before an
// admin API elsewhere. It needs no NATS, and no admin token of its own:
// users sign in with theirs.
func serveConsole(ctx context.Context, s settings, log *slog.Logger) error {
	if s.consoleCA != "" {
		cfg, err := config.TrustCA(s.consoleCA)
		if err != nil {
			return fmt.Errorf("KURIER_CONSOLE_ADMIN_CA %s: %w", s.consoleCA, err)
		}
		s.console.AdminTLS = cfg
	}
	c, err := newConsole("console", s.console, log)
	if err != nil {
		return err
	}
	defer c.Close()
	reg := telemetry.Registry()
	mux := http.NewServeMux()
	// Ready once listening: an admin API that does not answer is told on
	// the console's pages, and a console that is not ready would not be
	// sent the users who are to read that.
	web.Health(mux, func(context.Context) error { return nil })
	mux.Handle("GET /metrics", telemetry.Handler(reg))
	c.Routes(mux)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, console.Prefix+"/", http.StatusSeeOther)
	})
	lis, err := net.Listen("tcp", s.httpListen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	log.Info("http listening", "addr", lis.Addr().String(), "admin", s.console.Admin, "admin_tls", s.console.AdminTLS != nil)
	err = runAll(ctx, []func(context.Context) error{c.Run, func(ctx context.Context) error {
		return web.Serve(ctx, lis, web.Routes(mux), s.grace, log, web.HeaderTimeout(s.headerTimeout))
	}})
	log.Info("stopped")
	return err
}

// newConsole makes the console of a role, telling when its sessions will
// not outlive the process.
func newConsole(r role, cfg console.Config, log *slog.Logger) (*console.Console, error) {
	if cfg.Key == "" {
		// Replicas of `kurier console` behind one address need the same
		// key, or a user is signed out whenever a request reaches another.
		level := slog.LevelInfo
		if r == "console" {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "no KURIER_CONSOLE_KEY: console sessions are sealed with a random key, end with the process and are not shared with other replicas")
	}
	return console.New(cfg, log.With("service", "console"))
}

// trustOwn is how the console of `kurier all` reaches the admin API of the
// same process when it speaks TLS: trusting exactly the certificate the
// API serves, which need not name the loopback address dialled nor be
// signed by a CA the process knows.
func trustOwn(server *tls.Config) *tls.Config {
	own := server.Certificates[0].Certificate[0]
	return &tls.Config{
		// The usual checks of chain and name give way to this one.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, own) {
				return errors.New("the admin API's certificate is not the one this process serves")
			}
			return nil
		},
	}
}

// localAddr is a listener's address as others on this machine dial it.
func localAddr(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); err != nil || ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// publicURL is the URL of a listener as others on this machine reach it.
func publicURL(addr net.Addr) string { return "http://" + localAddr(addr) }

// runAll runs every function until ctx ends or one fails, which stops the rest.
func runAll(ctx context.Context, runs []func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(runs))
	for i, run := range runs {
		wg.Go(func() {
			err := run(ctx)
			// A stop while a service is still starting is a stop, not a failure.
			if err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
				errs[i] = err
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startEmbedded starts the embedded server on the data dir, which it holds
// until stop.
func startEmbedded(s settings, log *slog.Logger) (srv *server.Server, stop func(), err error) {
	if err := os.MkdirAll(s.dataDir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("data dir: %w", err)
	}
	unlock, err := natsd.LockDir(s.dataDir)
	if err != nil {
		return nil, nil, err
	}
	srv, err = natsd.Start(natsd.Options{DataDir: filepath.Join(s.dataDir, "jetstream"), Listen: s.natsListen})
	if err != nil {
		unlock()
		return nil, nil, err
	}
	if srv.Addr() != nil {
		log.Info("nats listening", "addr", srv.Addr().String(), "data_dir", s.dataDir)
	}
	return srv, func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		unlock()
	}, nil
}

// serverTLS loads the admin API's certificate, if it has one.
func serverTLS(cert, key string) (*tls.Config, error) {
	switch {
	case cert == "" && key == "":
		return nil, nil
	case cert == "" || key == "":
		return nil, errors.New("admin TLS: set both KURIER_GRPC_TLS_CERT and KURIER_GRPC_TLS_KEY, or neither")
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("admin TLS (KURIER_GRPC_TLS_CERT, KURIER_GRPC_TLS_KEY): %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}, nil
}

// ensure lays down the streams and buckets, waiting for a cluster that is
// still forming its JetStream meta group.
func ensure(ctx context.Context, conn *jet.Conn, l bus.Limits, log *slog.Logger) error {
	return jet.Retry(ctx, log, "streams", func(ctx context.Context) error { return bus.Ensure(ctx, conn.JS, l) })
}

func drain(nc *nats.Conn, grace time.Duration) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		return err
	}
	select {
	case <-closed:
		return nil
	case <-time.After(grace):
		return errors.New("timed out")
	}
}

// adminToken reads the token `kurier all` keeps in its data dir, making
// and printing it on first start.
func adminToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "admin-token")
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	fmt.Printf("Generated the admin token (kept in %s, shown only now):\n\n    %s\n\n", path, tok)
	return tok, nil
}
