package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/payload"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/telemetry"
)

// DefaultRetrySchedule is the delays between attempts unless a subscription
// has its own.
var DefaultRetrySchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}

// DisabledType is the operational event published into an org's EVENTS
// when Kurier switches a failing subscription off.
const DisabledType = "kurier.subscription.disabled"

// payloads is payload mode: Handle makes one attempt of a delivery task,
// which its partition hands over within the subscription's in-flight
// limit. A failed attempt's next one is stored as a scheduled message and
// the task is acknowledged, so a task waiting for its retry holds no slot
// anywhere.
type payloads struct {
	js    jetstream.JetStream
	index *index
	send  *sender
	fails *failures
	log   *slog.Logger
	room  *room
}

// errGone: the task's subscription was deleted, or is no longer a
// payload one; its tasks go with it.
var errGone = errors.New("subscription gone")

func (p *payloads) Handle(ctx context.Context, m jetstream.Msg) error {
	id := bus.TaskSub(m.Subject())
	e, ok := p.index.current(id, m.Headers())
	if !ok {
		return again(unseenWait, nil)
	}
	if e == nil || e.sub.Mode != subs.ModePayload {
		return errGone
	}
	sub := e.sub
	h := m.Headers()
	// The attempt continues the trace of the route that made the task.
	ctx = telemetry.FromNATS(ctx, h)
	seq, stored := origin(m)
	switch {
	case !sub.Active:
		// Its events are not delivered while it is off; what was queued is
		// kept for Redeliver.
		return p.dead(ctx, sub, seq, stored, m.Data(), "the subscription is switched off")
	case sub.Daily():
		return p.store(ctx, bus.Again(msgOf(m), sub.ID, bus.DigestSubject(sub.ID), attemptsOf(h), 0, time.Time{}, "digest"))
	}
	var ev event.Event
	if err := ev.UnmarshalJSON(m.Data()); err != nil {
		return fmt.Errorf("undecodable delivery task: %w", err)
	}
	attempt := attemptsOf(h) + 1
	_, err := p.deliver(ctx, sub, ev, seq, stored, m.Data(), attempt, func(next time.Time) error {
		return p.retry(ctx, sub, msgOf(m), attempt, 0, next)
	})
	return err
}

// deliver makes one attempt of an event for a payload subscription and
// stores what follows it: nothing after a success; a dead letter when the
// retries have run out or the receiver answered 410 Gone (which also
// switches the subscription off); else the next attempt, through retry.
// Only then is the attempt logged and counted. It answers whether a retry
// follows.
func (p *payloads) deliver(ctx context.Context, sub subs.Subscription, ev event.Event, seq uint64, stored time.Time, data []byte, attempt int, retry func(next time.Time) error) (bool, error) {
	o, rec := p.attempt(ctx, sub, ev, stored, attempt)
	retrying := false
	switch {
	case o.ok():
		rec.Outcome = "delivered"
		p.fails.succeeded(ctx, sub)
	case o.status == http.StatusGone:
		rec.Outcome = "disabled"
		if err := p.dead(ctx, sub, seq, stored, data, ""); err != nil {
			return false, err
		}
		p.fails.disable(ctx, sub, "the receiver answered 410 Gone")
	default:
		p.fails.failed(ctx, sub)
		wait, ok := nextAttempt(sub, attempt, o)
		if !ok {
			rec.Outcome = "dead"
			if err := p.dead(ctx, sub, seq, stored, data, ""); err != nil {
				return false, err
			}
			break
		}
		next := time.Now().Add(wait).UTC()
		rec.Outcome, rec.NextAttempt, retrying = "retry", &next, true
		if err := retry(next); err != nil {
			// The attempt is made again instead, under the same webhook-id.
			return false, again(time.Second, err)
		}
	}
	p.send.record(rec, outcomeOf(rec.Outcome))
	return retrying, nil
}

// attempt POSTs one event to a payload subscription.
func (p *payloads) attempt(ctx context.Context, sub subs.Subscription, ev event.Event, stored time.Time, attempt int) (outcome, dlog.Record) {
	return p.send.send(ctx, payloadCall(sub, ev, stored, attempt))
}

// payloadCall is the POST of one event to a payload subscription.
func payloadCall(sub subs.Subscription, ev event.Event, stored time.Time, attempt int) call {
	spec := sub.Spec()
	rec := dlog.Record{EventTypes: []string{ev.Type}, EventID: ev.ID, Attempt: attempt}
	rec.URL, _ = payload.MaskedURL(spec, ev.Type)
	c := call{sub: sub, mode: subs.ModePayload, method: http.MethodPost, timeout: sub.Timeout, since: stored, rec: rec,
		// The event's own, so receivers can drop repeats.
		msgID: bus.WebhookID(sub.ID, ev.Source, ev.ID)}
	if c.url, c.err = payload.RequestURL(spec, ev.Type); c.err == nil {
		c.body, c.err = payload.Body(spec, ev, stored)
	}
	return c
}

// retry stores a task's next attempt, to be made at at (after attempts so
// far), as a message the server holds until then.
func (p *payloads) retry(ctx context.Context, sub subs.Subscription, t *nats.Msg, attempts, deferred int, at time.Time) error {
	return p.store(ctx, retryTask(sub, t, attempts, deferred, at))
}

// retryTask is the task t again, due at at.
func retryTask(sub subs.Subscription, t *nats.Msg, attempts, deferred int, at time.Time) *nats.Msg {
	if time.Until(at) < 10*time.Millisecond {
		return bus.Again(t, sub.ID, bus.DeliverSubject(sub.ID), attempts, deferred, time.Time{}, "now")
	}
	return bus.Again(t, sub.ID, bus.RetrySubject(sub.ID, bus.RetryKey(sub.ID, t.Header)), attempts, deferred, at, "at")
}

// store stores tasks with one wait; when it cannot, the tasks they come
// from come again.
func (p *payloads) store(ctx context.Context, ts ...*nats.Msg) error {
	if err := p.room.take(ctx, ts...); err != nil {
		return err
	}
	if err := jet.PublishAll(ctx, p.js, ts); err != nil {
		return again(time.Second, fmt.Errorf("store tasks: %w", err))
	}
	return nil
}

// scheduled answers how many retries wait, for a gauge: the pending count
// of the consumer that is never read (bus.RetriesConsumer), at most 5 s old.
func (p *payloads) scheduled(deliveries jetstream.Stream) func() float64 {
	var mu sync.Mutex
	var cached float64
	var at time.Time
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) < 5*time.Second {
			return cached
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if c, err := deliveries.Consumer(ctx, bus.RetriesConsumer); err == nil {
			cached, at = float64(c.CachedInfo().NumPending), time.Now()
		}
		return cached
	}
}

// dead keeps a task whose retries ran out (or whose receiver is gone, or
// whose subscription is off) in the dead-letter stream, from where an admin
// can deliver it again. why, if given, is logged as the attempt that was
// not made.
func (p *payloads) dead(ctx context.Context, sub subs.Subscription, seq uint64, stored time.Time, data []byte, why string) error {
	d := bus.DeliveryTask(sub.ID, seq, stored, data, "")
	d.Subject = bus.DeadSubject(sub.Org, sub.ID)
	d.Header.Del(jetstream.MsgIDHeader)
	if _, err := p.js.PublishMsg(ctx, d); err != nil {
		// Kept in the queue rather than lost: it comes again.
		return again(time.Minute, fmt.Errorf("dead letter not kept: %w", err))
	}
	if why != "" {
		var ev event.Event
		_ = ev.UnmarshalJSON(data)
		p.send.record(dlog.Record{Time: time.Now().UTC(), Org: sub.Org, Subscription: sub.ID, System: sub.System,
			EventTypes: []string{ev.Type}, Mode: string(sub.Mode), EventID: ev.ID, Error: why, Outcome: "dead"}, outDead)
	}
	return nil
}

// origin answers where a task's event is in EVENTS and when it was stored.
func origin(m jetstream.Msg) (uint64, time.Time) {
	seq, _ := strconv.ParseUint(m.Headers().Get(bus.HeaderEventSeq), 10, 64)
	stored, _ := time.Parse(time.RFC3339Nano, m.Headers().Get(bus.HeaderEventTime))
	return seq, stored
}

// attemptsOf answers the attempts a task's message says were made before it.
func attemptsOf(h nats.Header) int {
	n, _ := strconv.Atoi(h.Get(bus.HeaderAttempts))
	return n
}

// msgOf is a delivered message as one to store again.
func msgOf(m jetstream.Msg) *nats.Msg {
	return &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
}

// outcomeOf is a log record's outcome as a metric's.
func outcomeOf(logged string) string {
	if logged == "delivered" {
		return outSuccess
	}
	return logged
}

// nextAttempt answers how long to wait after a failed attempt (1 is the
// first) before the next, or false when the retry schedule has run out.
func nextAttempt(sub subs.Subscription, attempt int, o outcome) (time.Duration, bool) {
	retries := sub.RetrySchedule
	if len(retries) == 0 {
		retries = DefaultRetrySchedule
	}
	if attempt > len(retries) {
		return 0, false
	}
	wait := jitter(retries[attempt-1])
	if o.retryWait > wait {
		// Honour Retry-After, but no longer than the schedule's longest wait.
		wait = min(o.retryWait, retries[len(retries)-1])
	}
	return wait, true
}

// jitter spreads a delay by ±20%, so receivers coming back are not hit by
// every retry at once.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// failures keeps a payload subscription's failing streak and switches it
// off once the streak has lasted long enough.
type failures struct {
	subs  *subs.Store
	index *index
	js    jetstream.JetStream
	log   *slog.Logger
	after time.Duration
}

// succeeded clears a failing streak.
func (f *failures) succeeded(ctx context.Context, sub subs.Subscription) {
	if st, _ := f.index.state(sub.ID); st.FailingSince.IsZero() {
		return
	}
	st, rev, err := f.subs.UpdateState(ctx, sub.ID, func(st *subs.PingState) error {
		if st.FailingSince.IsZero() {
			return subs.ErrSkip
		}
		st.FailingSince = time.Time{}
		return nil
	})
	switch {
	case err == nil:
		f.index.setState(sub.ID, knownState{st: st, rev: rev})
	case !errors.Is(err, subs.ErrSkip) && !errors.Is(err, subs.ErrNotFound):
		f.log.Warn("delivery state not updated", "subscription", sub.ID, "err", err)
	}
}

// failed starts or extends a failing streak, and switches the subscription
// off once it has lasted DisableAfter.
func (f *failures) failed(ctx context.Context, sub subs.Subscription) {
	now := time.Now()
	st, _ := f.index.state(sub.ID)
	if st.FailingSince.IsZero() {
		var rev uint64
		var err error
		st, rev, err = f.subs.UpdateState(ctx, sub.ID, func(st *subs.PingState) error {
			if !st.FailingSince.IsZero() {
				return subs.ErrSkip
			}
			st.FailingSince = now
			return nil
		})
		switch {
		case err == nil:
			// Known here at once, not when the watch brings it: a success
			// right after must find the streak to end it.
			f.index.setState(sub.ID, knownState{st: st, rev: rev})
		case errors.Is(err, subs.ErrNotFound):
			return // deleted meanwhile
		case !errors.Is(err, subs.ErrSkip):
			f.log.Warn("delivery state not updated", "subscription", sub.ID, "err", err)
			return
		}
	}
	if !st.FailingSince.IsZero() && now.Sub(st.FailingSince) >= f.after {
		f.disable(ctx, sub, fmt.Sprintf("every delivery failed for %v", f.after))
	}
}

// disable switches a subscription off and says so in the org's events, so
// that an admin can subscribe to it like to any other event.
func (f *failures) disable(ctx context.Context, sub subs.Subscription, reason string) {
	changed := false
	_, err := f.subs.Update(ctx, sub.ID, func(cur *subs.Subscription) error {
		if !cur.Active {
			return nil
		}
		cur.Active, cur.DisabledReason, cur.Updated = false, reason, time.Now().UTC()
		changed = true
		return nil
	})
	if err != nil || !changed {
		if err != nil {
			f.log.Warn("subscription not disabled", "subscription", sub.ID, "err", err)
		}
		return
	}
	f.log.Warn("subscription disabled", "org", sub.Org, "subscription", sub.ID, "reason", reason)
	now := time.Now().UTC()
	data := fmt.Appendf(nil, `{"subscription_id":%q,"system":%q,"url":%q,"reason":%q}`, sub.ID, sub.System, sub.URL, reason)
	ev := event.Event{ID: "disabled-" + sub.ID + "-" + strconv.FormatInt(now.UnixNano(), 10), Source: "/kurier/dispatcher",
		Type: DisabledType, Subject: sub.ID, Time: now.Format(time.RFC3339Nano), DataContentType: "application/json", Data: data}
	b, err := ev.MarshalJSON()
	if err == nil {
		msg := nats.NewMsg(bus.EventsSubject(sub.Org, DisabledType))
		msg.Data = b
		msg.Header.Set(jetstream.MsgIDHeader, bus.EventMsgID(sub.Org, ev.Source, ev.ID))
		_, err = f.js.PublishMsg(ctx, msg)
	}
	if err != nil {
		f.log.Warn("disabled event not published", "subscription", sub.ID, "err", err)
	}
}
