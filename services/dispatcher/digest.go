package dispatcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/payload"
	"kurier.dev/services/internal/subs"
)

// digests sends daily digests (Scopevisio's "täglich"): a daily
// subscription's tasks gather on its digest subject, which nothing
// consumes; at the digest time a timer fires, and whichever replica gets
// it reads everything waiting through a consumer made for the digest
// alone, sends it as one POST of a JSON array (or several, past
// digestMax), and sets the next day's timer.
type digests struct {
	js     jetstream.JetStream
	index  *index
	send   *sender
	fails  *failures
	limits *limits
	log    *slog.Logger
}

// digestMax bounds one POST; more waiting goes in further POSTs at once.
const digestMax = 10000

func (d *digests) Handle(ctx context.Context, m jetstream.Msg) error {
	id := bus.DigestDueSub(m.Subject())
	e := d.index.get(id)
	if e == nil || !e.sub.Daily() || !e.sub.Active {
		return nil
	}
	sub := e.sub
	if err := subs.ArmDigest(ctx, d.js, sub, time.Now()); err != nil {
		d.log.Warn("next digest not scheduled", "subscription", id, "err", err)
	}
	md, err := m.Metadata()
	if err != nil {
		return errNoMetadata
	}
	// One consumer per digest being sent, so consumers do not grow with
	// daily subscriptions; the due message is out to one replica at a
	// time, so no two digests of a subscription overlap.
	cfg := digestConsumer(id, 5*time.Minute)
	_ = d.js.DeleteConsumer(ctx, bus.StreamDeliveries, cfg.Durable) // one left by a replica that died, or by undigest
	cons, err := d.js.CreateConsumer(ctx, bus.StreamDeliveries, cfg)
	if err != nil {
		return again(5*time.Second, fmt.Errorf("digest queue: %w", err))
	}
	defer func() { _ = d.js.DeleteConsumer(context.WithoutCancel(ctx), bus.StreamDeliveries, cfg.Durable) }()
	for part := 0; ; part++ {
		// Each POST counts against the subscription's rate.
		if err := await(ctx, d.limits, sub); err != nil {
			return again(time.Second, fmt.Errorf("digest waiting for its rate: %w", err))
		}
		tasks, err := fetchAll(cons, digestMax)
		if err != nil {
			return again(5*time.Second, fmt.Errorf("digest not gathered: %w", err))
		}
		if len(tasks) == 0 {
			return nil
		}
		wait, sent, retry := d.post(ctx, sub, tasks, md.Sequence.Stream, part, int(md.NumDelivered))
		switch {
		case sent && len(tasks) < digestMax:
			return nil
		case sent:
			continue
		case retry:
			return again(wait, nil) // the digest is tried again then
		default:
			return nil // given up for today: tomorrow's digest takes the tasks
		}
	}
}

// digestCall is the POST of a digest of events (stored when stored) to a
// daily subscription; its lag counted from since (none if zero).
func digestCall(sub subs.Subscription, events []event.Event, stored []time.Time, msgID string, since time.Time) call {
	spec := sub.Spec()
	c := call{sub: sub, mode: subs.ModePayload, method: http.MethodPost, timeout: sub.Timeout, since: since, msgID: msgID,
		rec: dlog.Record{EventTypes: sub.EventTypes}}
	c.rec.URL, _ = payload.MaskedURL(spec, "digest")
	if c.body, c.err = payload.Digest(spec, events, stored); c.err == nil {
		c.url, c.err = payload.RequestURL(spec, "digest")
	}
	return c
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

// post sends one digest and settles its tasks. It answers whether the
// digest went through and, when not, whether and after what wait to try
// again.
func (d *digests) post(ctx context.Context, sub subs.Subscription, tasks []jetstream.Msg, dueSeq uint64, part, attempt int) (wait time.Duration, sent, retry bool) {
	// In EVENTS' order: the router stores the tasks of events that come
	// close together side by side, not always in order.
	slices.SortStableFunc(tasks, func(a, b jetstream.Msg) int {
		sa, _ := origin(a)
		sb, _ := origin(b)
		return cmp.Compare(sa, sb)
	})
	events := make([]event.Event, 0, len(tasks))
	stored := make([]time.Time, 0, len(tasks))
	var oldest time.Time
	for _, t := range tasks {
		var ev event.Event
		if err := ev.UnmarshalJSON(t.Data()); err != nil {
			settle(d.log, t, fmt.Errorf("undecodable delivery task of %s: %w", sub.ID, err))
			continue
		}
		_, at := origin(t)
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
		events, stored = append(events, ev), append(stored, at)
	}
	// The same id on every attempt of this digest.
	c := digestCall(sub, events, stored, "digest_"+sub.ID+"_"+strconv.FormatUint(dueSeq, 10)+"_"+strconv.Itoa(part), oldest)
	c.rec.EventID, c.rec.Attempt = "digest of "+strconv.Itoa(len(events))+" events", attempt
	o, rec := d.send.send(ctx, c)
	if o.ok() {
		rec.Outcome = "delivered"
		for _, t := range tasks {
			settle(d.log, t, nil)
		}
		d.fails.succeeded(ctx, sub)
		d.send.record(rec, outSuccess)
		return 0, true, false
	}
	// The tasks wait for the next attempt; the due message brings it.
	for _, t := range tasks {
		settle(d.log, t, again(0, nil))
	}
	d.fails.failed(ctx, sub)
	rec.Outcome = "retry"
	wait, retry = nextAttempt(sub, attempt, o)
	if retry {
		next := time.Now().Add(wait).UTC()
		rec.NextAttempt = &next
	}
	d.send.record(rec, outRetry)
	return wait, false, retry
}

// digestConsumer is the consumer that reads a subscription's digest
// subject, for its digest or to move the tasks out, each taking them for
// ackWait.
func digestConsumer(sub string, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: "digest-" + sub, FilterSubject: bus.DigestSubject(sub), AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: ackWait, MaxAckPending: -1, InactiveThreshold: 10 * time.Minute,
	}
}

// undigestAfter is how long after a subscription stopped being daily its
// digest subject is looked at once more: a replica that had not seen the
// change yet may have gathered a task there meanwhile.
const undigestAfter = 5 * time.Second

// undigest moves the tasks gathered for a digest of a subscription that
// is no longer daily into its partition, where they are delivered as any
// other (or go to its dead letters if it is off): no digest will send
// them, and nothing else reads the digest subject.
func (p *payloads) undigest(ctx context.Context, sub subs.Subscription) error {
	info, err := p.room.stream.Info(ctx, jetstream.WithSubjectFilter(bus.DigestSubject(sub.ID)))
	if err != nil {
		return fmt.Errorf("digest tasks not counted: %w", err)
	}
	if len(info.State.Subjects) == 0 {
		return nil
	}
	return p.moveDigest(ctx, sub)
}

// moveDigest is undigest for a subscription known to have gathered tasks.
func (p *payloads) moveDigest(ctx context.Context, sub subs.Subscription) error {
	// The digest's name: a work-queue stream refuses two consumers of one
	// subject, and each removes one the other left behind.
	cfg := digestConsumer(sub.ID, time.Minute)
	cons, err := p.js.CreateOrUpdateConsumer(ctx, bus.StreamDeliveries, cfg)
	if err != nil {
		return fmt.Errorf("digest tasks not read: %w", err)
	}
	defer func() { _ = p.js.DeleteConsumer(context.WithoutCancel(ctx), bus.StreamDeliveries, cfg.Durable) }()
	for {
		tasks, err := fetchAll(cons, 1000)
		if err != nil {
			return fmt.Errorf("digest tasks not read: %w", err)
		}
		if len(tasks) == 0 {
			return nil
		}
		moved := make([]*nats.Msg, len(tasks))
		for i, t := range tasks {
			moved[i] = bus.Again(msgOf(t), sub.ID, bus.DeliverSubject(sub.ID), attemptsOf(t.Headers()), 0, time.Time{}, "undigest")
		}
		err = p.store(ctx, moved...)
		for _, t := range tasks {
			// Left in place, they are moved at the next change.
			settle(p.log, t, err)
		}
		if err != nil {
			return err
		}
	}
}
