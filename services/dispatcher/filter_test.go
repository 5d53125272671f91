package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// publishInvoice stores an invoice.changed event of acme with its total
// (none: data without one).
func publishInvoice(t *testing.T, conn *jet.Conn, id string, total float64) {
	t.Helper()
	data := `{}`
	if total >= 0 {
		data = fmt.Sprintf(`{"total": %g}`, total)
	}
	e := event.Event{ID: id, Source: "/erp", Type: "invoice.changed", Subject: "INV-" + id, Data: json.RawMessage(data)}
	b, _ := e.MarshalJSON()
	m := nats.NewMsg(bus.EventsSubject("acme", "invoice.changed"))
	m.Data = b
	if _, err := conn.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// routed waits until the router has acknowledged every event stored, so
// every task, queue message and timer of theirs is in place, and every
// task has been delivered.
func routed(t *testing.T, conn *jet.Conn) {
	t.Helper()
	ctx := context.Background()
	natstest.WaitForErr(t, 10*time.Second, "every event routed and every task delivered", func() error {
		events, err := conn.JS.Stream(ctx, bus.StreamEvents)
		if err != nil {
			return err
		}
		c, err := events.Consumer(ctx, bus.DispatchConsumer().Durable)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return fmt.Errorf("%d events to route, %d being routed", info.NumPending, info.NumAckPending)
		}
		left, err := tasksLeft(ctx, conn)
		if err != nil {
			return err
		}
		if left > 0 {
			return fmt.Errorf("%d tasks to deliver", left)
		}
		return nil
	})
}

// TestFilterPayload: payload subscriptions, concurrent and ordered, get
// the events their filter passes and no other, an event the filter cannot
// judge (no total) included; a filter changed applies to the events routed
// after the change.
func TestFilterPayload(t *testing.T) {
	ctx := context.Background()
	conn, store, rcv, url, svcs := setup(t, 1)
	filter := func(s *subs.Subscription) {
		s.EventTypes, s.Filter = []string{"invoice.changed"}, `data.total > 1000.0`
	}
	concurrent := payloadSub(t, store, url, "invoice.changed", 10, filter)
	ordered := payloadSub(t, store, url, "invoice.changed", 1, filter, func(s *subs.Subscription) { s.Ordered = true })
	all := payloadSub(t, store, url, "invoice.changed", 10)
	knows(t, svcs, concurrent, ordered, all)

	publishInvoice(t, conn, "small", 500)
	publishInvoice(t, conn, "big", 1500)
	publishInvoice(t, conn, "none", -1)
	publishInvoice(t, conn, "bigger", 2500)
	routed(t, conn)
	natstest.WaitFor(t, 10*time.Second, "the ordered subscription's last event", func() bool {
		return slices.Contains(rcv.ids(ordered), "bigger")
	})
	want := []string{"big", "bigger"}
	for _, c := range []struct {
		name, id string
		want     []string
	}{{"concurrent", concurrent, want}, {"ordered", ordered, want}, {"unfiltered", all, []string{"big", "bigger", "none", "small"}}} {
		got := rcv.ids(c.id)
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: delivered %v, want %v", c.name, got, c.want)
		}
	}

	// Changed: the events routed from now on go by the new filter.
	for _, id := range []string{concurrent, ordered} {
		if _, err := store.Update(ctx, id, func(s *subs.Subscription) error { s.Filter = `data.total < 1000.0`; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	natstest.WaitFor(t, 10*time.Second, "the new filters known", func() bool {
		for _, id := range []string{concurrent, ordered} {
			if e := svcs[0].index.get(id); e == nil || e.sub.Filter != `data.total < 1000.0` {
				return false
			}
		}
		return true
	})
	publishInvoice(t, conn, "huge", 9000)
	publishInvoice(t, conn, "tiny", 5)
	routed(t, conn)
	natstest.WaitFor(t, 10*time.Second, "the ordered subscription's last event", func() bool {
		return slices.Contains(rcv.ids(ordered), "tiny")
	})
	for _, id := range []string{concurrent, ordered} {
		if got := rcv.ids(id); slices.Contains(got, "huge") || !slices.Contains(got, "tiny") {
			t.Errorf("after the change %s got %v", id, got)
		}
	}
}

// TestFilterQueue: a queue subscription's queue holds the events its
// filter passes, and no other.
func TestFilterQueue(t *testing.T) {
	ctx := context.Background()
	conn, qs, q, sub, svc := startQueueSub(t, bus.DefaultLimits())
	store, err := subs.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, sub.ID, func(s *subs.Subscription) error { s.Filter = `subject == "INV-b"`; return nil }); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 10*time.Second, "the filter known", func() bool {
		e := svc.index.get(sub.ID)
		return e != nil && e.filter != nil
	})
	publishInvoice(t, conn, "a", 1)
	publishInvoice(t, conn, "b", 1)
	publishInvoice(t, conn, "c", 1)
	routed(t, conn)
	msgs, err := qs.Peek(ctx, q.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		var c struct{ Subject string }
		if err := json.Unmarshal(m.Content, &c); err != nil {
			t.Fatal(err)
		}
		got = append(got, c.Subject)
	}
	if !slices.Equal(got, []string{"INV-b"}) {
		t.Fatalf("queued the events of %v, want INV-b's alone (filter results: %s)", got, counts(svc.router.filters))
	}
}

// TestFilterPing: a change the filter leaves out starts no ping timer,
// one it passes does, and its ping comes.
func TestFilterPing(t *testing.T) {
	ctx := context.Background()
	conn, store := startStore(t, bus.DefaultLimits())
	rcv := &pings{at: map[string][]time.Time{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "shop", EventTypes: []string{"invoice.changed"},
		Mode: subs.ModePing, Active: true, Secret: subs.NewSecret(), Created: time.Now(), Filter: `has(data.total) && data.total > 1000.0`}
	sub.URL = srv.URL + "/" + sub.ID
	if err := store.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NotifyDelay = 200 * time.Millisecond
	cfg.AllowPrivate = true
	svc, _ := start(t, conn, cfg, prometheus.NewRegistry())
	knows(t, []*Service{svc}, sub.ID)
	notify, err := conn.JS.Stream(ctx, bus.StreamNotify)
	if err != nil {
		t.Fatal(err)
	}
	timer := func() bool {
		_, err := notify.GetLastMsgForSubject(ctx, bus.NotifyAll(sub.ID))
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}

	publishInvoice(t, conn, "small", 500)
	publishInvoice(t, conn, "none", -1)
	routed(t, conn)
	if timer() {
		t.Fatal("a change the filter leaves out started a ping timer")
	}
	publishInvoice(t, conn, "big", 1500)
	routed(t, conn)
	if !timer() {
		t.Fatal("a change the filter passes started no ping timer")
	}
	natstest.WaitFor(t, 10*time.Second, "the ping", func() bool { return len(rcv.of(sub.ID)) == 1 })
}

// TestFilterThatDoesNotCompile: a stored filter this dispatcher cannot
// compile (as one written by another version) lets nothing through.
func TestFilterThatDoesNotCompile(t *testing.T) {
	conn, store, rcv, url, svcs := setup(t, 1)
	bad := payloadSub(t, store, url, "invoice.changed", 10, func(s *subs.Subscription) { s.Filter = `data.total >` })
	witness := payloadSub(t, store, url, "invoice.changed", 10)
	knows(t, svcs, bad, witness)
	publishInvoice(t, conn, "x", 5)
	routed(t, conn)
	if got := rcv.ids(bad); len(got) != 0 || len(rcv.ids(witness)) != 1 {
		t.Fatalf("delivered %v to the subscription whose filter does not compile", got)
	}
}

// counts answers what the filters decided, for failure messages.
func counts(f *filters) string {
	var out []string
	for _, r := range []string{"passed", "filtered", "error"} {
		var m dto.Metric
		_ = f.results.WithLabelValues(r).Write(&m)
		out = append(out, fmt.Sprintf("%s %v", r, m.GetCounter().GetValue()))
	}
	return strings.Join(out, ", ")
}
