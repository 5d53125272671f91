package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

// TestStreamsBounded: every stream is laid down bounded in bytes, and
// discards as chosen: EVENTS, QUEUES and SYNC_JOURNAL refuse what comes
// when full, the others (records, and streams with schedules, which
// nats-server allows nothing else) drop their oldest.
func TestStreamsBounded(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	want := map[string]jetstream.DiscardPolicy{
		bus.StreamEvents: jetstream.DiscardNew, bus.StreamQueues: jetstream.DiscardNew, bus.StreamSyncJournal: jetstream.DiscardNew,
		bus.StreamNotify: jetstream.DiscardOld, bus.StreamDeliveries: jetstream.DiscardOld,
		bus.StreamDeadLetters: jetstream.DiscardOld, bus.StreamDeliveryLog: jetstream.DiscardOld,
		bus.StreamStats: jetstream.DiscardOld, bus.StreamStatsMinute: jetstream.DiscardOld,
	}
	ctx := context.Background()
	for _, cfg := range bus.Streams(bus.DefaultLimits()) {
		s, err := conn.JS.Stream(ctx, cfg.Name)
		if err != nil {
			t.Fatal(err)
		}
		got := s.CachedInfo().Config
		if got.MaxBytes <= 0 || got.MaxBytes != cfg.MaxBytes {
			t.Errorf("%s: max bytes %d, want %d", cfg.Name, got.MaxBytes, cfg.MaxBytes)
		}
		if d, ok := want[cfg.Name]; !ok || got.Discard != d {
			t.Errorf("%s: discard %v, want %v", cfg.Name, got.Discard, d)
		}
	}
}

// TestEventsFull: an EVENTS stream laid down before it had a byte limit
// takes the limit when the services start again; full, it refuses new
// events and keeps every one it took, still recognising them when they
// are sent again; a smaller limit drops none of them, and a larger one
// takes events again.
func TestEventsFull(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	ctx := context.Background()

	// As laid down before: no byte limit, the oldest dropped.
	old := bus.Streams(bus.DefaultLimits())[0]
	old.MaxBytes, old.Discard = -1, jetstream.DiscardOld
	if _, err := conn.JS.UpdateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	publish := func(i int) error {
		m := nats.NewMsg(bus.EventsSubject("acme", "invoice.changed"))
		m.Header.Set(jetstream.MsgIDHeader, bus.EventMsgID("acme", "/erp", fmt.Sprint(i)))
		m.Data = []byte(strings.Repeat("x", 1000))
		_, err := conn.JS.PublishMsg(ctx, m)
		return err
	}
	for i := range 10 {
		if err := publish(i); err != nil {
			t.Fatal(err)
		}
	}

	l := bus.DefaultLimits()
	l.MaxBytes.Events = 32 << 10
	if err := bus.Ensure(ctx, conn.JS, l); err != nil {
		t.Fatal(err)
	}
	accepted := 10
	for ; ; accepted++ {
		err := publish(accepted)
		if jet.IsFull(err) {
			break
		}
		if err != nil {
			t.Fatalf("event %d: %v", accepted, err)
		}
		if accepted > 100 {
			t.Fatal("32 KiB took more than 100 events of 1 KB")
		}
	}
	if err := publish(accepted + 1); !jet.IsFull(err) {
		t.Fatalf("a new event into the full stream: %v, want it refused as full", err)
	}
	if err := publish(3); err != nil {
		t.Errorf("an accepted event sent again into the full stream: %v, want it answered as a duplicate", err)
	}
	events, err := conn.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(accepted) || info.State.FirstSeq != 1 {
		t.Errorf("full stream holds %d events from %d, want every one of the %d accepted", info.State.Msgs, info.State.FirstSeq, accepted)
	}

	// A limit below what it holds drops nothing either.
	l.MaxBytes.Events = 16 << 10
	if err := bus.Ensure(ctx, conn.JS, l); err != nil {
		t.Fatal(err)
	}
	if info, err = events.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(accepted) {
		t.Errorf("after the limit was lowered: %d events, want the %d accepted", info.State.Msgs, accepted)
	}
	if err := publish(accepted); !jet.IsFull(err) {
		t.Errorf("after the limit was lowered: %v, want the new event refused", err)
	}

	l.MaxBytes.Events = 64 << 10
	if err := bus.Ensure(ctx, conn.JS, l); err != nil {
		t.Fatal(err)
	}
	if err := publish(accepted); err != nil {
		t.Errorf("after the limit was raised: %v", err)
	}
}

// TestNoRoomFailsFast: limits the server has no room for, or a stream
// configuration it refuses, are an error at once, not retried for ever
// as a cluster that is forming would be.
func TestNoRoomFailsFast(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	for _, tt := range []struct {
		name  string
		limit func(*bus.Limits)
		want  error
	}{
		{"no room", func(l *bus.Limits) { l.MaxBytes.Events = 1 << 60 }, bus.ErrNoRoom},
		{"refused", func(l *bus.Limits) { l.DedupeWindow = 2 * l.EventsMaxAge }, bus.ErrRefused},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := bus.DefaultLimits()
			tt.limit(&l)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := jet.Retry(ctx, natstest.Log, "streams", func(ctx context.Context) error { return bus.Ensure(ctx, conn.JS, l) })
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), bus.StreamEvents) {
				t.Fatalf("got %v, want %v naming %s", err, tt.want, bus.StreamEvents)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("gave up after %v", took)
			}
		})
	}
}

// TestTaskDedupeWindow: DELIVERIES recognises a task stored again for
// TaskDedupeWindow, not for the whole dedupe window of events; a stream
// laid down with the longer window takes the shorter one on the next
// start, and a dedupe window shorter still applies to both.
func TestTaskDedupeWindow(t *testing.T) {
	l := bus.DefaultLimits()
	conn := natstest.Start(t, l)
	ctx := context.Background()
	window := func(name string) time.Duration {
		t.Helper()
		s, err := conn.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.Duplicates
	}
	windows := func() (events, tasks time.Duration) {
		return window(bus.StreamEvents), window(bus.StreamDeliveries)
	}
	for _, cfg := range bus.Streams(l) {
		if cfg.Name == bus.StreamDeliveries {
			cfg.Duplicates = l.DedupeWindow // as laid down before
			if _, err := conn.JS.UpdateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := bus.Ensure(ctx, conn.JS, l); err != nil {
		t.Fatal(err)
	}
	if events, tasks := windows(); events != time.Hour || tasks != bus.TaskDedupeWindow {
		t.Errorf("dedupe windows %v for events, %v for tasks; want 1h and %v", events, tasks, bus.TaskDedupeWindow)
	}
	task := nats.NewMsg(bus.DeliverSubject("s1"))
	task.Header.Set(jetstream.MsgIDHeader, "s1:7")
	for i, want := range []bool{false, true} {
		ack, err := conn.JS.PublishMsg(ctx, task)
		if err != nil || ack.Duplicate != want {
			t.Errorf("store %d: %+v, %v; want duplicate %v", i+1, ack, err, want)
		}
	}
	l.DedupeWindow = 2 * time.Minute
	if err := bus.Ensure(ctx, conn.JS, l); err != nil {
		t.Fatal(err)
	}
	if events, tasks := windows(); events != l.DedupeWindow || tasks != l.DedupeWindow {
		t.Errorf("dedupe windows %v for events, %v for tasks; want %v for both", events, tasks, l.DedupeWindow)
	}
}
