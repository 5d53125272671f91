package dispatcher

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// subjectCount counts DELIVERIES' messages on subject.
func subjectCount(t *testing.T, deliveries jetstream.Stream, subject string) uint64 {
	t.Helper()
	info, err := deliveries.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// TestDailySwitchedBackDeliversWhatGathered: a daily subscription's
// tasks gather for its digest; switched to immediate delivery before the
// digest time, what gathered is still delivered.
func TestDailySwitchedBackDeliversWhatGathered(t *testing.T) {
	ctx := context.Background()
	conn, store, rcv, url, svcs := setup(t, 1)
	id := payloadSub(t, store, url, "doc.changed", 5, func(s *subs.Subscription) {
		s.DailyAt, s.TimeZone = time.Now().UTC().Add(12*time.Hour).Format("15:04"), "UTC"
	})
	knows(t, svcs, id)
	deliveries, err := conn.JS.Stream(ctx, bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	want := publishEvents(t, conn, "doc.changed", 3)
	natstest.WaitFor(t, 10*time.Second, "the digest's tasks", func() bool {
		return subjectCount(t, deliveries, bus.DigestSubject(id)) == uint64(len(want))
	})
	if _, err := store.Update(ctx, id, func(s *subs.Subscription) error {
		s.DailyAt, s.TimeZone = "", ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 15*time.Second, "the gathered events delivered", func() bool { return len(rcv.ids(id)) >= len(want) })
	got := rcv.ids(id)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

// TestOrderedRetryWithoutRoomComesAgain: an ordered subscription's
// attempt fails while DELIVERIES is full, so its retry cannot be stored.
// Once there is room, the event is still delivered, though no other
// event comes to wake the walk.
func TestOrderedRetryWithoutRoomComesAgain(t *testing.T) {
	ctx := context.Background()
	const limit = 64 << 10
	conn, store, rcv, url, svcs := setup(t, 1, func(l *bus.Limits) { l.MaxBytes.Deliveries = limit })
	id := payloadSub(t, store, url, "doc.changed", 1, func(s *subs.Subscription) {
		s.Ordered = true
		s.RetrySchedule = []time.Duration{4 * time.Second, 4 * time.Second}
	})
	knows(t, svcs, id)
	rcv.delay[id] = 2500 * time.Millisecond
	rcv.fail["doc.changed-0"] = http.StatusInternalServerError
	publishEvents(t, conn, "doc.changed", 1)
	natstest.WaitFor(t, 5*time.Second, "the first attempt", func() bool { return rcv.tried("doc.changed-0") })
	// Full while the attempt runs: its retry finds no room.
	deliveries, err := conn.JS.Stream(ctx, bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 1000)
	for i := 0; ; i++ {
		info, err := deliveries.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if float64(info.State.Bytes) >= 0.97*limit {
			break
		}
		if _, err := conn.JS.Publish(ctx, bus.DigestSubject(fmt.Sprintf("junk%d", i)), junk); err != nil {
			t.Fatal(err)
		}
	}
	natstest.WaitFor(t, 5*time.Second, "the failed attempt's end", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.now[id] == 0
	})
	time.Sleep(time.Second)
	if err := deliveries.Purge(ctx, jetstream.WithPurgeSubject("kurier.digest.>")); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 20*time.Second, "the event delivered after all", func() bool { return len(rcv.ids(id)) == 1 })
}

// TestHandOverKeepsInFlightLimit: a replica stops while a request of a
// subscription that allows one at a time is still under way, longer than
// a partition's pin outlives its last pull. The replica taking the
// partition over does not start the subscription's next task before that
// request has ended.
func TestHandOverKeepsInFlightLimit(t *testing.T) {
	conn, store, rcv, url, svcs := setup(t, 1)
	cfg := DefaultConfig()
	cfg.AllowPrivate = true
	second, stop := start(t, conn, cfg, prometheus.NewRegistry())
	natstest.WaitFor(t, 10*time.Second, "a share for each replica", func() bool {
		return owned(second) > 0 && owned(svcs[0]) > 0 && owned(second)+owned(svcs[0]) == bus.Partitions
	})
	var id string
	for id == "" {
		s := payloadSub(t, store, url, "doc.changed", 1, func(s *subs.Subscription) { s.Timeout = 10 * time.Second })
		if ownsPartitionOf(second, s) {
			id = s
		}
	}
	knows(t, []*Service{svcs[0], second}, id)
	rcv.delay[id] = 6 * time.Second
	publishEvents(t, conn, "doc.changed", 3)
	natstest.WaitFor(t, 5*time.Second, "the first request under way", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.now[id] == 1
	})
	go stop()
	natstest.WaitFor(t, 30*time.Second, "every delivery", func() bool { n, _ := rcv.count(id); return n >= 3 })
	if _, most := rcv.count(id); most > 1 {
		t.Errorf("%d requests at once to a subscription that allows one", most)
	}
}

// TestDeletedSubscriptionLeavesNoTasks: a deleted subscription's tasks
// gathered for its digest, and its retries waiting, do not stay in
// DELIVERIES, where nothing would ever read them and they would take its
// room for good.
func TestDeletedSubscriptionLeavesNoTasks(t *testing.T) {
	ctx := context.Background()
	conn, store, rcv, url, svcs := setup(t, 1)
	daily := payloadSub(t, store, url, "doc.changed", 5, func(s *subs.Subscription) {
		s.DailyAt, s.TimeZone = time.Now().UTC().Add(12*time.Hour).Format("15:04"), "UTC"
	})
	failing := payloadSub(t, store, url, "doc.changed", 5, func(s *subs.Subscription) {
		s.RetrySchedule = []time.Duration{time.Hour}
	})
	knows(t, svcs, daily, failing)
	for i := range 3 {
		rcv.fail[fmt.Sprintf("doc.changed-%d", i)] = http.StatusInternalServerError
	}
	deliveries, err := conn.JS.Stream(ctx, bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	publishEvents(t, conn, "doc.changed", 3)
	natstest.WaitFor(t, 10*time.Second, "the digest's tasks and the retries", func() bool {
		return subjectCount(t, deliveries, bus.DigestSubject(daily)) == 3 && subjectCount(t, deliveries, bus.RetrySubject(failing, ">")) == 3
	})
	for _, id := range []string{daily, failing} {
		if _, err := store.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	natstest.WaitFor(t, 10*time.Second, "no task of the deleted subscriptions left", func() bool {
		return subjectCount(t, deliveries, bus.DigestSubject(daily))+subjectCount(t, deliveries, bus.RetrySubject(failing, ">")) == 0
	})
}
