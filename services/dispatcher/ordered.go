package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/catalog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/subs"
)

// ordered delivers ordered payload subscriptions strictly in EVENTS'
// order, one event at a time. The subscription's state holds its cursor,
// the last event delivered or given up; a walk reads the events after it
// straight from EVENTS and delivers them one by one. A task in the
// partition only wakes the walk, which runs in the partition's owner. A
// failed attempt stops the walk until its retry time, stored in the state
// and as a scheduled task that wakes the walk then: waiting is the
// contract here, but it occupies nothing meanwhile.
type ordered struct {
	js       jetstream.JetStream
	nc       *nats.Conn
	locks    jetstream.KeyValue
	holder   string // this replica, as the walk locks name it
	events   jetstream.Stream
	subs     *subs.Store
	index    *index
	payloads *payloads
	log      *slog.Logger

	mu      sync.Mutex       // guards walking
	walking map[string]*bool // subscription -> woken again while walking
}

// wake makes sure a walk of the subscription runs, on ctx (the owning
// partition's), counted in wg.
func (o *ordered) wake(ctx context.Context, wg *sync.WaitGroup, sub subs.Subscription) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.walking == nil {
		o.walking = map[string]*bool{}
	}
	if again := o.walking[sub.ID]; again != nil {
		*again = true
		return
	}
	again := new(bool)
	o.walking[sub.ID] = again
	wg.Go(func() {
		for {
			if err := o.walk(ctx, sub.ID); err != nil && ctx.Err() == nil {
				o.log.Warn("ordered deliveries paused until the next event", "subscription", sub.ID, "err", err)
			}
			o.mu.Lock()
			if !*again || ctx.Err() != nil {
				delete(o.walking, sub.ID)
				o.mu.Unlock()
				return
			}
			*again = false
			o.mu.Unlock()
		}
	})
}

// walkLock is how long a walk's lock outlives a replica that died
// walking; a live walk renews it.
const walkLock = 10 * time.Second

// walk delivers the subscription's events after its cursor until none is
// left, an attempt fails, or ctx ends. It holds the subscription's walk
// lock, so that two replicas that both count the partition theirs for a
// moment (one of them wrongly) never walk it at once, and it reads the
// cursor through the leader, so that it starts where the last walk, on
// whichever replica, left off.
func (o *ordered) walk(ctx context.Context, id string) error {
	lease, err := bus.Lock(ctx, o.js, o.locks, "walk."+id, o.holder, walkLock, walkLock+time.Second)
	if errors.Is(err, bus.ErrLocked) {
		return nil // another walk runs, and goes on until nothing is left
	}
	if err != nil {
		return err
	}
	defer func() { _ = lease.Release(context.WithoutCancel(ctx)) }()
	ctx, cancel := lease.Guard(ctx)
	defer cancel()
	st, rev, err := o.subs.LeaderState(ctx, o.nc, id)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		e := o.index.get(id)
		if e == nil || e.sub.Mode != subs.ModePayload || !e.sub.Active || e.sub.Daily() {
			return nil
		}
		sub := e.sub
		if wait := time.Until(st.RetryAt); wait > 2*time.Second {
			return nil // its retry wakes it
		} else if wait > 0 {
			// Woken a moment early: wait rather than miss the time.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		cursor := max(st.Cursor, sub.OrderedFrom)
		msg, err := o.next(ctx, sub, cursor)
		if err != nil || msg == nil || !inOrder(sub, msg.Sequence) {
			return err
		}
		var ev event.Event
		if err := ev.UnmarshalJSON(msg.Data); err != nil {
			o.log.Error("undecodable event passed over", "subscription", id, "seq", msg.Sequence, "err", err)
			st, rev, err = o.advance(ctx, id, st, rev, msg.Sequence, 0, time.Time{})
			if err != nil {
				return err
			}
			continue
		}
		attempt := st.Attempts + 1
		task := bus.DeliveryTask(sub.ID, msg.Sequence, msg.Time, msg.Data, "")
		retrying, err := o.payloads.deliver(ctx, sub, ev, msg.Sequence, msg.Time, msg.Data, attempt, func(next time.Time) error {
			// The state first: a wake-up before the retry time finds it.
			var err error
			if st, rev, err = o.advance(ctx, id, st, rev, cursor, attempt, next); err != nil {
				return err
			}
			return o.payloads.retry(ctx, sub, task, attempt, 0, next)
		})
		if err != nil || retrying {
			return err
		}
		if st, rev, err = o.advance(ctx, id, st, rev, msg.Sequence, 0, time.Time{}); err != nil {
			return err
		}
	}
	return nil
}

// inOrder tells whether an event (its EVENTS sequence) goes to the
// subscription in order: it is ordered, or was when the event came.
func inOrder(sub subs.Subscription, seq uint64) bool {
	if sub.Ordered {
		return seq > sub.OrderedFrom
	}
	return seq > sub.OrderedFrom && seq <= sub.OrderedUntil
}

// advance stores the cursor, attempts and retry time; a cursor another
// walk has moved past is left as it is.
func (o *ordered) advance(ctx context.Context, id string, st subs.PingState, rev uint64, cursor uint64, attempts int, retryAt time.Time) (subs.PingState, uint64, error) {
	st, rev, err := o.subs.UpdateStateFrom(ctx, id, st, rev, func(st *subs.PingState) error {
		if st.Cursor > cursor {
			return subs.ErrSkip
		}
		st.Cursor, st.Attempts, st.RetryAt = cursor, attempts, retryAt
		return nil
	})
	if errors.Is(err, subs.ErrSkip) {
		err = nil
	}
	return st, rev, err
}

// next reads the subscription's first event after cursor; nil if none.
func (o *ordered) next(ctx context.Context, sub subs.Subscription, cursor uint64) (*jetstream.RawStreamMsg, error) {
	var first *jetstream.RawStreamMsg
	for _, t := range catalog.Expand(sub.EventTypes) {
		m, err := o.events.GetMsg(ctx, cursor+1, jetstream.WithGetMsgSubject(bus.EventsSubject(sub.Org, t)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		if first == nil || m.Sequence < first.Sequence {
			first = m
		}
	}
	return first, nil
}
