package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/catalog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/filter"
	"kurier.dev/services/internal/lease"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/telemetry"
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
	locks    jetstream.KeyValue
	holder   string // this replica, as the walk locks name it
	events   jetstream.Stream
	subs     *subs.Store
	index    *index
	payloads *payloads
	limits   *limits
	filters  *filters
	log      *slog.Logger

	mu      sync.Mutex            // guards walking
	walking map[string]*walkState // subscription -> its running walk
}

// walkState is what came for a running walk: a wake-up since it began,
// and the tasks that woke it, which are settled once it is over.
type walkState struct {
	again bool
	tasks []jetstream.Msg
}

// wake makes sure a walk of the subscription runs, on ctx (the owning
// partition's), counted in wg. task, if any, is the one that woke it: it
// is settled when the walk is over, by what the walk covered.
func (o *ordered) wake(ctx context.Context, wg *sync.WaitGroup, sub subs.Subscription, task jetstream.Msg) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.walking == nil {
		o.walking = map[string]*walkState{}
	}
	w := o.walking[sub.ID]
	if w == nil {
		w = &walkState{}
		o.walking[sub.ID] = w
		wg.Go(func() { o.run(ctx, sub.ID, w) })
	} else {
		w.again = true
	}
	if task != nil {
		w.tasks = append(w.tasks, task)
	}
}

// run walks until no wake-up came during the last walk. A walk that
// fails is walked again after a pause, its tasks kept meanwhile: they
// would only wake it wakeTries times and then be given up, and no other
// task may come to wake it.
func (o *ordered) run(ctx context.Context, id string, w *walkState) {
	for {
		through, err := o.walk(ctx, id)
		if err != nil && ctx.Err() == nil && !errors.Is(err, subs.ErrNotFound) {
			o.log.Warn("ordered deliveries paused", "subscription", id, "err", err)
			pause := time.Second
			if l := (*later)(nil); errors.As(err, &l) && l.wait > 0 {
				pause = l.wait
			}
			select {
			case <-ctx.Done():
			case <-time.After(pause):
				continue
			}
		}
		o.mu.Lock()
		tasks, more := w.tasks, w.again && ctx.Err() == nil
		w.tasks, w.again = nil, false
		if !more {
			delete(o.walking, id)
		}
		o.mu.Unlock()
		o.settle(id, tasks, through)
		if !more {
			return
		}
	}
}

// wakeTries bounds how often one task wakes walks that do not get to its
// event (a follower that has not stored it yet answers the walk's reads).
const wakeTries = 5

// settle answers the tasks that woke a walk once it is over. One whose
// event the walk has delivered, or left to a retry or another replica's
// walk, is done. One it did not get to comes again shortly: its event may
// not have been readable yet, or the subscription has stopped being
// ordered (as a stale view of it took the task for a wake-up), and then
// the task is delivered as any other.
func (o *ordered) settle(id string, tasks []jetstream.Msg, through uint64) {
	e := o.index.get(id)
	for _, m := range tasks {
		seq, _ := origin(m)
		ordered := e != nil && e.sub.Mode == subs.ModePayload && e.sub.Active && !e.sub.Daily() && inOrder(e.sub, seq)
		md, _ := m.Metadata()
		var err error
		switch {
		case ordered && seq <= through:
		case ordered && md != nil && md.NumDelivered >= wakeTries:
			// Woken often enough: a walk that cannot read the event
			// after that will not by being woken again.
		default:
			err = again(100*time.Millisecond, nil)
		}
		settle(o.log, m, err)
	}
}

// walkLock is how long a walk's lock outlives a replica that died
// walking; a live walk renews it.
const walkLock = 10 * time.Second

// walk delivers the subscription's events after its cursor until none is
// left, an attempt fails, or ctx ends. It holds the subscription's walk
// lock, so that two replicas that both count the partition theirs for a
// moment (one of them wrongly) never walk it at once, and it reads the
// cursor through the leader, so that it starts where the last walk, on
// whichever replica, left off. It answers the last event it has seen to:
// delivered, or waiting for a retry or another walk (then every one).
func (o *ordered) walk(ctx context.Context, id string) (uint64, error) {
	held, err := lease.Lock(ctx, o.js, o.locks, bus.WalkLockKey(id), o.holder, walkLock, walkLock+time.Second)
	if errors.Is(err, lease.ErrLocked) {
		return math.MaxUint64, nil // another walk runs, and goes on until nothing is left
	}
	if err != nil {
		return 0, err
	}
	defer func() { _ = held.Release(context.WithoutCancel(ctx)) }()
	ctx, cancel := held.Guard(ctx)
	defer cancel()
	st, rev, err := o.subs.LeaderState(ctx, id)
	if errors.Is(err, subs.ErrNotFound) {
		return 0, nil // deleted
	}
	if err != nil {
		return 0, err
	}
	for ctx.Err() == nil {
		e := o.index.get(id)
		if e == nil || e.sub.Mode != subs.ModePayload || !e.sub.Active || e.sub.Daily() {
			return 0, nil
		}
		sub := e.sub
		if wait := time.Until(st.RetryAt); wait > 2*time.Second {
			return math.MaxUint64, nil // its retry wakes it
		} else if wait > 0 {
			// Woken a moment early: wait rather than miss the time.
			select {
			case <-ctx.Done():
				return 0, nil
			case <-time.After(wait):
			}
		}
		cursor := max(st.Cursor, sub.OrderedFrom)
		msg, err := o.next(ctx, sub, cursor)
		switch {
		case err != nil:
			return 0, err
		case msg == nil:
			return cursor, nil
		case !inOrder(sub, msg.Sequence):
			return msg.Sequence - 1, nil
		}
		var ev event.Event
		if err := ev.UnmarshalJSON(msg.Data); err != nil {
			o.log.Error("undecodable event passed over", "subscription", id, "seq", msg.Sequence, "err", err)
			if st, rev, err = o.advance(ctx, id, st, rev, msg.Sequence, 0, time.Time{}); err != nil {
				return 0, err
			}
			continue
		}
		// The walk reads every event of the types: the router's filtering
		// made no task for one the filter leaves out, but the walk does
		// not go by tasks.
		if !o.filters.pass(e, func() (*filter.Input, error) { return filter.NewInput(ev, msg.Time), nil }) {
			if st, rev, err = o.advance(ctx, id, st, rev, msg.Sequence, 0, time.Time{}); err != nil {
				return 0, err
			}
			continue
		}
		// The walk waits for its rate in its own goroutine, holding no
		// request slot.
		if err := await(ctx, o.limits, sub); err != nil {
			return 0, err
		}
		attempt := st.Attempts + 1
		task := bus.DeliveryTask(sub.ID, msg.Sequence, msg.Time, msg.Data, "")
		// The walk makes no task: its attempt continues the event's trace.
		retrying, err := o.payloads.deliver(telemetry.FromNATS(ctx, msg.Header), sub, ev, msg.Sequence, msg.Time, msg.Data, attempt, func(next time.Time) error {
			// The retry first: a state that names a retry time is trusted
			// to be woken then, and with no retry stored (DELIVERIES
			// full) nothing would. A wake-up between the two is this
			// walk's, or waits for its lock.
			if err := o.payloads.retry(ctx, sub, task, attempt, 0, next); err != nil {
				return err
			}
			var err error
			st, rev, err = o.advance(ctx, id, st, rev, cursor, attempt, next)
			return err
		})
		switch {
		case err != nil:
			return 0, err
		case retrying:
			return math.MaxUint64, nil
		}
		if st, rev, err = o.advance(ctx, id, st, rev, msg.Sequence, 0, time.Time{}); err != nil {
			return 0, err
		}
	}
	return 0, nil
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
