package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/bustest"
	"kurier.dev/services/internal/subs"
)

// posts records payload deliveries per subscription (the URL path), and
// how many of a subscription's were in flight at once.
type posts struct {
	delay map[string]time.Duration
	mu    sync.Mutex
	got   map[string][]string // subscription -> event ids
	now   map[string]int
	most  map[string]int
}

func newPosts() *posts {
	return &posts{delay: map[string]time.Duration{}, got: map[string][]string{}, now: map[string]int{}, most: map[string]int{}}
}

func (p *posts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/")
	var ev struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(r.Body).Decode(&ev)
	p.mu.Lock()
	p.now[id]++
	p.most[id] = max(p.most[id], p.now[id])
	p.mu.Unlock()
	time.Sleep(p.delay[id])
	p.mu.Lock()
	p.now[id]--
	p.got[id] = append(p.got[id], ev.ID)
	p.mu.Unlock()
}

func (p *posts) count(id string) (n, most int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got[id]), p.most[id]
}

func (p *posts) ids(id string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.got[id]...)
}

// fanoutSetup starts n dispatchers on one server, with hold limits set by
// adjust, and a receiver; it answers the publishing connection, the
// subscription store and the receiver.
func fanoutSetup(t *testing.T, n int, adjust func(*fanout)) (*bus.Conn, *subs.Store, *posts, string) {
	t.Helper()
	ctx := context.Background()
	conn := bustest.Start(t, bus.DefaultLimits())
	store, err := subs.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	rcv := newPosts()
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	cfg := DefaultConfig()
	cfg.AllowPrivate = true
	for range n {
		svc, err := New(ctx, cfg, conn, bustest.Log, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		if adjust != nil {
			adjust(svc.fanout)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- svc.Run(rctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	return conn, store, rcv, srv.URL
}

func payloadSub(t *testing.T, store *subs.Store, url, typ string, inFlight int) string {
	t.Helper()
	sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "s", EventTypes: []string{typ}, Mode: subs.ModePayload,
		Active: true, Secret: subs.NewSecret(), Created: time.Now(), Timeout: 5 * time.Second, MaxInFlight: inFlight, Format: "standard"}
	sub.URL = url + "/" + sub.ID
	if err := store.Create(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	return sub.ID
}

func publishEvents(t *testing.T, conn *bus.Conn, typ string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", typ, i)
		ids = append(ids, id)
		ev := `{"specversion":"1.0","id":"` + id + `","source":"/t","type":"` + typ + `","subject":"d","data":{}}`
		if _, err := conn.JS.Publish(context.Background(), bus.EventsSubject("acme", typ), []byte(ev)); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", limit, what)
		}
	}
}

// TestSharedConsumerKeepsInFlightLimits: many subscriptions, two
// dispatcher replicas, one consumer for all, and no subscription ever has
// more requests in flight than it allows.
func TestSharedConsumerKeepsInFlightLimits(t *testing.T) {
	conn, store, rcv, url := fanoutSetup(t, 2, nil)
	const nSubs, nEvents, limit = 30, 10, 2
	var ids []string
	for range nSubs {
		id := payloadSub(t, store, url, "doc.changed", limit)
		rcv.delay[id] = 30 * time.Millisecond
		ids = append(ids, id)
	}
	time.Sleep(500 * time.Millisecond) // the dispatchers know them
	publishEvents(t, conn, "doc.changed", nEvents)
	waitFor(t, 30*time.Second, "every delivery", func() bool {
		for _, id := range ids {
			if n, _ := rcv.count(id); n < nEvents {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		if n, most := rcv.count(id); n != nEvents || most > limit {
			t.Errorf("subscription %s: %d deliveries, %d at once (limit %d)", id, n, most, limit)
		}
		if st, _ := store.State(context.Background(), id); st.Lane {
			t.Errorf("subscription %s got a lane, but kept up", id)
		}
	}
	info, err := conn.JS.Stream(context.Background(), bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Consumers; n != 1 {
		t.Errorf("%d consumers on the delivery queue, want the shared one only", n)
	}
}

// TestSlowReceiverMovesToItsLane: a receiver that falls behind gets a lane
// of its own and everything it is owed, while another subscription to the
// same events is served at once.
func TestSlowReceiverMovesToItsLane(t *testing.T) {
	conn, store, rcv, url := fanoutSetup(t, 1, func(f *fanout) { f.holdAge = 300 * time.Millisecond })
	slow := payloadSub(t, store, url, "doc.changed", 1)
	fast := payloadSub(t, store, url, "doc.changed", 1)
	rcv.delay[slow] = 400 * time.Millisecond
	time.Sleep(500 * time.Millisecond)
	const n = 6
	want := publishEvents(t, conn, "doc.changed", n)
	start := time.Now()
	waitFor(t, 10*time.Second, "the fast subscription's deliveries", func() bool { got, _ := rcv.count(fast); return got == n })
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the fast subscription took %v beside a slow one", took)
	}
	waitFor(t, 20*time.Second, "the slow subscription's deliveries", func() bool { got, _ := rcv.count(slow); return got >= n })
	got := map[string]bool{}
	for _, id := range rcv.ids(slow) {
		got[id] = true
	}
	for _, id := range want {
		if !got[id] {
			t.Errorf("slow subscription never got %s", id)
		}
	}
	if _, most := rcv.count(slow); most > 1 {
		t.Errorf("%d requests at once to the slow receiver, limit 1", most)
	}
	if st, err := store.State(context.Background(), slow); err != nil || !st.Lane {
		t.Errorf("the slow subscription has no lane: %+v %v", st, err)
	}
	if st, _ := store.State(context.Background(), fast); st.Lane {
		t.Error("the fast subscription got a lane")
	}
}
