package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// Queue subscriptions get each matching event as a queue message; one too
// large goes thin; an event handled twice is one message; a full queue
// drops the event and logs it.
func TestQueueDelivery(t *testing.T) {
	ctx := context.Background()
	l := bus.DefaultLimits()
	l.QueueMaxMsgs = 3
	conn, store, q, sub, svc := startQueueSub(t, l)

	publish := func(id, typ string, data string) {
		t.Helper()
		e := event.Event{ID: id, Source: "/erp", Type: typ, Subject: "INV-" + id, Time: "2026-11-23T10:00:00Z", Data: json.RawMessage(data)}
		b, _ := e.MarshalJSON()
		m := nats.NewMsg(bus.EventsSubject("acme", typ))
		m.Data = b
		if _, err := conn.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	waitDepth := func(n int) []queues.Message {
		t.Helper()
		var msgs []queues.Message
		natstest.WaitForErr(t, 10*time.Second, fmt.Sprintf("%d messages in the queue", n), func() error {
			var err error
			if msgs, err = store.Peek(ctx, q.ID, 100); err != nil {
				t.Fatal(err)
			}
			if len(msgs) < n {
				return fmt.Errorf("%d there", len(msgs))
			}
			return nil
		})
		return msgs
	}

	publish("1", "invoice.changed", `{"total":1.50,"note":"<a & b>"}`)
	publish("2", "quote.changed", `{}`) // not subscribed
	big := `{"text":"` + strings.Repeat("ä", queues.MaxContent) + `"}`
	publish("3", "invoice.changed", big)
	// Events are handled concurrently, so the two may come in either order.
	msgs := waitDepth(2)
	got := map[string]bool{}
	for _, m := range msgs {
		got[string(m.Content)] = true
	}
	if len(msgs) != 2 || !got[`{"type":"invoice.changed","id":"1","subject":"INV-1","time":"2026-11-23T10:00:00Z","data":{"total":1.50,"note":"<a & b>"}}`] {
		t.Fatalf("messages: %v", got)
	}
	if !got[`{"type":"invoice.changed","id":"3","subject":"INV-3","time":"2026-11-23T10:00:00Z"}`] {
		t.Fatalf("the large event's message is not the thin one: %.300v", got)
	}

	// The same event handled again, as after a redelivery: no second message.
	putFirstAgain(t, conn, svc, sub)
	if msgs := waitDepth(2); len(msgs) != 2 {
		t.Fatalf("a redelivered event made another message: %d", len(msgs))
	}

	// Full at three: of two more events, handled at once, one gets the
	// last place and the other is dropped and logged.
	publish("4", "invoice.changed", `{}`)
	publish("5", "invoice.changed", `{}`)
	var rec dlog.Record
	waitLog(t, conn, sub.ID, func(recs []dlog.Record) bool {
		i := slices.IndexFunc(recs, func(r dlog.Record) bool { return r.Outcome == "dropped" })
		if i >= 0 {
			rec = recs[i]
		}
		return i >= 0
	})
	kept := map[string]string{"4": `"id":"5"`, "5": `"id":"4"`}[rec.EventID]
	if kept == "" || rec.Outcome != "dropped" || rec.Mode != "queue" || !strings.Contains(rec.Error, "as many messages") {
		t.Fatalf("log of the dropped event: %+v", rec)
	}
	if msgs := waitDepth(3); len(msgs) != 3 || !strings.Contains(string(msgs[2].Content), kept) {
		t.Fatalf("after the queue filled: %+v", msgs)
	}
}

// waitLog waits until done says the delivery log of a subscription, all
// its records oldest first, is as it should be, for at most 10 s.
func waitLog(t *testing.T, conn *jet.Conn, sub string, done func([]dlog.Record) bool) []dlog.Record {
	t.Helper()
	var recs []dlog.Record
	natstest.WaitForErr(t, 10*time.Second, "the delivery log of "+sub, func() error {
		recs = nil
		_, _, err := jet.Read(context.Background(), conn.JS, bus.StreamDeliveryLog,
			jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.DeliveryLogSubject("acme", sub)}}, 1000,
			func(m jetstream.Msg) (bool, error) {
				r, err := dlog.Decode(m)
				recs = append(recs, r)
				return false, err
			})
		if err != nil {
			t.Fatal(err)
		}
		if !done(recs) {
			return fmt.Errorf("%+v", recs)
		}
		return nil
	})
	return recs
}

// An event put into a queue leaves a record in the delivery log, as a
// payload delivery does: mode queue, the event, outcome delivered. The
// same event handled again is queued and logged once.
func TestQueueDeliveriesLogged(t *testing.T) {
	ctx := context.Background()
	conn, _, _, sub, svc := startQueueSub(t, bus.DefaultLimits())
	for _, id := range []string{"evt-1", "evt-2"} {
		e := event.Event{ID: id, Source: "/erp", Type: "invoice.changed", Subject: "INV-1", Data: json.RawMessage(`{}`)}
		b, _ := e.MarshalJSON()
		if _, err := conn.JS.Publish(ctx, bus.EventsSubject("acme", "invoice.changed"), b); err != nil {
			t.Fatal(err)
		}
	}
	recs := waitLog(t, conn, sub.ID, func(recs []dlog.Record) bool { return len(recs) >= 2 })
	ids := []string{recs[0].EventID, recs[1].EventID}
	slices.Sort(ids)
	for _, r := range recs {
		if r.Mode != "queue" || r.Outcome != "delivered" || r.System != "hub" || r.Attempt != 1 || r.Error != "" ||
			strings.Join(r.EventTypes, ",") != "invoice.changed" {
			t.Errorf("record of a queued event: %+v", r)
		}
	}
	if strings.Join(ids, ",") != "evt-1,evt-2" {
		t.Errorf("logged events %v, want evt-1 and evt-2", ids)
	}

	// evt-1 handled again, as after a redelivery: a duplicate, not logged.
	putFirstAgain(t, conn, svc, sub)
	// The journal writes in order: a record after this one would be
	// the duplicate's.
	svc.router.queue.send.journal.add(dlog.Record{Org: "acme", Subscription: sub.ID, Outcome: "marker"})
	recs = waitLog(t, conn, sub.ID, func(recs []dlog.Record) bool { return len(recs) >= 3 })
	if len(recs) != 3 || recs[2].Outcome != "marker" {
		t.Errorf("after a duplicate, the log holds %+v", recs)
	}
}

// startQueueSub starts a dispatcher with a queue and a queue subscription
// of acme to invoice.changed that puts events into it.
func startQueueSub(t *testing.T, l bus.Limits) (*jet.Conn, *queues.Store, queues.Queue, subs.Subscription, *Service) {
	t.Helper()
	ctx := context.Background()
	conn := natstest.Start(t, l)
	store, err := queues.Open(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	subStore, err := subs.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	q := queues.Queue{ID: queues.NewID(), Org: "acme", Created: time.Now()}
	if err := store.Create(ctx, q, 10); err != nil {
		t.Fatal(err)
	}
	sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "hub", EventTypes: []string{"invoice.changed"},
		Mode: subs.ModeQueue, QueueID: q.ID, Active: true, Created: time.Now()}
	if err := subStore.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	svc, _ := start(t, conn, DefaultConfig(), prometheus.NewRegistry())
	return conn, store, q, sub, svc
}

// putFirstAgain hands acme's first invoice.changed event to the queue
// subscription again, as a redelivery after a failure would.
func putFirstAgain(t *testing.T, conn *jet.Conn, svc *Service, sub subs.Subscription) {
	t.Helper()
	ctx := context.Background()
	c, err := conn.JS.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.EventsSubject("acme", "invoice.changed")}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Next()
	if err != nil {
		t.Fatal(err)
	}
	md, err := first.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.router.queue.put(ctx, sub, first, md); err != nil {
		t.Fatal(err)
	}
}
