package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/payload"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/webhook"
)

// Payload delivery: every matching event becomes a task on the
// subscription's own subject in the DELIVERIES work queue, and every
// subscription has its own durable consumer on it. So a slow or dead
// receiver holds up only its own tasks (at most max_in_flight of them, one
// when ordered), and a retry is the task coming back after its delay.

// DefaultRetrySchedule is the delays between attempts unless a subscription
// has its own.
var DefaultRetrySchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}

// responseKeep is how much of an answer's body the log keeps.
const responseKeep = 4 << 10

// DisabledType is the operational event published into an org's EVENTS
// when Kurier switches a failing subscription off.
const DisabledType = "kurier.subscription.disabled"

// task publishes the delivery task of an event for a payload subscription.
// The message id makes a redelivered event's task a duplicate.
func (s *Service) task(ctx context.Context, sub subs.Subscription, m jetstream.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return err
	}
	t := bus.DeliveryTask(sub.ID, md.Sequence.Stream, md.Timestamp, m.Data(), "")
	if _, err := s.conn.JS.PublishMsg(ctx, t); err != nil && !bus.IsDuplicate(err) {
		return fmt.Errorf("delivery task: %w", err)
	}
	return nil
}

// deliverers runs one consumer per active payload subscription in this
// replica, started, changed and stopped as the index learns of changes.
type deliverers struct {
	s       *Service
	mu      sync.Mutex             // guards running and locks
	running map[string]*running    // subscription id -> its consumers
	locks   map[string]*sync.Mutex // one reconcile at a time per subscription
	changed chan string
	slots   chan struct{} // deliveries at once in this replica
}

// reconcilers work through changed subscriptions at once: with thousands of
// subscriptions, setting up their consumers one by one would take minutes.
const reconcilers = 16

type running struct {
	key  string // the settings the consumer was made with
	stop func()
}

func newDeliverers(s *Service) *deliverers {
	return &deliverers{s: s, running: map[string]*running{}, locks: map[string]*sync.Mutex{},
		changed: make(chan string, 1024), slots: make(chan struct{}, 1024)}
}

// notice queues a subscription for reconciling; it never blocks the watch.
func (d *deliverers) notice(id string) {
	select {
	case d.changed <- id:
	default:
		go func() { d.changed <- id }()
	}
}

// run reconciles until ctx ends, then stops every consumer and waits for
// the deliveries in flight.
func (d *deliverers) run(ctx context.Context, work context.Context, wg *sync.WaitGroup) {
	for _, e := range d.s.index.all() {
		d.notice(e.sub.ID)
	}
	var workers sync.WaitGroup
	for range reconcilers {
		workers.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case id := <-d.changed:
					d.reconcile(ctx, work, wg, id)
				}
			}
		})
	}
	<-ctx.Done()
	workers.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, r := range d.running {
		r.stop()
		delete(d.running, id)
	}
}

// lock takes a subscription's reconcile lock.
func (d *deliverers) lock(id string) func() {
	d.mu.Lock()
	l := d.locks[id]
	if l == nil {
		l = &sync.Mutex{}
		d.locks[id] = l
	}
	d.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (d *deliverers) get(id string) *running {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running[id]
}

// set records a subscription's consumers; nil: none.
func (d *deliverers) set(id string, r *running) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r == nil {
		delete(d.running, id)
	} else {
		d.running[id] = r
	}
}

func consumerName(id string) string { return "deliver-" + id }

func (d *deliverers) reconcile(ctx, work context.Context, wg *sync.WaitGroup, id string) {
	defer d.lock(id)()
	e := d.s.index.get(id)
	r := d.get(id)
	if e == nil || e.sub.Mode != subs.ModePayload || !e.sub.Active {
		if r != nil {
			r.stop()
			d.set(id, nil)
		}
		if e == nil {
			// Deleted: its consumer and tasks go too. Every replica tries;
			// all but the first find nothing to do.
			_ = d.s.conn.JS.DeleteConsumer(ctx, bus.StreamDeliveries, consumerName(id))
			_ = d.s.conn.JS.DeleteConsumer(ctx, bus.StreamEvents, consumerName(id))
			if st, err := d.s.conn.JS.Stream(ctx, bus.StreamDeliveries); err == nil {
				_ = st.Purge(ctx, jetstream.WithPurgeSubject(bus.DeliverSubject(id)))
			}
		}
		return
	}
	sub := e.sub
	key := fmt.Sprint(sub.MaxInFlight, sub.Timeout, sub.Ordered, sub.Daily(), sub.EventTypes)
	if r != nil && r.key == key {
		return
	}
	if r != nil {
		r.stop()
		d.set(id, nil)
	}
	retry := func(err error) {
		d.s.log.Warn("delivery consumer not started, trying again", "subscription", id, "err", err)
		time.AfterFunc(time.Second, func() { d.notice(id) })
	}
	// Tasks: every event of a concurrent subscription, and redeliveries.
	tasks, err := d.s.conn.JS.CreateOrUpdateConsumer(ctx, bus.StreamDeliveries, jetstream.ConsumerConfig{
		Durable:       consumerName(id),
		Description:   "Payload deliveries of subscription " + id,
		FilterSubject: bus.DeliverSubject(id),
		AckPolicy:     jetstream.AckExplicitPolicy,
		// Longer than a request may take, so one in flight is not sent twice.
		AckWait:       sub.Timeout + 5*time.Second,
		MaxAckPending: pendingOf(sub),
		MaxDeliver:    -1,
	})
	if err != nil {
		retry(err)
		return
	}
	if sub.Daily() {
		// Nothing takes a daily subscription's tasks but its digest.
		d.set(id, &running{key: key, stop: func() {}})
		return
	}
	var stops []func()
	if sub.Ordered {
		// In order means in EVENTS' order: an ordered subscription reads its
		// events straight from the stream, one at a time, so neither
		// concurrent dispatching nor retries can reorder them.
		var filters []string
		for _, t := range sub.EventTypes {
			filters = append(filters, bus.EventsSubject(sub.Org, t))
		}
		from := sub.Created
		events, err := d.s.conn.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
			Durable:        consumerName(id),
			Description:    "Ordered payload deliveries of subscription " + id,
			FilterSubjects: filters,
			DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
			OptStartTime:   &from,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        sub.Timeout + 5*time.Second,
			MaxAckPending:  1,
			MaxDeliver:     -1,
		})
		if err != nil {
			retry(err)
			return
		}
		stop, err := d.consume(events, 1, id, work, wg)
		if err != nil {
			retry(err)
			return
		}
		stops = append(stops, stop)
	} else {
		// Switched from ordered: its events consumer has no more use.
		_ = d.s.conn.JS.DeleteConsumer(ctx, bus.StreamEvents, consumerName(id))
	}
	stop, err := d.consume(tasks, pendingOf(sub), id, work, wg)
	if err != nil {
		for _, s := range stops {
			s()
		}
		retry(err)
		return
	}
	stops = append(stops, stop)
	d.set(id, &running{key: key, stop: func() {
		for _, s := range stops {
			s()
		}
	}})
}

// consume delivers what c hands out, n at a time.
func (d *deliverers) consume(c jetstream.Consumer, n int, id string, work context.Context, wg *sync.WaitGroup) (func(), error) {
	cc, err := c.Consume(func(m jetstream.Msg) {
		d.slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-d.slots }()
			// The subscription as it is now, not as it was when consuming began.
			cur := d.s.index.get(id)
			if cur == nil || !cur.sub.Active {
				_ = m.NakWithDelay(time.Second)
				return
			}
			d.s.deliver(work, cur.sub, m)
		})
		// A pull request that meets a full MaxAckPending can sit until it
		// expires; short requests bound that stall (measured: the tail of
		// bench deliver at 100 subscriptions fell from 31 s to 8 s).
	}, jetstream.PullMaxMessages(n), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return nil, err
	}
	return func() { cc.Drain(); <-cc.Closed() }, nil
}

// pendingOf is how many of a subscription's tasks may be out at once: its
// in-flight limit, or a whole digest.
func pendingOf(sub subs.Subscription) int {
	switch {
	case sub.Daily():
		return digestMax
	case sub.Ordered:
		return 1
	}
	return max(sub.MaxInFlight, 1)
}

// outcome is what one attempt came to.
type outcome struct {
	status    int
	err       error
	retryWait time.Duration // the receiver's Retry-After
	body      []byte
}

func (o outcome) ok() bool { return o.err == nil && o.status >= 200 && o.status < 300 }

// transient failures are retried but do not count towards disabling: the
// receiver said "later" or could not be reached.
func (o outcome) transient() bool {
	if o.err != nil {
		return true
	}
	switch o.status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// deliver makes one attempt of a task and decides what follows.
func (s *Service) deliver(ctx context.Context, sub subs.Subscription, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	attempt := int(md.NumDelivered)
	var ev event.Event
	if err := ev.UnmarshalJSON(m.Data()); err != nil {
		s.log.Error("undecodable delivery task dropped", "subscription", sub.ID, "err", err)
		_ = m.Term()
		return
	}
	seq, stored := origin(m, md)
	// The same id on every attempt, so receivers can drop repeats.
	msgID := "msg_" + sub.ID + "_" + strconv.FormatUint(seq, 10)
	spec := sub.Spec()
	rec := dlog.Record{Org: sub.Org, Subscription: sub.ID, System: sub.System, EventTypes: []string{ev.Type},
		Mode: string(sub.Mode), EventID: ev.ID, Attempt: attempt}
	rec.URL, _ = payload.MaskedURL(spec, ev.Type)

	start := time.Now()
	rec.Time = start.UTC()
	o := s.post(ctx, sub, spec, ev, stored, msgID, start)
	rec.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	rec.Status, rec.Response = o.status, string(o.body)
	if o.err != nil {
		rec.Error = describe(o.err)
	}

	switch {
	case o.ok():
		rec.Outcome = "delivered"
		_ = m.Ack()
		s.succeeded(ctx, sub)
	case o.status == http.StatusGone:
		rec.Outcome = "disabled"
		s.dead(ctx, sub, m, seq, stored)
		s.disable(ctx, sub, "the receiver answered 410 Gone")
	default:
		if wait, ok := nextAttempt(sub, attempt, o); ok {
			next := time.Now().Add(wait).UTC()
			rec.Outcome, rec.NextAttempt = "retry", &next
			_ = m.NakWithDelay(wait)
		} else {
			rec.Outcome = "dead"
			s.dead(ctx, sub, m, seq, stored)
		}
		if !o.transient() {
			s.failed(ctx, sub)
		}
	}
	s.logs.Go(func() {
		if err := dlog.Append(ctx, s.conn.JS, rec); err != nil {
			s.log.Warn("delivery not logged", "subscription", sub.ID, "err", err)
		}
	})
}

// post makes the request of one event.
func (s *Service) post(ctx context.Context, sub subs.Subscription, spec payload.Spec, ev event.Event, stored time.Time, msgID string, now time.Time) outcome {
	url, err := payload.RequestURL(spec, ev.Type)
	if err != nil {
		return outcome{err: err}
	}
	body, err := payload.Body(spec, ev, stored)
	if err != nil {
		return outcome{err: err}
	}
	return s.send(ctx, sub, url, body, msgID, now)
}

// send POSTs a signed body with the subscription's headers.
func (s *Service) send(ctx context.Context, sub subs.Subscription, url string, body []byte, msgID string, now time.Time) outcome {
	ctx, cancel := context.WithTimeout(ctx, sub.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return outcome{err: err}
	}
	for _, h := range sub.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	if err := webhook.Sign(req.Header, msgID, now, body, sub.Secrets(now)...); err != nil {
		return outcome{err: err}
	}
	resp, err := s.payloadClient.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	kept, _ := io.ReadAll(io.LimitReader(resp.Body, responseKeep))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	o := outcome{status: resp.StatusCode, body: kept}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 {
			o.retryWait = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			o.retryWait = time.Until(t)
		}
	}
	return o
}

// origin answers where a delivered event is in EVENTS and when it was
// stored: a task says so in its headers, an event read from EVENTS is there.
func origin(m jetstream.Msg, md *jetstream.MsgMetadata) (uint64, time.Time) {
	if v := m.Headers().Get(bus.HeaderEventSeq); v != "" {
		seq, _ := strconv.ParseUint(v, 10, 64)
		stored, _ := time.Parse(time.RFC3339Nano, m.Headers().Get(bus.HeaderEventTime))
		return seq, stored
	}
	return md.Sequence.Stream, md.Timestamp
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

// dead keeps a task whose retries ran out (or whose receiver is gone) in
// the dead-letter stream, then removes it from the queue.
func (s *Service) dead(ctx context.Context, sub subs.Subscription, m jetstream.Msg, seq uint64, stored time.Time) {
	d := bus.DeliveryTask(sub.ID, seq, stored, m.Data(), "")
	d.Subject = bus.DeadSubject(sub.Org, sub.ID)
	d.Header.Del(jetstream.MsgIDHeader)
	if _, err := s.conn.JS.PublishMsg(ctx, d); err != nil {
		// Kept in the queue rather than lost: it comes again.
		s.log.Warn("dead letter not kept, the task stays", "subscription", sub.ID, "err", err)
		_ = m.NakWithDelay(time.Minute)
		return
	}
	_ = m.Term()
}

// succeeded clears a failing streak.
func (s *Service) succeeded(ctx context.Context, sub subs.Subscription) {
	if st, _ := s.index.state(sub.ID); st.FailingSince.IsZero() {
		return
	}
	if _, _, err := s.subs.UpdateState(ctx, sub.ID, func(st *subs.PingState) error {
		if st.FailingSince.IsZero() {
			return subs.ErrSkip
		}
		st.FailingSince = time.Time{}
		return nil
	}); err != nil && !errors.Is(err, subs.ErrSkip) {
		s.log.Warn("delivery state not updated", "subscription", sub.ID, "err", err)
	}
}

// failed starts or extends a failing streak, and switches the subscription
// off once it has lasted DisableAfter.
func (s *Service) failed(ctx context.Context, sub subs.Subscription) {
	now := time.Now()
	st, _ := s.index.state(sub.ID)
	if st.FailingSince.IsZero() {
		var err error
		st, _, err = s.subs.UpdateState(ctx, sub.ID, func(st *subs.PingState) error {
			if !st.FailingSince.IsZero() {
				return subs.ErrSkip
			}
			st.FailingSince = now
			return nil
		})
		if err != nil && !errors.Is(err, subs.ErrSkip) {
			s.log.Warn("delivery state not updated", "subscription", sub.ID, "err", err)
			return
		}
	}
	if !st.FailingSince.IsZero() && now.Sub(st.FailingSince) >= s.cfg.DisableAfter {
		s.disable(ctx, sub, fmt.Sprintf("every delivery failed for %v", s.cfg.DisableAfter))
	}
}

// disable switches a subscription off and says so in the org's events, so
// that an admin can subscribe to it like to any other event.
func (s *Service) disable(ctx context.Context, sub subs.Subscription, reason string) {
	changed := false
	_, err := s.subs.Update(ctx, sub.ID, func(cur *subs.Subscription) error {
		if !cur.Active {
			return nil
		}
		cur.Active, cur.DisabledReason, cur.Updated = false, reason, time.Now().UTC()
		changed = true
		return nil
	})
	if err != nil || !changed {
		if err != nil {
			s.log.Warn("subscription not disabled", "subscription", sub.ID, "err", err)
		}
		return
	}
	s.log.Warn("subscription disabled", "org", sub.Org, "subscription", sub.ID, "reason", reason)
	now := time.Now().UTC()
	data := fmt.Appendf(nil, `{"subscription_id":%q,"system":%q,"url":%q,"reason":%q}`, sub.ID, sub.System, sub.URL, reason)
	ev := event.Event{ID: "disabled-" + sub.ID + "-" + strconv.FormatInt(now.UnixNano(), 10), Source: "/kurier/dispatcher",
		Type: DisabledType, Subject: sub.ID, Time: now.Format(time.RFC3339Nano), DataContentType: "application/json", Data: data}
	b, err := ev.MarshalJSON()
	if err == nil {
		msg := nats.NewMsg(bus.EventsSubject(sub.Org, DisabledType))
		msg.Data = b
		msg.Header.Set(jetstream.MsgIDHeader, bus.EventMsgID(sub.Org, ev.ID))
		_, err = s.conn.JS.PublishMsg(ctx, msg)
	}
	if err != nil {
		s.log.Warn("disabled event not published", "subscription", sub.ID, "err", err)
	}
}
