// Package addresssync is the address-book sync service: the FE2 API
// (POST /rest/addressbook/sync, DELETE /rest/addressbook/external/persons/
// {externalDbId}) through which a directory pushes its whole person list,
// reconciled with the org's book, every changed person announced as an
// event.
package addresssync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"kurier.dev/services/internal/book"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/ratelimit"
	"kurier.dev/services/internal/telemetry"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
)

// Config holds the service's settings.
type Config struct {
	// Lock says how long a sync waits for another of the same org (423
	// after that) and how long a dead replica's lock outlives it.
	Lock book.Locking
	// RecoveryInterval is how often the service looks for syncs that
	// replicas which died left unfinished: it finishes or undoes each one
	// whose lock has expired.
	RecoveryInterval time.Duration
	// MaxBody bounds a sync request's body.
	MaxBody int
	// RateLimit bounds the requests of each access key; the zero Rate is
	// no limit.
	RateLimit ratelimit.Rate
}

// DefaultConfig is what Kurier runs with unless told otherwise.
func DefaultConfig() Config {
	return Config{Lock: book.DefaultLocking(), RecoveryInterval: 5 * time.Second, MaxBody: 64 << 20}
}

// Service is the address-book sync service.
type Service struct {
	cfg     Config
	tenants *tenant.Store
	book    *book.Store
	limit   *ratelimit.Limiter
	log     *slog.Logger
	m       metrics
}

type metrics struct {
	requests *prometheus.CounterVec
	persons  *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New makes the service; the streams and buckets must exist (bus.Ensure).
func New(ctx context.Context, cfg Config, conn *jet.Conn, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if cfg.RecoveryInterval <= 0 {
		return nil, fmt.Errorf("addresssync: recovery interval %v: must be positive", cfg.RecoveryInterval)
	}
	limit, err := ratelimit.New(cfg.RateLimit)
	if err != nil {
		return nil, fmt.Errorf("addresssync: %w", err)
	}
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		return nil, err
	}
	b, err := book.Open(ctx, conn, cfg.Lock, log)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:     cfg,
		tenants: tenants,
		book:    b,
		limit:   limit,
		log:     log,
		m: metrics{
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "kurier_addresssync_requests_total", Help: "Address-book sync API requests by call (sync, delete) and status code.",
			}, []string{"call", "status"}),
			persons: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "kurier_addresssync_persons_total", Help: "Persons of accepted syncs by what happened to them.",
			}, []string{"result"}),
			latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name: "kurier_addresssync_request_seconds", Help: "Address-book sync API request duration by call.",
				Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
			}, []string{"call"}),
		},
	}
	for _, c := range []prometheus.Collector{s.m.requests, s.m.persons, s.m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("addresssync metrics: %w", err)
		}
	}
	return s, nil
}

// Routes adds the FE2 API to mux.
func (s *Service) Routes(mux web.Router) {
	mux.HandleFunc("POST /rest/addressbook/sync", s.observe("sync", s.sync))
	mux.HandleFunc("DELETE /rest/addressbook/external/persons/{externalDbId}", s.observe("delete", s.delete))
}

// Run finishes or undoes the syncs that replicas which died left
// unfinished, as it starts and every RecoveryInterval, until ctx ends.
// Every replica does, each under the org's lock, so that a replica that
// dies mid-sync while the others run leaves the book as it was or as the
// sync makes it, once its lock has expired.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.RecoveryInterval)
	defer t.Stop()
	for {
		if err := s.book.RecoverAll(ctx); err != nil && ctx.Err() == nil {
			// The next round tries again, and each org's next sync
			// finishes its own before it begins.
			s.log.Warn("unfinished syncs not all recovered", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Counts answer an accepted sync: what happened to how many persons.
type Counts struct {
	Created       int `json:"created"`
	Updated       int `json:"updated"`
	Deleted       int `json:"deleted"`
	MarkedDeleted int `json:"markedDeleted"`
	Unchanged     int `json:"unchanged"`
}

func (s *Service) observe(call string, serve func(*http.Request) (Counts, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx, span := telemetry.Tracer("kurier.dev/services/addresssync").Start(telemetry.FromHTTP(r.Context(), r.Header),
			"addressbook "+call, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		r = r.WithContext(ctx)
		c, err := serve(r)
		status := http.StatusOK
		if err != nil {
			var we *web.Error
			status = http.StatusInternalServerError
			if errors.As(err, &we) {
				status = we.Status
			}
			if we == nil || error(we) != err {
				// It wraps a failure of its own: the answer does not tell it.
				s.log.WarnContext(r.Context(), "address book "+call+" failed", "status", status, "err", err)
			}
			web.WriteError(w, r, err)
		} else {
			web.WriteJSON(w, r, http.StatusOK, c)
			for result, n := range map[string]int{"created": c.Created, "updated": c.Updated, "deleted": c.Deleted,
				"marked_deleted": c.MarkedDeleted, "unchanged": c.Unchanged} {
				s.m.persons.WithLabelValues(result).Add(float64(n))
			}
		}
		if span.IsRecording() {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if status >= 500 {
				span.SetStatus(codes.Error, err.Error())
			}
		}
		s.m.requests.WithLabelValues(call, strconv.Itoa(status)).Inc()
		s.m.latency.WithLabelValues(call).Observe(time.Since(start).Seconds())
	}
}

// errBearer answers a key sent as "Authorization: Bearer <key>".
var errBearer = &web.Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Field: "Authorization",
	Message: `send the access key as the whole Authorization header, without "Bearer ", as FE2's API takes it`}

// org checks the key, sent as the whole Authorization header as FE2 does,
// and answers the org it belongs to if that has the sync switched on.
func (s *Service) org(ctx context.Context, r *http.Request) (tenant.Org, error) {
	auth := r.Header.Get("Authorization")
	// A key sent the way most APIs want it, Kurier's ingest API among
	// them, gets told the way FE2's wants it. The hint rests on the
	// header's form alone, so it tells nothing of the key.
	if scheme, _, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return tenant.Org{}, errBearer
	}
	key, err := s.tenants.Authenticate(ctx, auth, tenant.ScopeAddressbook)
	if errors.Is(err, tenant.ErrForbidden) {
		// To FE2's clients a key that is not the org's access key is a
		// wrong key, whatever else it may do.
		err = tenant.ErrUnauthenticated
	}
	if err := web.KeyError(err, "Authorization"); err != nil {
		return tenant.Org{}, err
	}
	if err := web.Limit(s.limit, key.ID, "Authorization"); err != nil {
		return tenant.Org{}, err
	}
	return s.current(ctx, key.Org)
}

var errSyncDisabled = &web.Error{Status: http.StatusServiceUnavailable, Code: "sync_disabled",
	Message: "the organisation has the address-book sync switched off"}

// current reads the org as it is now, answering 503 if it has the sync
// switched off. A request reads it again once it holds the book: it may
// have waited for the lock while the org's settings changed, and deleting
// an org switches its sync off before it takes the book to delete it.
func (s *Service) current(ctx context.Context, id string) (tenant.Org, error) {
	o, err := s.tenants.Org(ctx, id)
	if errors.Is(err, tenant.ErrNotFound) {
		return o, errSyncDisabled
	}
	if err != nil {
		return o, unavailable(err)
	}
	if !o.AddressbookSync {
		return o, errSyncDisabled
	}
	return o, nil
}

// lock takes the org's book, turning a wait that ran out into 423.
func (s *Service) lock(ctx context.Context, org string) (*book.Writer, error) {
	w, err := s.book.Lock(ctx, org)
	if errors.Is(err, book.ErrLocked) {
		return nil, web.Errf(http.StatusLocked, "locked", "",
			"another sync of the organisation is running and did not end within %v; nothing was changed, retry later", s.cfg.Lock.Wait)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return w, nil
}

// unavailable answers a failure of the store: nothing was changed, retry.
func unavailable(err error) error {
	return fmt.Errorf("%w (%w)", &web.Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Message: "the address book cannot be reached right now; nothing was changed, retry later", RetryAfter: 1}, err)
}

func (s *Service) delete(r *http.Request) (Counts, error) {
	ctx := r.Context()
	o, err := s.org(ctx, r)
	if err != nil {
		return Counts{}, err
	}
	notAllowed := web.Errf(http.StatusForbidden, "deletion_not_allowed", "", "the organisation does not allow deleting persons")
	if !o.AllowPersonDeletion {
		return Counts{}, notAllowed
	}
	id := r.PathValue("externalDbId")
	notFound := web.Errf(http.StatusNotFound, "not_found", "externalDbId", "no synced person has this externalDbId")
	synced := func(b *book.Book) bool { e, ok := b.Persons[id]; return ok && e.Person.Origin == book.OriginSync }
	// An id no sync can have brought in, or one the org has no synced
	// person with, is answered before the lock is taken: a request for
	// nothing neither waits for nor holds up the org's syncs.
	if !utf8.ValidString(id) || utf8.RuneCountInString(id) > book.MaxIDLen {
		return Counts{}, notFound
	}
	if b, err := s.book.Read(ctx, o.ID, id); err != nil {
		return Counts{}, unavailable(err)
	} else if !synced(b) {
		return Counts{}, notFound
	}
	w, err := s.lock(ctx, o.ID)
	if err != nil {
		return Counts{}, err
	}
	defer w.Release()
	if o, err = s.current(ctx, o.ID); err != nil {
		return Counts{}, err
	}
	if !o.AllowPersonDeletion {
		return Counts{}, notAllowed
	}
	b, err := w.Read(ctx, id) // again: a sync may have changed it meanwhile
	if err != nil {
		return Counts{}, unavailable(err)
	}
	if !synced(b) {
		return Counts{}, notFound
	}
	if err := w.Commit(ctx, []book.Change{b.Change(id, nil)}); err != nil {
		return Counts{}, unavailable(err)
	}
	return Counts{Deleted: 1}, nil
}
