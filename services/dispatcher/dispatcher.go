// Package dispatcher matches stored events to subscriptions and notifies
// their systems. It is a router plus one component per delivery mode, each
// a Handler of its own messages, all acknowledged in one place:
//
//	dispatcher.go  the Service: settings, start-up, the consumers it runs
//	consume.go     Handler, the consume loop and settle, which acks, naks or terminates
//	index.go       the subscriptions and their state, as watched in their buckets
//	router.go      an event's way to its subscriptions: a ping timer, a delivery task, a queue message
//	ping.go        ping mode: coalescing timers, the due ping and its claim
//	payload.go     payload mode: one attempt of a task, its retry as a scheduled message, dead letters
//	partition.go   which replica delivers which subscriptions' tasks, within their in-flight limits
//	ratelimit.go   each subscription's rate limit, kept by the replica that makes its requests
//	ordered.go     ordered payload subscriptions, delivered in EVENTS' order
//	digest.go      daily digests of payload subscriptions
//	queue.go       queue mode: the event as a message in a pull queue
//	attempt.go     the one place a request is made, classified, logged and counted
//	testevent.go   test events on admin's request, made as real deliveries are
//	metrics.go     what the dispatcher counts
//	migrate.go     moving the tasks of the layout before partitions into them
package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
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
	// Workers route events at once. Senders bounds the pings made at
	// once: each waits on its own receiver, so receivers that hang hold up
	// their own pings only, as long as fewer than Senders hang at once.
	Workers int
	Senders int
	// Deliveries bounds the payload requests this replica makes at once.
	Deliveries int
	// AllowPrivate lets requests reach loopback and private addresses,
	// which are refused by default so that a subscription cannot probe the
	// network Kurier runs in.
	AllowPrivate bool
	// DisableAfter switches a payload subscription off once every delivery
	// has failed for that long.
	DisableAfter time.Duration
	// StatsInterval is how often the attempts counted are written to
	// STATS, and so how late the statistics may be.
	StatsInterval time.Duration
}

// DefaultConfig is what Kurier runs with unless told otherwise.
func DefaultConfig() Config {
	return Config{
		NotifyDelay:   time.Minute,
		MaxUnacked:    100,
		PingTimeout:   10 * time.Second,
		UserAgent:     "kurier/dev",
		Workers:       256,
		Senders:       4096,
		Deliveries:    4096,
		DisableAfter:  5 * 24 * time.Hour,
		StatsInterval: 10 * time.Second,
	}
}

// dueMaxPending bounds the due pings out at once: those in flight (at
// most Senders) and those waiting for a sender.
const dueMaxPending = 10000

// Service is the dispatcher.
type Service struct {
	cfg      Config
	conn     *jet.Conn
	log      *slog.Logger
	subs     *subs.Store
	index    *index
	m        metrics
	send     *sender
	router   *router
	pings    *pinger
	payloads *payloads
	ordered  *ordered
	digests  *digests
	parts    *partitions
	tests    *tester
}

// New makes the dispatcher; the streams and buckets must exist (bus.Ensure).
func New(ctx context.Context, cfg Config, conn *jet.Conn, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if cfg.NotifyDelay <= 0 || cfg.MaxUnacked <= 0 || cfg.PingTimeout <= 0 || cfg.Workers <= 0 || cfg.Senders <= 0 || cfg.Deliveries <= 0 || cfg.StatsInterval <= 0 {
		return nil, errors.New("dispatcher: notify delay, max unacked, ping timeout, workers, senders, deliveries and stats interval must be positive")
	}
	store, err := subs.Open(ctx, conn.JS)
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
	events, err := bus.Stream(ctx, conn.JS, bus.StreamEvents)
	if err != nil {
		return nil, err
	}
	members, err := jet.Bucket(ctx, conn.JS, bus.BucketDispatchers)
	if err != nil {
		return nil, err
	}
	locks, err := jet.Bucket(ctx, conn.JS, bus.BucketLocks)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, conn: conn, log: log, subs: store, index: newIndex()}
	s.send = &sender{
		client:    webhook.NewClient(webhook.ClientOptions{AllowPrivate: cfg.AllowPrivate}),
		userAgent: cfg.UserAgent, log: log, m: &s.m, journal: newJournal(conn.JS, log),
		stats: newTally(conn.JS, log, cfg.StatsInterval),
	}
	fails := &failures{subs: store, index: s.index, js: conn.JS, log: log, after: cfg.DisableAfter}
	s.pings = &pinger{cfg: cfg, js: conn.JS, notify: notify, subs: store, index: s.index, send: s.send, log: log, m: &s.m}
	s.tests = &tester{pings: s.pings, send: s.send, log: log}
	lim := newLimits()
	filt := newFilters(log)
	s.ordered = &ordered{js: conn.JS, locks: locks, events: events, subs: store, index: s.index, log: log, limits: lim, filters: filt}
	space := &room{stream: deliveries, log: log}
	s.payloads = &payloads{js: conn.JS, index: s.index, send: s.send, fails: fails, log: log, room: space}
	s.ordered.payloads = s.payloads
	s.digests = &digests{js: conn.JS, index: s.index, send: s.send, fails: fails, log: log, limits: lim}
	queue, err := newQueuer(ctx, conn, s.send)
	if err != nil {
		return nil, err
	}
	s.router = &router{js: conn.JS, index: s.index, pings: s.pings, queue: queue, m: &s.m, maxUnacked: cfg.MaxUnacked, room: space, filters: filt}
	s.parts = newPartitions(conn.JS, deliveries, members, s.index, s.payloads, s.ordered, lim, cfg.Deliveries, log, &s.m)
	s.ordered.holder = s.parts.id
	known := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kurier_dispatch_subscriptions", Help: "Subscriptions the dispatcher knows of.",
	}, func() float64 { return float64(len(s.index.all())) })
	waiting := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kurier_retries_scheduled", Help: "Payload deliveries waiting for their next attempt (or, deferred, for a free slot) as scheduled messages.",
	}, s.payloads.scheduled(deliveries))
	if s.m, err = newMetrics(reg, known, waiting, queue.results, filt.results); err != nil {
		return nil, err
	}
	return s, nil
}

// Run dispatches until ctx ends, then finishes what it has taken.
func (s *Service) Run(ctx context.Context) error {
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	// A replica restarted while NATS elects leaders waits for them rather
	// than exit: each step below is retried until it is done.
	if err := jet.Retry(ctx, s.log, "subscriptions", func(context.Context) error {
		return s.index.watch(wctx, s.subs, s.log, s.parts.changed, func(e *entry) {
			go func() {
				_ = jet.Retry(wctx, s.log, "routing to subscription "+e.sub.ID, func(ctx context.Context) error {
					return s.router.catchUp(ctx, e)
				})
			}()
		}, func(id string, st subs.PingState, written time.Time) { s.pings.reopened(wctx, id, st, written) })
	}); err != nil {
		return err
	}
	if err := jet.Retry(ctx, s.log, "tasks of the earlier layout", func(ctx context.Context) error {
		return migrate(ctx, s.conn.JS, s.subs, s.log)
	}); err != nil {
		return err
	}
	go s.send.journal.run()
	defer s.send.journal.close()
	go s.send.stats.run()
	defer s.send.stats.close()
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
		pool   *pool
	}{
		{bus.StreamEvents, bus.DispatchConsumer(), &pool{h: s.router, slots: make(chan struct{}, s.cfg.Workers), skip: s.router.covered}},
		{bus.StreamNotify, jetstream.ConsumerConfig{
			Durable:       bus.PingsConsumer,
			Description:   "Makes the pings whose time has come",
			FilterSubject: bus.NotifyDueWildcard,
			// Longer than a ping can take, so a ping in flight is not redelivered.
			AckWait:       s.cfg.PingTimeout + 20*time.Second,
			MaxAckPending: dueMaxPending,
		}, &pool{h: s.pings, slots: make(chan struct{}, s.cfg.Senders)}},
		{bus.StreamNotify, jetstream.ConsumerConfig{
			Durable:       bus.DigestsConsumer,
			Description:   "Sends the daily digests whose time has come",
			FilterSubject: bus.DigestDueWildcard,
			AckWait:       5 * time.Minute,
			MaxAckPending: 1000,
		}, &pool{h: s.digests, slots: make(chan struct{}, 8)}},
	} {
		c.cfg.AckPolicy = jetstream.AckExplicitPolicy
		c.pool.ctx, c.pool.log, c.pool.wg = work, s.log, &wg
		if err := jet.Retry(ctx, s.log, "consumer "+c.cfg.Durable, func(ctx context.Context) error {
			cons, err := s.conn.JS.CreateOrUpdateConsumer(ctx, c.stream, c.cfg)
			if err != nil {
				return err
			}
			stop, err := consume(cons, c.pool.take, jetstream.PullMaxMessages(min(max(2*cap(c.pool.slots), 500), 5000)))
			if err != nil {
				return err
			}
			stops = append(stops, stop)
			return nil
		}); err != nil {
			return err
		}
	}
	stopTests, err := s.tests.serve(work, s.conn.NC)
	if err != nil {
		return err
	}
	stops = append(stops, stopTests)
	if err := jet.Retry(ctx, s.log, "partition consumers", s.parts.ensure); err != nil {
		return err
	}
	if err := jet.Retry(ctx, s.log, "retries counter", func(ctx context.Context) error {
		_, err := s.conn.JS.CreateOrUpdateConsumer(ctx, bus.StreamDeliveries, bus.RetriesCounter())
		return err
	}); err != nil {
		return err
	}
	wg.Go(func() { jet.KeepTail(ctx, s.conn.JS, bus.TailSubject, s.payloads.room.admits, s.log) })
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.parts.run(ctx, work)
	}()
	<-ctx.Done()
	for _, stop := range stops {
		stop()
	}
	stops = nil
	<-done // every partition handed back
	wg.Wait()
	return nil
}

// storedAt is when the stream stored a message; zero if unknown.
func storedAt(m jetstream.Msg) time.Time {
	md, err := m.Metadata()
	if err != nil {
		return time.Time{}
	}
	return md.Timestamp
}

var errNoMetadata = errors.New("message without metadata")
