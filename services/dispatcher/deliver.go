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
	"strings"
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

// DefaultRetrySchedule is the delays between attempts unless a subscription
// has its own.
var DefaultRetrySchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}

// responseKeep is how much of an answer's body the log keeps.
const responseKeep = 4 << 10

// DisabledType is the operational event published into an org's EVENTS
// when Kurier switches a failing subscription off.
const DisabledType = "kurier.subscription.disabled"

// task publishes the delivery task of an event for a payload subscription,
// on its lane when it has one. The message id makes a redelivered event's
// task a duplicate.
func (s *Service) task(ctx context.Context, sub subs.Subscription, m jetstream.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return err
	}
	t := bus.DeliveryTask(sub.ID, md.Sequence.Stream, md.Timestamp, m.Data(), "")
	if s.laned(sub) {
		t.Subject = bus.LaneSubject(sub.ID)
	}
	if _, err := s.conn.JS.PublishMsg(ctx, t); err != nil && !bus.IsDuplicate(err) {
		return fmt.Errorf("delivery task: %w", err)
	}
	return nil
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
	attempt, wait := attemptOf(m, md)
	if wait > 0 {
		_ = m.NakWithDelay(wait)
		return
	}
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
			if strings.HasPrefix(m.Subject(), bus.DeliverSubject("")) {
				// Retries wait on the subscription's lane, not in the way
				// of the others on the shared consumer.
				s.fanout.toLane(ctx, sub, []heldTask{{m: m, attempts: attempt, notBefore: next}})
			} else {
				_ = m.NakWithDelay(wait)
			}
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

// attemptOf answers which attempt a delivered task is (1 is the first),
// counting those made before it moved to a lane, or how long it must wait
// before the next. A moved task's first delivery is only that wait when
// it was stored before its time.
func attemptOf(m jetstream.Msg, md *jetstream.MsgMetadata) (int, time.Duration) {
	n := int(md.NumDelivered)
	prior, _ := strconv.Atoi(m.Headers().Get(bus.HeaderAttempts))
	notBefore, err := time.Parse(time.RFC3339Nano, m.Headers().Get(bus.HeaderNotBefore))
	if err != nil || !notBefore.After(md.Timestamp) {
		return prior + n, 0
	}
	if n == 1 {
		return 0, max(time.Until(notBefore), time.Millisecond)
	}
	return prior + n - 1, 0
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
