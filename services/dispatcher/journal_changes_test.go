package dispatcher

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/stats"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// streamConfig answers the configuration bus.Ensure gives a stream.
func streamConfig(t *testing.T, name string) jetstream.StreamConfig {
	t.Helper()
	for _, c := range bus.Streams(bus.DefaultLimits()) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no stream %s", name)
	return jetstream.StreamConfig{}
}

// loggedEvents answers the event ids of the records in DELIVERY_LOG, in
// order.
func loggedEvents(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var ids []string
	_, _, err := jet.Read(context.Background(), js, bus.StreamDeliveryLog, jetstream.OrderedConsumerConfig{}, math.MaxInt, func(m jetstream.Msg) (bool, error) {
		r, err := dlog.Decode(m)
		ids = append(ids, r.EventID)
		return false, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestJournalKeepsRecordsThroughOutage: records of attempts made while
// DELIVERY_LOG cannot take them (no stream to answer, as while it has no
// leader) are written once it can, each once, not dropped; and stopping
// while it cannot does not hang.
func TestJournalKeepsRecordsThroughOutage(t *testing.T) {
	ctx := context.Background()
	conn := natstest.Start(t, bus.DefaultLimits())
	j := newJournal(conn.JS, natstest.Log)
	go j.run()
	rec := func(id string) dlog.Record {
		return dlog.Record{Time: time.Now().UTC(), Org: "acme", Subscription: "s1", Mode: "payload", EventID: id, Outcome: "delivered"}
	}
	j.add(rec("before"))
	natstest.WaitFor(t, 5*time.Second, "the first record logged", func() bool { return len(loggedEvents(t, conn.JS)) == 1 })

	if err := conn.JS.DeleteStream(ctx, bus.StreamDeliveryLog); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		j.add(rec(fmt.Sprintf("during-%d", i)))
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := conn.JS.CreateStream(ctx, streamConfig(t, bus.StreamDeliveryLog)); err != nil {
		t.Fatal(err)
	}
	j.add(rec("after"))
	want := []string{"after", "during-0", "during-1", "during-2"} // sorted
	var got []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		// The client's own retries of a refused publication may reorder it.
		got = loggedEvents(t, conn.JS)
		if slices.Sort(got); slices.Equal(got, want) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("logged %v after the outage, want %v", got, want)
	}

	// Stopped while the stream is gone: it gives up in time.
	if err := conn.JS.DeleteStream(ctx, bus.StreamDeliveryLog); err != nil {
		t.Fatal(err)
	}
	j.add(rec("lost"))
	closed := make(chan struct{})
	go func() { j.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(journalGrace + 10*time.Second):
		t.Fatal("close hangs while the log cannot be written")
	}
}

// TestTallySendsStoredRollupsOnce: while one statistics stream refuses its
// rollups, those the other stored are not sent again on every flush: once
// its dedupe window has passed they would be stored, and counted, twice.
func TestTallySendsStoredRollupsOnce(t *testing.T) {
	ctx := context.Background()
	conn := natstest.Start(t, bus.DefaultLimits())
	// Its window as it is after two minutes of an outage.
	minutes := streamConfig(t, bus.StreamStatsMinute)
	minutes.Duplicates = 500 * time.Millisecond
	if _, err := conn.JS.UpdateStream(ctx, minutes); err != nil {
		t.Fatal(err)
	}
	if err := conn.JS.DeleteStream(ctx, bus.StreamStats); err != nil {
		t.Fatal(err)
	}
	tl := newTally(conn.JS, natstest.Log, time.Hour)
	sub := subs.Subscription{ID: "s1", Org: "acme"}
	now := time.Now()
	tl.add(sub, now.Add(-2*time.Hour), time.Millisecond, stats.Success) // an hour that is over
	tl.add(sub, now, time.Millisecond, stats.Success)
	tl.flush(false)
	time.Sleep(time.Second)
	tl.flush(false)
	if _, err := conn.JS.CreateStream(ctx, streamConfig(t, bus.StreamStats)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	tl.flush(false)

	sum, err := stats.Read(ctx, conn.JS, "acme", "s1", stats.LastHour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total.Attempts != 1 {
		t.Errorf("the last hour counts %d attempts, 1 was made", sum.Total.Attempts)
	}
	day, err := stats.Read(ctx, conn.JS, "acme", "s1", stats.LastDay, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if day.Total.Attempts != 2 {
		t.Errorf("the last day counts %d attempts, 2 were made", day.Total.Attempts)
	}
}
