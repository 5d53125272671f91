// Package queue is the queue service: pull queues for receivers that
// cannot take inbound HTTP, with the API of ComNorm's notification service
// path for path, so that a ComNorm sender or receiver works unchanged.
// Messages live in the QUEUES stream; a peek that waits is woken by the
// stream's republished headers, whichever replica took the message.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/ratelimit"
	"kurier.dev/services/internal/tenant"
)

// Config holds the queue service's settings.
type Config struct {
	// PublicURL is where senders reach this service: notificationURL is
	// <PublicURL>/api/queues/<queueId>/messages.
	PublicURL string
	// MaxPerOrg is how many queues an org may have.
	MaxPerOrg int
	// MaxTimeout is the longest a peek may wait for a message.
	MaxTimeout time.Duration
	// RateLimit bounds the requests of each partner key, and the posts to
	// each queue; the zero Rate is no limit.
	RateLimit ratelimit.Rate
}

// DefaultConfig is what Kurier runs with unless told otherwise; the public
// URL has no default here, as it depends on where the service listens.
func DefaultConfig() Config {
	return Config{MaxPerOrg: 1000, MaxTimeout: time.Minute}
}

const (
	// maxPerOrg bounds the queues per org setting: an org's queue ids are
	// kept in one KV entry, which must stay well under NATS's 1 MiB.
	maxPerOrg = 10000
	// maxCount is the most messages one peek answers.
	maxCount = 100
	// recheck is how often a waiting peek looks at its queue without being
	// woken, in case a wake-up was lost: core NATS delivers at most once,
	// and nothing while reconnecting.
	recheck = 5 * time.Second
)

// Service is the queue service.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	tenants *tenant.Store
	queues  *queues.Store
	limit   *ratelimit.Limiter
	log     *slog.Logger
	waiters waiters
	wakeSub *nats.Subscription
	// stopping closes when Run begins to stop: waiting peeks then answer
	// at once instead of holding the stop open.
	stopping chan struct{}
	m        metrics
}

type metrics struct {
	requests *prometheus.CounterVec
	waiting  prometheus.Gauge
}

// New makes the service; the streams and buckets must exist (bus.Ensure).
// Wake-ups are subscribed to here, before any request can wait for one.
func New(ctx context.Context, cfg Config, conn *jet.Conn, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("queue: public URL %q must be an http or https URL without query (KURIER_PUBLIC_URL)", cfg.PublicURL)
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	if cfg.MaxPerOrg < 1 || cfg.MaxPerOrg > maxPerOrg || cfg.MaxTimeout < time.Second {
		return nil, fmt.Errorf("queue: queues per org must be from 1 to %d and the longest wait at least 1s", maxPerOrg)
	}
	limit, err := ratelimit.New(cfg.RateLimit)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		return nil, err
	}
	store, err := queues.Open(ctx, conn)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, nc: conn.NC, tenants: tenants, queues: store, limit: limit, log: log,
		waiters:  waiters{byQueue: map[string]map[chan struct{}]struct{}{}},
		stopping: make(chan struct{}),
		m: metrics{
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "kurier_queue_requests_total", Help: "Queue API requests by operation and status code.",
			}, []string{"op", "status"}),
			waiting: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "kurier_queue_waiting", Help: "Peeks waiting for a message.",
			}),
		},
	}
	for _, c := range []prometheus.Collector{s.m.requests, s.m.waiting} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("queue metrics: %w", err)
		}
	}
	// One subscription for every queue: its messages are the headers of
	// messages just stored, a few hundred bytes, and each wakes only the
	// peeks waiting on that queue.
	s.wakeSub, err = conn.NC.Subscribe(bus.QueuedWildcard, func(m *nats.Msg) {
		s.waiters.wake(strings.TrimPrefix(m.Subject, bus.QueuedSubject("")))
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", bus.QueuedWildcard, err)
	}
	return s, nil
}

// Run serves until ctx ends; then waiting peeks are answered at once.
func (s *Service) Run(ctx context.Context) error {
	<-ctx.Done()
	close(s.stopping)
	if err := s.wakeSub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		s.log.Warn("unsubscribe queue wake-ups", "err", err)
	}
	return nil
}

// waiters are the peeks waiting on each queue.
type waiters struct {
	mu      sync.Mutex // guards byQueue
	byQueue map[string]map[chan struct{}]struct{}
}

// add registers a waiter on a queue; its channel gets a value when a
// message arrives. Register before looking, so none is missed between.
func (w *waiters) add(queue string) chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.byQueue[queue]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		w.byQueue[queue] = set
	}
	set[ch] = struct{}{}
	return ch
}

func (w *waiters) remove(queue string, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.byQueue[queue], ch)
	if len(w.byQueue[queue]) == 0 {
		delete(w.byQueue, queue)
	}
}

func (w *waiters) wake(queue string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.byQueue[queue] {
		select {
		case ch <- struct{}{}:
		default: // already woken
		}
	}
}
