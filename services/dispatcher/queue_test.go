package dispatcher

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/bustest"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/subs"
)

// Queue subscriptions get each matching event as a queue message; one too
// large goes thin; an event handled twice is one message; a full queue
// drops the event and logs it.
func TestQueueDelivery(t *testing.T) {
	ctx := context.Background()
	l := bus.DefaultLimits()
	l.QueueMaxMsgs = 3
	conn := bustest.Start(t, l)
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
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			msgs, err := store.Peek(ctx, q.ID, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) >= n {
				return msgs
			}
		}
		t.Fatalf("fewer than %d messages in the queue", n)
		return nil
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
	if msgs := waitDepth(2); len(msgs) != 2 {
		t.Fatalf("a redelivered event made another message: %d", len(msgs))
	}

	// Full at three: of two more events, handled at once, one gets the
	// last place and the other is dropped and logged.
	publish("4", "invoice.changed", `{}`)
	publish("5", "invoice.changed", `{}`)
	var rec dlog.Record
	for deadline := time.Now().Add(10 * time.Second); rec.EventID == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, _, err := bus.Read(ctx, conn.JS, bus.StreamDeliveryLog, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.DeliveryLogSubject("acme", sub.ID)}}, 10,
			func(m jetstream.Msg) (bool, error) {
				rec, err = dlog.Decode(m)
				return true, err
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	kept := map[string]string{"4": `"id":"5"`, "5": `"id":"4"`}[rec.EventID]
	if kept == "" || rec.Outcome != "dropped" || rec.Mode != "queue" || !strings.Contains(rec.Error, "as many messages") {
		t.Fatalf("log of the dropped event: %+v", rec)
	}
	if msgs := waitDepth(3); len(msgs) != 3 || !strings.Contains(string(msgs[2].Content), kept) {
		t.Fatalf("after the queue filled: %+v", msgs)
	}
}
