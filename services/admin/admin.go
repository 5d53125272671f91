// Package admin is the admin service: organisations and keys over gRPC
// (kurier.admin.v1.AdminService), with server reflection and grpc health.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/book"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/schema"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/tenant"
)

// Config holds the admin service's settings.
type Config struct {
	Token  string // the bearer token every call must carry
	Limits bus.Limits
	// SecretGrace is how long a rotated-out signing secret still signs.
	SecretGrace time.Duration
	// NotifyDelay is the dispatcher's: how long after a change its ping
	// comes, for one owed when a ping subscription is switched on.
	NotifyDelay time.Duration
	// Book says how persons changed by hand wait for a sync of their org.
	Book book.Locking
	// TLS, when set, is what the gRPC server speaks: plaintext is refused.
	TLS *tls.Config
}

// Service is the admin service.
type Service struct {
	adminv1.UnimplementedAdminServiceServer
	cfg       Config
	conn      *jet.Conn
	tenants   *tenant.Store
	subs      *subs.Store
	book      *book.Store
	queues    *queues.Store
	schemas   *schema.Store
	notify    jetstream.Stream
	log       *slog.Logger
	tokenHash [sha256.Size]byte
	calls     *prometheus.CounterVec
	now       func() time.Time

	// deliveries holds payload subscriptions' tasks until they end; the
	// delivery log, every attempt.
	deliveries  jetstream.Stream
	deliveryLog jetstream.Stream
	// stopping closes when Serve begins to stop, ending tails that would
	// otherwise hold a graceful stop open.
	stopping chan struct{}

	// Listings come from memory, each bucket followed by one watch.
	tenantList *tenant.Lister
	subList    *subs.Lister
	schemaList *schema.Lister
}

// New makes the service; the streams and buckets must exist (bus.Ensure).
func New(ctx context.Context, cfg Config, conn *jet.Conn, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if cfg.SecretGrace <= 0 {
		cfg.SecretGrace = 24 * time.Hour
	}
	if cfg.NotifyDelay <= 0 {
		cfg.NotifyDelay = time.Minute
	}
	if len(cfg.Token) < 16 {
		return nil, errors.New("admin: an admin token of at least 16 characters is required (KURIER_ADMIN_TOKEN)")
	}
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		return nil, err
	}
	subStore, err := subs.Open(ctx, conn.JS)
	if err != nil {
		return nil, err
	}
	notify, err := bus.Stream(ctx, conn.JS, bus.StreamNotify)
	if err != nil {
		return nil, err
	}
	deliveries, err := bus.Stream(ctx, conn.JS, bus.StreamDeliveries)
	if err != nil {
		return nil, err
	}
	deliveryLog, err := bus.Stream(ctx, conn.JS, bus.StreamDeliveryLog)
	if err != nil {
		return nil, err
	}
	if cfg.Book == (book.Locking{}) {
		cfg.Book = book.DefaultLocking()
	}
	persons, err := book.Open(ctx, conn, cfg.Book, log)
	if err != nil {
		return nil, err
	}
	queueStore, err := queues.Open(ctx, conn)
	if err != nil {
		return nil, err
	}
	schemaStore, err := schema.Open(ctx, conn.JS)
	if err != nil {
		return nil, err
	}
	// The watches behind the listings last as long as the process: a stop
	// still lets calls in flight list.
	tenantList, err := tenants.Lister(context.WithoutCancel(ctx), log)
	if err != nil {
		return nil, err
	}
	subList, err := subStore.Lister(context.WithoutCancel(ctx), log)
	if err != nil {
		return nil, err
	}
	schemaList, err := schemaStore.Lister(context.WithoutCancel(ctx), log)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:         cfg,
		conn:        conn,
		tenants:     tenants,
		subs:        subStore,
		book:        persons,
		queues:      queueStore,
		schemas:     schemaStore,
		notify:      notify,
		deliveries:  deliveries,
		deliveryLog: deliveryLog,
		log:         log,
		tokenHash:   sha256.Sum256([]byte(cfg.Token)),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kurier_admin_calls_total", Help: "Admin RPCs by method and status code.",
		}, []string{"method", "code"}),
		now:        time.Now,
		stopping:   make(chan struct{}),
		tenantList: tenantList,
		subList:    subList,
		schemaList: schemaList,
	}
	if err := reg.Register(s.calls); err != nil {
		return nil, fmt.Errorf("admin metrics: %w", err)
	}
	return s, nil
}

// Serve answers gRPC on lis until ctx ends, then lets calls in flight
// finish for up to grace.
func (s *Service) Serve(ctx context.Context, lis net.Listener, grace time.Duration) error {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.requestIDUnary, s.observe, s.authUnary),
		grpc.ChainStreamInterceptor(s.requestIDStream, s.authStream),
	}
	if s.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.cfg.TLS)))
	}
	srv := grpc.NewServer(opts...)
	adminv1.RegisterAdminServiceServer(srv, s)
	hs := health.NewServer()
	hs.SetServingStatus(adminv1.AdminService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)

	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err := <-done:
		return fmt.Errorf("grpc server: %w", err)
	case <-ctx.Done():
	}
	hs.Shutdown()
	close(s.stopping)
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		srv.Stop()
	}
	return nil
}

// open lists the services anyone may call: health probes and reflection
// carry nothing secret, and probes and grpcurl must work without a token.
func open(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

func (s *Service) authorize(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok {
			h := sha256.Sum256([]byte(tok))
			if subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) == 1 {
				return nil
			}
		}
	}
	return status.Error(codes.Unauthenticated, "missing or wrong admin token (metadata authorization: Bearer <token>)")
}

func (s *Service) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if !open(info.FullMethod) {
		if err := s.authorize(ctx); err != nil {
			return nil, err
		}
	}
	return h(ctx, req)
}

func (s *Service) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !open(info.FullMethod) {
		if err := s.authorize(ss.Context()); err != nil {
			return err
		}
	}
	return h(srv, ss)
}

// observe counts calls and turns unexpected errors into Internal without
// their text, which may name internals; the text goes to the log instead.
func (s *Service) observe(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err != nil {
		if _, ok := status.FromError(err); !ok {
			s.log.ErrorContext(ctx, "admin call failed", "method", info.FullMethod, "err", err)
			err = status.Error(codes.Internal, "internal error")
		}
	}
	method := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	s.calls.WithLabelValues(method, status.Code(err).String()).Inc()
	return resp, err
}
