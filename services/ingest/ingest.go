// Package ingest is the intake of change events: CloudEvents over HTTP
// (POST /v1/events) and over NATS request/reply (kurier.ingest.<org>),
// stored durably in the EVENTS stream before they are acknowledged.
package ingest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/semaphore"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/ratelimit"
	"kurier.dev/services/internal/schema"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/telemetry"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
)

// Config holds the ingest service's settings.
type Config struct {
	MaxData        int // bytes of data per event
	MaxBatchEvents int
	MaxBatchBytes  int
	// MaxInflight bounds the bytes of request bodies held at once; past it
	// requests are answered 503 with Retry-After instead of using more memory.
	MaxInflight int64
	// PublishTimeout bounds the wait for the stream's acknowledgement.
	PublishTimeout time.Duration
	// Workers is how many NATS ingest requests are handled at once.
	Workers int
	// RateLimit bounds the requests of each key, over HTTP and NATS
	// together; the zero Rate is no limit.
	RateLimit ratelimit.Rate
	// NotifyDelay is the dispatcher's: how long after a change its ping
	// comes. A feed read sets a ping timer for changes that no ping will
	// tell of (see ackPings).
	NotifyDelay time.Duration
}

// DefaultConfig is what Kurier runs with unless told otherwise.
func DefaultConfig() Config {
	return Config{
		MaxData:        64 << 10,
		MaxBatchEvents: 1000,
		MaxBatchBytes:  4 << 20,
		MaxInflight:    64 << 20,
		PublishTimeout: 10 * time.Second,
		Workers:        64,
		NotifyDelay:    time.Minute,
	}
}

// envelope is the room a structured event may take beside its data.
const envelope = 16 << 10

// MaxStructured bounds the body of one structured event: room for the
// most data, base64-encoded in data_base64, and the envelope.
func (c Config) MaxStructured() int {
	return base64.StdEncoding.EncodedLen(c.MaxData) + envelope
}

// Service is the ingest service.
type Service struct {
	cfg      Config
	conn     *jet.Conn
	tenants  *tenant.Store
	subs     *subs.Store
	feeds    jetstream.KeyValue
	events   jetstream.Stream
	schemas  *schema.Registry
	log      *slog.Logger
	inflight *semaphore.Weighted
	limit    *ratelimit.Limiter
	feedsMu  feedLocks
	m        metrics
}

type metrics struct {
	events   *prometheus.CounterVec
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New makes the service; the streams and buckets must exist (bus.Ensure).
func New(ctx context.Context, cfg Config, conn *jet.Conn, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		return nil, err
	}
	subStore, err := subs.Open(ctx, conn.JS)
	if err != nil {
		return nil, err
	}
	feeds, err := jet.Bucket(ctx, conn.JS, bus.BucketFeeds)
	if err != nil {
		return nil, err
	}
	events, err := bus.Stream(ctx, conn.JS, bus.StreamEvents)
	if err != nil {
		return nil, err
	}
	schemaStore, err := schema.Open(ctx, conn.JS)
	if err != nil {
		return nil, err
	}
	schemas, err := schemaStore.Registry(ctx, log)
	if err != nil {
		return nil, err
	}
	if cfg.MaxInflight < int64(cfg.MaxBatchBytes) {
		return nil, fmt.Errorf("ingest: in-flight limit %d is below the batch size limit %d", cfg.MaxInflight, cfg.MaxBatchBytes)
	}
	limit, err := ratelimit.New(cfg.RateLimit)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	// store gives up on a publication after attemptWait and sends it
	// again, so the client gives it up then too (see jet.PublishTimeout):
	// a few leader losses would otherwise fill the pending budget for
	// jet.PublishTimeout, and every request meanwhile be refused as
	// overloaded.
	pub, err := jetstream.New(conn.NC, jetstream.WithPublishAsyncMaxPending(jet.MaxPending),
		jetstream.WithPublishAsyncTimeout(attemptWait))
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	s := &Service{
		cfg:      cfg,
		conn:     &jet.Conn{NC: conn.NC, JS: pub},
		tenants:  tenants,
		subs:     subStore,
		feeds:    feeds,
		events:   events,
		schemas:  schemas,
		log:      log,
		inflight: semaphore.NewWeighted(cfg.MaxInflight),
		limit:    limit,
		m: metrics{
			events: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "kurier_ingest_events_total", Help: "Events taken in, by result (accepted, duplicate).",
			}, []string{"result"}),
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "kurier_ingest_requests_total", Help: "Ingest requests by transport and status code.",
			}, []string{"transport", "status"}),
			latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name: "kurier_ingest_request_seconds", Help: "Ingest request duration by transport.",
				Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
			}, []string{"transport"}),
		},
	}
	for _, c := range []prometheus.Collector{s.m.events, s.m.requests, s.m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ingest metrics: %w", err)
		}
	}
	return s, nil
}

// Result is the answer to an accepted request.
type Result struct {
	Accepted   []string `json:"accepted"`
	Duplicates []string `json:"duplicates"`
}

// attemptWait is how long a publication waits for the stream's
// acknowledgement before it is sent again under the same Nats-Msg-Id: a
// stream leader that dies holding it never answers, and a new one is
// elected within about a second, so waiting out PublishTimeout would stall
// the sender for nothing.
const attemptWait = 2 * time.Second

// store publishes the events of an org and waits until the stream has them
// all. A failure part-way may leave some stored; the sender retries the
// whole request and those come back as duplicates.
//
// Each stored event carries the trace context its routing continues: the
// request's span when the request's transport brought a traceparent
// (traced), else, for an event with the CloudEvents distributed-tracing
// extension, a span of its own in the producer's trace, linked to the
// request's.
func (s *Service) store(ctx context.Context, org string, events []event.Event, traced bool) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	msgs := make([]*nats.Msg, len(events))
	most := s.maxStored()
	for i, e := range events {
		var err error
		if msgs[i], err = message(org, e); err != nil {
			return Result{}, err
		}
		ectx := ctx
		if own := telemetry.FromExtensions(ctx, e.Extensions); !traced && own != ctx {
			var span trace.Span
			ectx, span = telemetry.Tracer(tracerName).Start(own, "ingest event", trace.WithSpanKind(trace.SpanKindProducer),
				trace.WithLinks(trace.LinkFromContext(ctx)))
			defer span.End()
		}
		telemetry.ToNATS(ectx, msgs[i].Header)
		// Refused here, before anything is published: the server would
		// refuse this one alone after the events before it were stored,
		// and a sender told to retry would be refused for ever. Extension
		// values and dataschema have no limit of their own short of the
		// body's.
		if size := msgs[i].Size() - len(msgs[i].Subject); size > most {
			return Result{}, &event.Error{Index: i, Field: "body", TooLarge: true,
				Message: fmt.Sprintf("the event is %d bytes as stored, at most %d are allowed", size, most)}
		}
	}
	// An event acknowledged as a duplicate on a second sending was most
	// likely stored by the first: only the first sending tells.
	dup := make([]bool, len(events))
	pending := make([]int, len(events))
	for i := range pending {
		pending[i] = i
	}
	for first := true; len(pending) > 0; first = false {
		futures := make([]jetstream.PubAckFuture, len(pending))
		for k, i := range pending {
			var err error
			if futures[k], err = s.conn.JS.PublishMsgAsync(msgs[i], jetstream.WithStallWait(time.Second)); err != nil {
				return Result{}, publishErr(err)
			}
		}
		timeout := time.NewTimer(attemptWait)
		var again []int
	wait:
		for k, f := range futures {
			i := pending[k]
			select {
			case ack := <-f.Ok():
				dup[i] = first && ack.Duplicate
			case err := <-f.Err():
				switch {
				case jet.IsDuplicate(err):
					dup[i] = first
				case errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrDisconnected) ||
					errors.Is(err, jetstream.ErrAsyncPublishTimeout):
					again = append(again, i) // no leader, or no server, at the moment
				default:
					timeout.Stop()
					return Result{}, publishErr(err)
				}
			case <-timeout.C:
				again = append(again, pending[k:]...)
				break wait
			case <-ctx.Done():
				timeout.Stop()
				return Result{}, publishErr(ctx.Err())
			}
		}
		if timeout.Stop() && len(again) > 0 {
			// Nobody answered at once: give the election a moment.
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return Result{}, publishErr(ctx.Err())
			}
		}
		pending = again
	}
	res := Result{Accepted: make([]string, 0, len(events)), Duplicates: []string{}}
	for i, e := range events {
		if dup[i] {
			res.Duplicates = append(res.Duplicates, e.ID)
		} else {
			res.Accepted = append(res.Accepted, e.ID)
		}
	}
	s.count(res)
	return res, nil
}

// maxStored is the most bytes, headers included, that an event may take
// as a message: the server's largest payload, or the stream's largest
// message if that is less.
func (s *Service) maxStored() int {
	most := int(s.conn.NC.MaxPayload())
	if m := int(s.events.CachedInfo().Config.MaxMsgSize); m > 0 && (most <= 0 || m < most) {
		most = m
	}
	if most <= 0 {
		return math.MaxInt // not connected yet: the publish decides
	}
	return most
}

// storeErr answers a failure of store. An event too large to be stored
// is the sender's to fix, named by its index only in a batch.
func storeErr(err error, batch bool) error {
	var ee *event.Error
	if !errors.As(err, &ee) {
		return err
	}
	if !batch {
		ee.Index = -1
	}
	return invalid(ee)
}

func (s *Service) count(r Result) {
	s.m.events.WithLabelValues("accepted").Add(float64(len(r.Accepted)))
	s.m.events.WithLabelValues("duplicate").Add(float64(len(r.Duplicates)))
}

func message(org string, e event.Event) (*nats.Msg, error) {
	b, err := e.MarshalJSON()
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(bus.EventsSubject(org, e.Type))
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, bus.EventMsgID(org, e.Source, e.ID))
	return m, nil
}

const tracerName = "kurier.dev/services/ingest"

// startSpan starts the server span of an ingest request over transport,
// in the trace context ctx carries from the request, and tells whether it
// carried one.
func startSpan(ctx context.Context, name, transport string) (context.Context, trace.Span, bool) {
	traced := trace.SpanContextFromContext(ctx).IsValid()
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("kurier.ingest.transport", transport))
	}
	return ctx, span, traced
}

// endSpan records a request's answer in its span: a failure of Kurier's,
// not of the request, is an error.
func endSpan(span trace.Span, status int, err error) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, err.Error())
	}
}

// publishErr turns a failure to store into what the sender is told: the
// store is busy or unreachable, try again shortly; or it is full, try again
// later.
func publishErr(err error) error {
	e := &web.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the event store did not confirm in time, retry later", RetryAfter: 1}
	switch {
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		e = web.ErrOverloaded
	case jet.IsFull(err):
		e = web.ErrStoreFull
	}
	return fmt.Errorf("%w (%w)", e, err)
}
