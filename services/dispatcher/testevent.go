package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/testevent"
)

// tester sends test events on admin's request, through the same calls as
// real deliveries: a ping's GET, a payload's POST in the subscription's
// format (a digest's array for a daily one), signed and timed alike. It
// touches no state: no unacked count, failing streak, cursor or retry;
// the attempt is logged with the outcome "test". A switched-off
// subscription is tested too, which is how a fix is checked before
// switching it on again. A test goes at once, past the subscription's
// rate limit and filter: it is one request a person asked for and waits
// on, and it can be made by any replica, not only the partition's owner.
type tester struct {
	pings *pinger
	send  *sender
	log   *slog.Logger
}

// testsAtOnce bounds the tests one replica makes at once; more wait in
// the subscription's buffer.
const testsAtOnce = 64

// serve answers test requests until the returned stop, which finishes
// those taken. They run on work, which a stop does not cancel.
func (t *tester) serve(work context.Context, nc *nats.Conn) (func(), error) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, testsAtOnce)
	sub, err := nc.QueueSubscribe(bus.TestEventSubject, bus.TestEventGroup, func(m *nats.Msg) {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			t.answer(work, m)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", bus.TestEventSubject, err)
	}
	return func() {
		closed := sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err == nil {
			select {
			case <-closed:
			case <-time.After(30 * time.Second):
			}
		}
		wg.Wait()
	}, nil
}

func (t *tester) answer(ctx context.Context, m *nats.Msg) {
	var req testevent.Request
	var r testevent.Reply
	if err := json.Unmarshal(m.Data, &req); err != nil {
		r.Refused = "undecodable test request"
	} else {
		r = t.test(ctx, req.Subscription)
	}
	b, _ := json.Marshal(r)
	if err := m.Respond(b); err != nil {
		t.log.Warn("test event made but not answered", "subscription", req.Subscription.ID, "err", err)
	}
}

// test sends a test event through sub and tells how the receiver answered.
func (t *tester) test(ctx context.Context, sub subs.Subscription) testevent.Reply {
	if sub.Mode != subs.ModePing && sub.Mode != subs.ModePayload {
		return testevent.Reply{Refused: "a " + string(sub.Mode) + " subscription makes no requests"}
	}
	now := time.Now().UTC()
	id := "test-" + nuid.Next()
	data, _ := json.Marshal(map[string]string{"subscription_id": sub.ID, "message": "a test event, sent on request"})
	ev := event.Event{ID: id, Source: "/kurier/test", Type: testevent.Type, Subject: sub.ID,
		Time: now.Format(time.RFC3339Nano), DataContentType: "application/json", Data: data}
	var c call
	switch {
	case sub.Mode == subs.ModePing:
		c = t.pings.request(sub, "test_"+id, time.Time{})
	case sub.Daily():
		c = digestCall(sub, []event.Event{ev}, []time.Time{now}, "test_"+id, time.Time{})
	default:
		c = payloadCall(sub, ev, now, 1)
	}
	c.test, c.rec.EventTypes, c.rec.EventID = true, []string{testevent.Type}, id
	o, rec := t.send.send(ctx, c)
	rec.Outcome = "test"
	// Logged, not counted: the figures are of real deliveries.
	t.send.journal.add(rec)
	return testevent.Reply{EventID: id, Method: c.method, URL: rec.URL, Status: o.status, Error: rec.Error,
		LatencyMS: rec.LatencyMS, Response: string(o.body)}
}
