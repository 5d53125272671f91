package dispatcher

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/subs"
)

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
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	var tasks []*nats.Msg
	for _, e := range r.index.match(org, typ) {
		var step func() error
		switch e.sub.Mode {
		case subs.ModeQueue:
			step = func() error { return r.queue.put(ctx, e.sub, m, md) }
		case subs.ModePayload:
			tasks = append(tasks, task(e.sub, m, md))
			continue
		case subs.ModePing:
			if r.pings.pingedSince(e, md.Timestamp) {
				continue
			}
			step = func() error { return r.pings.schedule(ctx, e) }
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

// task is an event's delivery task for a payload subscription: in its
// partition, or with the digest's for a daily one. The message id makes a
// routed-again event's task a duplicate. An ordered subscription reads its
// events from EVENTS; its task only wakes it.
func task(sub subs.Subscription, m jetstream.Msg, md *jetstream.MsgMetadata) *nats.Msg {
	t := bus.DeliveryTask(sub.ID, md.Sequence.Stream, md.Timestamp, m.Data(), "")
	if sub.Daily() {
		t.Subject = bus.DigestSubject(sub.ID)
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
		e.mu.Unlock()
		if !pending && r.index.unackedOf(e.sub.ID) < r.maxUnacked {
			return false
		}
	}
	return true
}
