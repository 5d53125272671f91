package dispatcher

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// held is what a dispatcher keeps in memory per subscription.
type held struct{ subs, types, states, walks, gates int }

func heldBy(s *Service) held {
	var h held
	s.index.mu.RLock()
	h.subs, h.types, h.states = len(s.index.byID), len(s.index.byType), len(s.index.states)
	s.index.mu.RUnlock()
	s.ordered.mu.Lock()
	h.walks = len(s.ordered.walking)
	s.ordered.mu.Unlock()
	s.parts.mu.Lock()
	defer s.parts.mu.Unlock()
	for _, pt := range s.parts.owned {
		pt.mu.Lock()
		h.gates += len(pt.gates)
		pt.mu.Unlock()
	}
	return h
}

// TestDeletedSubscriptionsLeaveNothing: subscriptions of every kind are
// deleted while their requests are in flight, the payload ones failing.
// Afterwards the dispatcher holds nothing of them in memory, and no ping
// state is left in the bucket: an attempt that ends after the delete does
// not bring its subscription's state back.
func TestDeletedSubscriptionsLeaveNothing(t *testing.T) {
	ctx := context.Background()
	conn, store := startStore(t, bus.DefaultLimits())
	var posts, pings atomic.Int32
	release := make(chan struct{})
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		} else {
			pings.Add(1)
		}
		<-release
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(rcv.Close)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	cfg := DefaultConfig()
	cfg.AllowPrivate, cfg.NotifyDelay = true, 100*time.Millisecond
	svc, _ := start(t, conn, cfg, prometheus.NewRegistry())

	const nPayload, nOrdered, nPing = 20, 10, 10
	var ids []string
	retry := func(s *subs.Subscription) { s.RetrySchedule = []time.Duration{time.Second} }
	for range nPayload {
		ids = append(ids, payloadSub(t, store, rcv.URL, "doc.changed", 2, retry))
	}
	for range nOrdered {
		ids = append(ids, payloadSub(t, store, rcv.URL, "doc.changed", 1, retry, func(s *subs.Subscription) { s.Ordered = true }))
	}
	for i := range nPing {
		sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "p" + string(rune('a'+i)), EventTypes: []string{"doc.changed"},
			Mode: subs.ModePing, URL: rcv.URL + "/ping", Active: true, Secret: subs.NewSecret(), Created: time.Now()}
		if err := store.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sub.ID)
	}
	natstest.WaitFor(t, 5*time.Second, "the dispatcher knows every subscription", func() bool { return heldBy(svc).subs == len(ids) })
	publishEvents(t, conn, "doc.changed", 3)
	natstest.WaitFor(t, 10*time.Second, "a request of every subscription in flight", func() bool {
		return posts.Load() >= nPayload+nOrdered && pings.Load() == nPing
	})
	if h := heldBy(svc); h.gates == 0 || h.walks == 0 || h.states == 0 {
		t.Fatalf("nothing held while requests are in flight: %+v", h)
	}

	for _, id := range ids {
		if _, err := store.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	once.Do(func() { close(release) }) // the attempts end, failing, after the delete
	natstest.WaitFor(t, 10*time.Second, "nothing held of deleted subscriptions", func() bool { return heldBy(svc) == held{} })
	natstest.WaitFor(t, 10*time.Second, "no task left of deleted subscriptions", func() bool {
		left, err := tasksLeft(ctx, conn)
		return err == nil && left == 0
	})
	time.Sleep(300 * time.Millisecond) // a state written late would show by now
	keys, err := store.StateBucket().ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for k := range keys.Keys() {
		left = append(left, k)
	}
	if len(left) != 0 || heldBy(svc) != (held{}) {
		t.Fatalf("left behind: states %v, in memory %+v", left, heldBy(svc))
	}
}

// TestJournalIsBounded: delivery-log records go through one queue of
// fixed size and one writer, not a goroutine each. A full queue holds the
// next record back until the writer makes room; none is lost.
func TestJournalIsBounded(t *testing.T) {
	ctx := context.Background()
	conn := natstest.Start(t, bus.DefaultLimits())
	j := newJournal(conn.JS, natstest.Log)
	before := runtime.NumGoroutine()
	rec := dlog.Record{Time: time.Now().UTC(), Org: "acme", Subscription: "s1", Mode: "payload", Outcome: "delivered"}
	for range cap(j.in) {
		j.add(rec) // the writer is not running: each waits in the queue
	}
	if g := runtime.NumGoroutine(); g > before+10 {
		t.Fatalf("%d records queued made %d goroutines", cap(j.in), g-before)
	}
	added := make(chan struct{})
	go func() {
		j.add(rec)
		close(added)
	}()
	select {
	case <-added:
		t.Fatal("a record was taken beyond the queue's size")
	case <-time.After(200 * time.Millisecond):
	}
	go j.run()
	<-added
	j.close()
	st, err := conn.JS.Stream(ctx, bus.StreamDeliveryLog)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(cap(j.in) + 1); info.State.Msgs != want {
		t.Fatalf("%d records logged, want %d", info.State.Msgs, want)
	}
	if _, err := st.GetLastMsgForSubject(ctx, bus.DeliveryLogSubject("acme", "s1")); errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatal("records not on their subscription's subject")
	}
}
