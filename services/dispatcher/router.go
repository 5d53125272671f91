package dispatcher

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/catalog"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/telemetry"
)

const tracerName = "kurier.dev/services/dispatcher"

// router handles EVENTS: it matches an event to its subscriptions and
// hands it to each one's mode at once: a ping timer, a delivery task, a
// queue message. The event is acknowledged once all are in place; on a
// failure it comes again, which is harmless: a running timer covers it,
// and tasks and queue messages carry ids that make them duplicates.
type router struct {
	js         jetstream.JetStream
	index      *index
	pings      *pinger
	queue      *queuer
	m          *metrics
	maxUnacked int
	room       *room
	filters    *filters
}

func (r *router) Handle(ctx context.Context, m jetstream.Msg) error {
	org, typ, ok := bus.EventOf(m.Subject())
	if !ok {
		return fmt.Errorf("not an event subject")
	}
	md, err := m.Metadata()
	if err != nil {
		return errNoMetadata
	}
	r.m.events.Inc()
	return r.route(ctx, m, md, r.index.match(org, typ))
}

// route hands an event to each of the subscriptions it matched, in a
// span that continues the trace the event was stored in and that its
// delivery tasks and queue messages carry on.
func (r *router) route(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, matched []*entry) (err error) {
	ctx, span := telemetry.Tracer(tracerName).Start(telemetry.FromNATS(ctx, m.Headers()), "route", trace.WithSpanKind(trace.SpanKindConsumer))
	defer func() {
		if span.IsRecording() {
			span.SetAttributes(attribute.String("messaging.destination.name", m.Subject()),
				attribute.Int64("kurier.event.seq", int64(md.Sequence.Stream)), attribute.Int("kurier.matched", len(matched)))
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
		}
		span.End()
	}()
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	var tasks []*nats.Msg
	input := eventInput(m.Data(), md.Timestamp)
	for _, e := range matched {
		if !r.filters.pass(e, input) {
			continue
		}
		var step func() error
		switch e.sub.Mode {
		case subs.ModeQueue:
			step = func() error { return r.queue.put(ctx, e.sub, m, md) }
		case subs.ModePayload:
			tasks = append(tasks, task(ctx, e, m, md))
			continue
		case subs.ModePing:
			if r.pings.pingedSince(e, md.Timestamp) {
				continue
			}
			step = func() error { return r.pings.schedule(ctx, e, md.Timestamp) }
		default:
			continue
		}
		wg.Go(func() {
			if err := step(); err != nil {
				err = fmt.Errorf("subscription %s: %w", e.sub.ID, err)
				failed.Store(&err)
			}
		})
	}
	if len(tasks) > 0 {
		err := r.room.take(ctx, tasks...)
		if err == nil {
			err = jet.PublishAll(ctx, r.js, tasks)
		}
		if err != nil {
			err = fmt.Errorf("delivery tasks: %w", err)
			failed.Store(&err)
		}
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		// A wait the error asks for, as with no room, is kept.
		return again(time.Second, *err)
	}
	return nil
}

// catchUp routes to a subscription the events stored after its
// RoutedFrom. Writing a subscription and storing an event meet in no order
// a router could wait for: an event posted right after CreateSubscription
// answered may have been matched before this replica saw the subscription,
// and it must not be missed. The read ends with the events stored when it
// began; the router matches every later one, since it sees the
// subscription now. Routing an event twice is harmless (see router).
func (r *router) catchUp(ctx context.Context, e *entry) error {
	types := catalog.Expand(e.sub.EventTypes)
	subjects := make([]string, len(types))
	for i, t := range types {
		subjects[i] = bus.EventsSubject(e.sub.Org, t)
	}
	_, _, err := jet.Read(ctx, r.js, bus.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    e.sub.RoutedFrom + 1,
	}, math.MaxInt, func(m jetstream.Msg) (bool, error) {
		if r.index.get(e.sub.ID) != e {
			return true, nil // changed again: a catch-up of its own follows if it needs one
		}
		md, err := m.Metadata()
		if err != nil {
			return true, errNoMetadata
		}
		return false, r.route(ctx, m, md, []*entry{e})
	})
	return err
}

// task is an event's delivery task for a payload subscription: in its
// partition, or with the digest's for a daily one. The message id makes a
// routed-again event's task a duplicate. An ordered subscription reads its
// events from EVENTS; its task only wakes it.
func task(ctx context.Context, e *entry, m jetstream.Msg, md *jetstream.MsgMetadata) *nats.Msg {
	t := bus.DeliveryTask(e.sub.ID, md.Sequence.Stream, md.Timestamp, m.Data(), "")
	bus.SetSubRevision(t.Header, e.rev)
	telemetry.ToNATS(ctx, t.Header)
	if e.sub.Daily() {
		t.Subject = bus.DigestSubject(e.sub.ID)
	}
	return t
}

// covered tells, without any I/O, whether every subscription the event
// matches is a ping one with a timer running or capped: then the event
// needs no more than its acknowledgement.
func (r *router) covered(m jetstream.Msg) bool {
	org, typ, ok := bus.EventOf(m.Subject())
	if !ok {
		return false
	}
	now, stored := time.Now(), storedAt(m)
	for _, e := range r.index.match(org, typ) {
		if e.sub.Mode != subs.ModePing {
			return false // every event is a delivery task or a queue message
		}
		if r.pings.pingedSince(e, stored) {
			continue
		}
		// A held lock means a worker is setting the timer: leave the event
		// to the workers rather than hold up the consumer behind its I/O.
		if !e.mu.TryLock() {
			return false
		}
		pending := now.Before(e.pendingUntil)
		capped := !pending && r.index.unackedOf(e.sub.ID) >= r.maxUnacked
		if capped {
			e.passOver(stored)
		}
		e.mu.Unlock()
		if !pending && !capped {
			return false
		}
	}
	return true
}
