package dispatcher

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/payload"
	"kurier.dev/services/internal/subs"
)

// Daily digests (Scopevisio's "täglich"): a daily subscription's tasks
// wait in its queue, which nothing consumes continuously; at the digest
// time a timer fires, and whichever replica gets it sends everything
// waiting as one POST of a JSON array, then sets the next day's timer.

// digestMax bounds one POST; more waiting goes in further POSTs at once.
const digestMax = 10000

func (s *Service) handleDigest(ctx context.Context, m jetstream.Msg) {
	id := strings.TrimPrefix(m.Subject(), "kurier.notify.digested.")
	e := s.index.get(id)
	if e == nil || !e.sub.Daily() || !e.sub.Active {
		_ = m.Ack()
		return
	}
	sub := e.sub
	if err := subs.ArmDigest(ctx, s.conn.JS, sub, time.Now()); err != nil {
		s.log.Warn("next digest not scheduled", "subscription", id, "err", err)
	}
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	cons, err := s.conn.JS.Consumer(ctx, bus.StreamDeliveries, laneConsumer(id))
	if err != nil {
		s.log.Warn("digest queue not found, trying again", "subscription", id, "err", err)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	for part := 0; ; part++ {
		tasks, err := fetchAll(cons, digestMax)
		if err != nil {
			s.log.Warn("digest not gathered, trying again", "subscription", id, "err", err)
			_ = m.NakWithDelay(5 * time.Second)
			return
		}
		if len(tasks) == 0 {
			_ = m.Ack()
			return
		}
		if wait, sent, again := s.sendDigest(ctx, sub, tasks, md.Sequence.Stream, part, int(md.NumDelivered)); !sent {
			if again {
				_ = m.NakWithDelay(wait) // the digest is tried again then
			} else {
				_ = m.Ack() // given up for today: tomorrow's digest takes the tasks
			}
			return
		}
		if len(tasks) < digestMax {
			_ = m.Ack()
			return
		}
	}
}

// fetchAll takes up to max waiting tasks.
func fetchAll(cons jetstream.Consumer, max int) ([]jetstream.Msg, error) {
	var out []jetstream.Msg
	for len(out) < max {
		batch, err := cons.FetchNoWait(min(max-len(out), 1000))
		if err != nil {
			return out, err
		}
		n := len(out)
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return out, err
		}
		if len(out) == n {
			break
		}
	}
	return out, nil
}

// sendDigest POSTs one digest and settles its tasks. It answers whether the
// digest went through and, when not, whether and after what wait to try
// again.
func (s *Service) sendDigest(ctx context.Context, sub subs.Subscription, tasks []jetstream.Msg, dueSeq uint64, part, attempt int) (wait time.Duration, sent, again bool) {
	events := make([]event.Event, 0, len(tasks))
	stored := make([]time.Time, 0, len(tasks))
	for _, t := range tasks {
		var ev event.Event
		md, err := t.Metadata()
		if err == nil {
			err = ev.UnmarshalJSON(t.Data())
		}
		if err != nil {
			s.log.Error("undecodable delivery task dropped", "subscription", sub.ID, "err", err)
			_ = t.Term()
			continue
		}
		_, at := origin(t, md)
		events, stored = append(events, ev), append(stored, at)
	}
	now := time.Now()
	spec := sub.Spec()
	rec := dlog.Record{Time: now.UTC(), Org: sub.Org, Subscription: sub.ID, System: sub.System, EventTypes: sub.EventTypes,
		Mode: string(sub.Mode), EventID: "digest of " + strconv.Itoa(len(events)) + " events", Attempt: attempt}
	rec.URL, _ = payload.MaskedURL(spec, "digest")
	var o outcome
	body, err := payload.Digest(spec, events, stored)
	if err != nil {
		o = outcome{err: err}
	} else {
		url, err := payload.RequestURL(spec, "digest")
		if err != nil {
			o = outcome{err: err}
		} else {
			// The same id on every attempt of this digest.
			o = s.send(ctx, sub, url, body, "digest_"+sub.ID+"_"+strconv.FormatUint(dueSeq, 10)+"_"+strconv.Itoa(part), now)
		}
	}
	rec.LatencyMS = float64(time.Since(now).Microseconds()) / 1000
	rec.Status, rec.Response = o.status, string(o.body)
	if o.err != nil {
		rec.Error = describe(o.err)
	}
	defer s.logs.Go(func() {
		if err := dlog.Append(ctx, s.conn.JS, rec); err != nil {
			s.log.Warn("delivery not logged", "subscription", sub.ID, "err", err)
		}
	})
	if o.ok() {
		rec.Outcome = "delivered"
		for _, t := range tasks {
			_ = t.Ack()
		}
		s.succeeded(ctx, sub)
		return 0, true, false
	}
	// The tasks wait for the next attempt; the due message brings it.
	for _, t := range tasks {
		_ = t.Nak()
	}
	if !o.transient() {
		s.failed(ctx, sub)
	}
	rec.Outcome = "retry"
	wait, again = nextAttempt(sub, attempt, o)
	if again {
		next := time.Now().Add(wait).UTC()
		rec.NextAttempt = &next
	}
	return wait, false, again
}
