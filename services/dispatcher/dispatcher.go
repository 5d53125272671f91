// Package dispatcher matches stored events to subscriptions and notifies
// their systems. Files follow an event's way through it: index.go keeps
// the subscriptions, schedule.go coalesces changes into ping timers,
// ping.go makes the pings and logs them.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/webhook"
)

// Config holds the dispatcher's settings.
type Config struct {
	// NotifyDelay is how long after a change its ping comes, and the least
	// time between two pings of a subscription (Collmex: one minute).
	NotifyDelay time.Duration
	// MaxUnacked pings without a change-feed query stop further pings.
	MaxUnacked  int
	PingTimeout time.Duration
	UserAgent   string
	// Workers handle events at once; Senders make pings at once.
	Workers int
	Senders int
	// AllowPrivate lets requests reach loopback and private addresses,
	// which are refused by default so that a subscription cannot probe the
	// network Kurier runs in.
	AllowPrivate bool
	// DisableAfter switches a payload subscription off once every delivery
	// has failed for that long.
	DisableAfter time.Duration
}

// DefaultConfig is what Kurier runs with unless told otherwise.
func DefaultConfig() Config {
	return Config{
		NotifyDelay:  time.Minute,
		MaxUnacked:   100,
		PingTimeout:  10 * time.Second,
		UserAgent:    "kurier/dev",
		Workers:      32,
		Senders:      64,
		DisableAfter: 5 * 24 * time.Hour,
	}
}

// Durable consumer names, shared by every replica; that of EVENTS is
// bus.DispatchConsumer.
const (
	dueConsumer    = "dispatcher-pings"
	digestConsumer = "dispatcher-digests"
)

// Service is the dispatcher.
type Service struct {
	cfg    Config
	conn   *bus.Conn
	subs   *subs.Store
	notify jetstream.Stream
	index  *index
	client *http.Client // pings
	// payloadClient has no overall timeout: each subscription sets its own.
	payloadClient *http.Client
	fanout        *fanout
	queueing      *queueing
	log           *slog.Logger
	m             metrics
	logs          sync.WaitGroup // delivery log records being written
}

type metrics struct {
	events    prometheus.Counter
	scheduled prometheus.Counter
	pings     *prometheus.CounterVec
	skipped   *prometheus.CounterVec
	latency   prometheus.Histogram
}

// New makes the dispatcher; the streams and buckets must exist (bus.Ensure).
func New(ctx context.Context, cfg Config, conn *bus.Conn, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if cfg.NotifyDelay <= 0 || cfg.MaxUnacked <= 0 || cfg.PingTimeout <= 0 {
		return nil, errors.New("dispatcher: notify delay, max unacked and ping timeout must be positive")
	}
	store, err := subs.Open(ctx, conn.JS)
	if err != nil {
		return nil, err
	}
	notify, err := bus.Stream(ctx, conn.JS, bus.StreamNotify)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, conn: conn, subs: store, notify: notify, log: log,
		index:         newIndex(),
		client:        webhook.NewClient(webhook.ClientOptions{Timeout: cfg.PingTimeout, AllowPrivate: cfg.AllowPrivate}),
		payloadClient: webhook.NewClient(webhook.ClientOptions{AllowPrivate: cfg.AllowPrivate}),
		m: metrics{
			events:    prometheus.NewCounter(prometheus.CounterOpts{Name: "kurier_dispatch_events_total", Help: "Events the dispatcher has handled."}),
			scheduled: prometheus.NewCounter(prometheus.CounterOpts{Name: "kurier_ping_scheduled_total", Help: "Ping timers started."}),
			pings: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "kurier_pings_total", Help: "Pings made, by result (2xx, 3xx, 4xx, 5xx, error).",
			}, []string{"result"}),
			skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "kurier_pings_skipped_total", Help: "Due pings not made, by reason (capped, covered, inactive).",
			}, []string{"reason"}),
			latency: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "kurier_ping_seconds", Help: "Ping request duration.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
			}),
		},
	}
	s.fanout = newFanout(s)
	if s.queueing, err = newQueueing(ctx, conn, reg); err != nil {
		return nil, err
	}
	known := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kurier_dispatch_subscriptions", Help: "Subscriptions the dispatcher knows of.",
	}, func() float64 { return float64(len(s.index.all())) })
	for _, c := range []prometheus.Collector{known, s.m.events, s.m.scheduled, s.m.pings, s.m.skipped, s.m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("dispatcher metrics: %w", err)
		}
	}
	return s, nil
}

// Run dispatches until ctx ends, then finishes what it has taken.
func (s *Service) Run(ctx context.Context) error {
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	// A replica restarted while NATS elects leaders waits for them rather
	// than exit: each step below is retried until it is done.
	if err := bus.Retry(ctx, s.log, "subscriptions", func(context.Context) error {
		return s.index.watch(wctx, s.subs, s.log, s.fanout.notice)
	}); err != nil {
		return err
	}
	// Work taken before a stop is finished, so it runs on a context that
	// the stop does not cancel.
	work := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for _, c := range []struct {
		stream string
		cfg    jetstream.ConsumerConfig
		n      int
		handle func(context.Context, jetstream.Msg)
		done   func(jetstream.Msg) bool
	}{
		{bus.StreamEvents, bus.DispatchConsumer(), s.cfg.Workers, s.handleEvent, s.covered},
		{bus.StreamNotify, jetstream.ConsumerConfig{
			Durable:       dueConsumer,
			Description:   "Makes the pings whose time has come",
			FilterSubject: bus.NotifyDueWildcard,
			// Longer than a ping can take, so a ping in flight is not redelivered.
			AckWait:       s.cfg.PingTimeout + 20*time.Second,
			MaxAckPending: 10000,
		}, s.cfg.Senders, s.handleDue, nil},
		{bus.StreamNotify, jetstream.ConsumerConfig{
			Durable:       digestConsumer,
			Description:   "Sends the daily digests whose time has come",
			FilterSubject: bus.DigestDueWildcard,
			AckWait:       5 * time.Minute,
			MaxAckPending: 1000,
		}, 8, s.handleDigest, nil},
	} {
		c.cfg.AckPolicy = jetstream.AckExplicitPolicy
		if err := bus.Retry(ctx, s.log, "consumer "+c.cfg.Durable, func(ctx context.Context) error {
			cons, err := s.conn.JS.CreateOrUpdateConsumer(ctx, c.stream, c.cfg)
			if err != nil {
				return err
			}
			stop, err := consume(work, cons, c.n, &wg, c.handle, c.done)
			if err != nil {
				return err
			}
			stops = append(stops, stop)
			return nil
		}); err != nil {
			return err
		}
	}
	if err := bus.Retry(ctx, s.log, "payload deliveries", func(context.Context) error {
		stop, err := s.fanout.run(work, work, &wg)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
		return nil
	}); err != nil {
		return err
	}
	<-ctx.Done()
	for _, stop := range stops {
		stop()
	}
	stops = nil
	wg.Wait()
	s.logs.Wait()
	return nil
}

// consume hands messages to handle on at most n goroutines. Waiting for a
// free one holds the consumer back, so pending work stays in the stream.
// Messages that done says need nothing more are acknowledged at once.
func consume(ctx context.Context, c jetstream.Consumer, n int, wg *sync.WaitGroup, handle func(context.Context, jetstream.Msg), done func(jetstream.Msg) bool) (func(), error) {
	slots := make(chan struct{}, n)
	cc, err := c.Consume(func(m jetstream.Msg) {
		if done != nil && done(m) {
			_ = m.Ack()
			return
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			handle(ctx, m)
		})
	}, jetstream.PullMaxMessages(max(2*n, 500)))
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	// Drain hands over what is buffered; once Closed, no callback starts
	// again, so the caller's wg.Wait sees every handler.
	return func() { cc.Drain(); <-cc.Closed() }, nil
}

// eventKey parses kurier.events.<org>.<type…>.
func eventKey(subject string) (org, typ string, ok bool) {
	rest, ok := strings.CutPrefix(subject, "kurier.events.")
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ".")
}
