package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// posts records payload deliveries per subscription (the URL path), and
// how many of a subscription's were in flight at once.
type posts struct {
	delay map[string]time.Duration
	// fail answers this status to the first attempt of these event ids.
	fail  map[string]int
	mu    sync.Mutex
	tries map[string]int      // event id -> attempts seen
	got   map[string][]string // subscription -> event ids
	now   map[string]int
	most  map[string]int
}

func newPosts() *posts {
	return &posts{delay: map[string]time.Duration{}, fail: map[string]int{}, tries: map[string]int{}, got: map[string][]string{}, now: map[string]int{}, most: map[string]int{}}
}

// tried tells whether every one of the event ids had exactly one attempt.
func (p *posts) tried(ids ...string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if p.tries[id] != 1 {
			return false
		}
	}
	return true
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
	p.tries[ev.ID]++
	status := http.StatusOK
	if p.tries[ev.ID] == 1 && p.fail[ev.ID] != 0 {
		status = p.fail[ev.ID]
	}
	p.mu.Unlock()
	time.Sleep(p.delay[id])
	p.mu.Lock()
	p.now[id]--
	if status == http.StatusOK {
		p.got[id] = append(p.got[id], ev.ID)
	}
	p.mu.Unlock()
	w.WriteHeader(status)
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

// setup starts n dispatchers on one server (with its streams' limits
// adjusted) and a receiver; it answers the publishing connection, the
// subscription store, the receiver's handler and URL, and the
// dispatchers.
func setup(t *testing.T, n int, adjust ...func(*bus.Limits)) (*jet.Conn, *subs.Store, *posts, string, []*Service) {
	t.Helper()
	l := bus.DefaultLimits()
	for _, a := range adjust {
		a(&l)
	}
	conn, store := startStore(t, l)
	rcv := newPosts()
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	cfg := DefaultConfig()
	cfg.AllowPrivate = true
	var svcs []*Service
	for range n {
		svc, _ := start(t, conn, cfg, prometheus.NewRegistry())
		svcs = append(svcs, svc)
	}
	return conn, store, rcv, srv.URL, svcs
}

// startStore starts a server with limits l and opens the subscription
// store on it.
func startStore(t *testing.T, l bus.Limits) (*jet.Conn, *subs.Store) {
	t.Helper()
	conn := natstest.Start(t, l)
	store, err := subs.Open(context.Background(), conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	return conn, store
}

// start runs a dispatcher until the returned stop, or the test's end,
// failing the test if Run fails; a stop while it is still setting itself
// up is no failure.
func start(t *testing.T, conn *jet.Conn, cfg Config, reg prometheus.Registerer) (*Service, func()) {
	t.Helper()
	svc, err := New(context.Background(), cfg, conn, natstest.Log, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("dispatcher: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return svc, stop
}

func payloadSub(t *testing.T, store *subs.Store, url, typ string, inFlight int, adjust ...func(*subs.Subscription)) string {
	t.Helper()
	sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "s", EventTypes: []string{typ}, Mode: subs.ModePayload,
		Active: true, Secret: subs.NewSecret(), Created: time.Now(), Timeout: 5 * time.Second, MaxInFlight: inFlight, Format: "standard"}
	sub.URL = url + "/" + sub.ID
	for _, a := range adjust {
		a(&sub)
	}
	if err := store.Create(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	return sub.ID
}

func publishEvents(t *testing.T, conn *jet.Conn, typ string, n int) []string {
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

// consumers counts the consumers on DELIVERIES.
func consumers(t *testing.T, conn *jet.Conn) int {
	t.Helper()
	st, err := conn.JS.Stream(context.Background(), bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Consumers
}

// TestPartitionsKeepInFlightLimits: many subscriptions, two dispatcher
// replicas sharing the partitions, and no subscription ever has more
// requests in flight than it allows.
func TestPartitionsKeepInFlightLimits(t *testing.T) {
	conn, store, rcv, url, svcs := setup(t, 2)
	const nSubs, nEvents, limit = 30, 10, 2
	var ids []string
	for range nSubs {
		id := payloadSub(t, store, url, "doc.changed", limit)
		rcv.delay[id] = 30 * time.Millisecond
		ids = append(ids, id)
	}
	natstest.WaitFor(t, 10*time.Second, "both replicas own partitions", func() bool {
		return owned(svcs[0]) > 0 && owned(svcs[1]) > 0 && owned(svcs[0])+owned(svcs[1]) == bus.Partitions
	})
	publishEvents(t, conn, "doc.changed", nEvents)
	natstest.WaitFor(t, 30*time.Second, "every delivery", func() bool {
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
	}
	if n := consumers(t, conn); n != bus.Partitions+1 {
		t.Errorf("%d consumers on the delivery queue, want one per partition (%d) and the retries' counter", n, bus.Partitions)
	}
}

// owned is how many partitions a dispatcher replica owns.
func owned(s *Service) int {
	s.parts.mu.Lock()
	defer s.parts.mu.Unlock()
	return len(s.parts.owned)
}

// TestRetryHoldsNoSlot: two events answered 400 wait for their retry
// without holding back a third to a subscription that allows two at once.
func TestRetryHoldsNoSlot(t *testing.T) {
	conn, store, rcv, url, _ := setup(t, 1)
	id := payloadSub(t, store, url, "doc.changed", 2, func(s *subs.Subscription) {
		s.RetrySchedule = []time.Duration{5 * time.Second}
	})
	time.Sleep(300 * time.Millisecond) // the dispatcher knows it
	rcv.fail["doc.changed-0"], rcv.fail["doc.changed-1"] = http.StatusBadRequest, http.StatusBadRequest
	publishEvents(t, conn, "doc.changed", 2)
	natstest.WaitFor(t, 5*time.Second, "both failed attempts", func() bool { return rcv.tried("doc.changed-0", "doc.changed-1") })
	start := time.Now()
	ev := `{"specversion":"1.0","id":"healthy","source":"/t","type":"doc.changed","subject":"d","data":{}}`
	if _, err := conn.JS.Publish(context.Background(), bus.EventsSubject("acme", "doc.changed"), []byte(ev)); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 5*time.Second, "the healthy event", func() bool { return slices.Contains(rcv.ids(id), "healthy") })
	if took := time.Since(start); took > time.Second {
		t.Errorf("the healthy event took %v behind two waiting retries", took)
	}
	natstest.WaitFor(t, 15*time.Second, "the retries", func() bool { n, _ := rcv.count(id); return n == 3 })
}

// TestConsumersStayFlat: subscriptions that fail once and are retried add
// no consumers.
func TestConsumersStayFlat(t *testing.T) {
	conn, store, rcv, url, svcs := setup(t, 1)
	natstest.WaitFor(t, 10*time.Second, "every partition taken", func() bool { return owned(svcs[0]) == bus.Partitions })
	before := consumers(t, conn)
	var ids []string
	for i := range 60 {
		typ := fmt.Sprintf("t%d.changed", i)
		ids = append(ids, payloadSub(t, store, url, typ, 1, func(s *subs.Subscription) {
			s.RetrySchedule = []time.Duration{200 * time.Millisecond}
		}))
		rcv.fail[typ+"-0"] = http.StatusInternalServerError
	}
	time.Sleep(300 * time.Millisecond)
	for i := range 60 {
		publishEvents(t, conn, fmt.Sprintf("t%d.changed", i), 1)
	}
	natstest.WaitFor(t, 20*time.Second, "every retried delivery", func() bool {
		for _, id := range ids {
			if n, _ := rcv.count(id); n != 1 {
				return false
			}
		}
		return true
	})
	if after := consumers(t, conn); after != before {
		t.Errorf("%d consumers after 60 subscriptions failed once, %d before", after, before)
	}
}

// samePartition makes a subscription id in the given one's partition.
func samePartition(id string) string {
	for {
		if other := subs.NewID(); bus.Partition(other) == bus.Partition(id) {
			return other
		}
	}
}

// TestSlowSubscriptionStandsInNoOnesWay: a receiver that falls behind gets
// everything it is owed, within its limit, while another subscription in
// the same partition is served at once.
func TestSlowSubscriptionStandsInNoOnesWay(t *testing.T) {
	conn, store, rcv, url, _ := setup(t, 1)
	slow := payloadSub(t, store, url, "doc.changed", 1)
	fast := payloadSub(t, store, url, "doc.changed", 1, func(s *subs.Subscription) {
		s.ID = samePartition(slow)
		s.URL = url + "/" + s.ID
	})
	rcv.delay[slow] = 300 * time.Millisecond
	time.Sleep(300 * time.Millisecond)
	const n = 12
	want := publishEvents(t, conn, "doc.changed", n)
	start := time.Now()
	natstest.WaitFor(t, 10*time.Second, "the fast subscription's deliveries", func() bool { got, _ := rcv.count(fast); return got == n })
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the fast subscription took %v beside a slow one", took)
	}
	natstest.WaitFor(t, 30*time.Second, "the slow subscription's deliveries", func() bool { got, _ := rcv.count(slow); return got >= n })
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
}

// TestOrderedThroughRetries: an ordered subscription whose receiver fails
// an event gets it again before any later one, and every event in order.
func TestOrderedThroughRetries(t *testing.T) {
	conn, store, rcv, url, _ := setup(t, 1)
	id := payloadSub(t, store, url, "doc.changed", 5, func(s *subs.Subscription) {
		s.Ordered = true
		s.RetrySchedule = []time.Duration{300 * time.Millisecond}
	})
	time.Sleep(300 * time.Millisecond)
	rcv.fail["doc.changed-2"] = http.StatusServiceUnavailable
	want := publishEvents(t, conn, "doc.changed", 8)
	natstest.WaitFor(t, 10*time.Second, "every event", func() bool { n, _ := rcv.count(id); return n == len(want) })
	if got := rcv.ids(id); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	if _, most := rcv.count(id); most > 1 {
		t.Errorf("%d requests at once to an ordered subscription", most)
	}
}

// TestPartitionsMoveToTheOthers: a replica that stops hands its partitions
// to the one left, which delivers what follows.
func TestPartitionsMoveToTheOthers(t *testing.T) {
	conn, store, rcv, url, svcs := setup(t, 1)
	cfg := DefaultConfig()
	cfg.AllowPrivate = true
	second, stop := start(t, conn, cfg, prometheus.NewRegistry())
	natstest.WaitFor(t, 10*time.Second, "a share for the new replica", func() bool { return owned(second) > 0 && owned(svcs[0]) < bus.Partitions })
	id := payloadSub(t, store, url, "doc.changed", 3)
	time.Sleep(300 * time.Millisecond)
	publishEvents(t, conn, "doc.changed", 20)
	stop()
	began := time.Now()
	natstest.WaitFor(t, 10*time.Second, "every partition with the replica left", func() bool { return owned(svcs[0]) == bus.Partitions })
	t.Logf("partitions moved in %v", time.Since(began))
	natstest.WaitFor(t, 10*time.Second, "every delivery", func() bool { n, _ := rcv.count(id); return n >= 20 })
}

// TestOrderedSwitchedOff: an ordered subscription waiting for a retry is
// switched to concurrent delivery; the events from its ordered time still
// come, in order, and those after the switch come too, each once.
func TestOrderedSwitchedOff(t *testing.T) {
	ctx := context.Background()
	conn, store, rcv, url, _ := setup(t, 1)
	id := payloadSub(t, store, url, "doc.changed", 5, func(s *subs.Subscription) {
		s.Ordered = true
		s.RetrySchedule = []time.Duration{time.Second}
	})
	time.Sleep(300 * time.Millisecond)
	rcv.fail["doc.changed-1"] = http.StatusInternalServerError
	publishEvents(t, conn, "doc.changed", 3)
	natstest.WaitFor(t, 5*time.Second, "the failed attempt", func() bool { return rcv.tried("doc.changed-1") })
	st, err := conn.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, id, func(s *subs.Subscription) error {
		s.Ordered, s.OrderedUntil = false, info.State.LastSeq
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ev := `{"specversion":"1.0","id":"after","source":"/t","type":"doc.changed","subject":"d","data":{}}`
	if _, err := conn.JS.Publish(ctx, bus.EventsSubject("acme", "doc.changed"), []byte(ev)); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 10*time.Second, "every event", func() bool { n, _ := rcv.count(id); return n >= 4 })
	time.Sleep(500 * time.Millisecond) // nothing more comes
	got := rcv.ids(id)
	var ordered []string
	for _, e := range got {
		if e != "after" {
			ordered = append(ordered, e)
		}
	}
	if len(got) != 4 || !slices.Equal(ordered, []string{"doc.changed-0", "doc.changed-1", "doc.changed-2"}) {
		t.Errorf("delivered %v", got)
	}
}

// TestKilledReplicasPartitionsMove: a replica whose connection dies
// without a word (as when its process is killed) leaves its key to expire
// and its pins to lapse; the one left takes its partitions over within a
// few seconds and delivers what follows.
func TestKilledReplicasPartitionsMove(t *testing.T) {
	conn, store, rcv, url, svcs := setup(t, 1)
	other := natstest.Connect(t, conn, nil)
	cfg := DefaultConfig()
	cfg.AllowPrivate = true
	victim, err := New(context.Background(), cfg, other, natstest.Log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = victim.Run(ctx) }()
	natstest.WaitFor(t, 10*time.Second, "a share for each replica", func() bool { return owned(victim) > 0 && owned(svcs[0]) < bus.Partitions })
	// A subscription in the victim's share.
	var id string
	for id == "" {
		s := payloadSub(t, store, url, "doc.changed", 3)
		victim.parts.mu.Lock()
		if victim.parts.owned[bus.Partition(s)] != nil {
			id = s
		}
		victim.parts.mu.Unlock()
	}
	time.Sleep(300 * time.Millisecond)
	flow, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		for i := 0; flow.Err() == nil; i++ {
			ev := fmt.Sprintf(`{"specversion":"1.0","id":"f-%d","source":"/t","type":"doc.changed","subject":"d","data":{}}`, i)
			_, _ = conn.JS.Publish(flow, bus.EventsSubject("acme", "doc.changed"), []byte(ev))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	natstest.WaitFor(t, 10*time.Second, "deliveries by the victim", func() bool { n, _ := rcv.count(id); return n > 10 })
	other.NC.Close()
	killed := time.Now()
	seen, _ := rcv.count(id)
	last, longest := killed, time.Duration(0)
	for time.Since(killed) < 8*time.Second {
		if n, _ := rcv.count(id); n != seen {
			seen, longest, last = n, max(longest, time.Since(last)), time.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	longest = max(longest, time.Since(last))
	t.Logf("longest pause in deliveries after the kill: %v", longest)
	if longest > 5*time.Second {
		t.Errorf("deliveries paused for %v after a replica died", longest)
	}
}

// TestBacklogAloneStaysHeld: a subscription whose backlog outlasts the
// hold age, alone in its partition, keeps its tasks held rather than
// storing them again for later: with no one waiting behind them that
// frees nothing, and made a backlog go round at a third of the speed.
func TestBacklogAloneStaysHeld(t *testing.T) {
	ctx := context.Background()
	conn, store, rcv, url, svcs := setup(t, 1)
	sub := payloadSub(t, store, url, "doc.changed", 1)
	rcv.delay[sub] = 10 * time.Millisecond
	knows(t, svcs, sub)
	deliveries, err := conn.JS.Stream(ctx, bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	want := publishEvents(t, conn, "doc.changed", 400) // 4 s at one at a time, past holdAge
	stored := 0
	natstest.WaitFor(t, 60*time.Second, "every delivery", func() bool {
		if info, err := deliveries.Info(ctx, jetstream.WithSubjectFilter(bus.RetryWildcard)); err == nil {
			stored = max(stored, len(info.State.Subjects))
		}
		got, _ := rcv.count(sub)
		return got >= len(want)
	})
	if stored > 0 {
		t.Errorf("%d tasks stored again for later with no other subscription waiting", stored)
	}
}

// nextSubRevision is a revision that the next subscription made will have
// or pass: as a task's or timer's, one made by a replica that has seen a
// subscription this one's index has not.
func nextSubRevision(t *testing.T, conn *jet.Conn, store *subs.Store) uint64 {
	t.Helper()
	kv, err := conn.JS.Stream(context.Background(), "KV_"+store.Bucket().Bucket())
	if err != nil {
		t.Fatal(err)
	}
	info, err := kv.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq + 1
}

// TestTaskBeforeItsSubscriptionIsSeen: a replica that saw a subscription
// made a moment ago routes an event's task to it before the partition's
// owner has seen it. The owner waits for its view of the subscriptions to
// come as far as the task says, then delivers it, rather than drop it as
// the task of a deleted subscription.
func TestTaskBeforeItsSubscriptionIsSeen(t *testing.T) {
	conn, store, rcv, url, _ := setup(t, 1)
	ctx := context.Background()
	id := subs.NewID()
	ev := []byte(`{"specversion":"1.0","id":"early-1","source":"/t","type":"doc.changed","subject":"d","data":{}}`)
	task := bus.DeliveryTask(id, 1, time.Now(), ev, "")
	bus.SetSubRevision(task.Header, nextSubRevision(t, conn, store))
	if _, err := conn.JS.PublishMsg(ctx, task); err != nil {
		t.Fatal(err)
	}
	// Taken and found unknown a few times meanwhile.
	time.Sleep(500 * time.Millisecond)
	payloadSub(t, store, url, "doc.changed", 1, func(s *subs.Subscription) { s.ID, s.URL = id, url+"/"+id })
	natstest.WaitFor(t, 10*time.Second, "the task delivered", func() bool { return len(rcv.ids(id)) == 1 })
}

// tasksLeft counts DELIVERIES' messages but the dispatchers' tail markers.
func tasksLeft(ctx context.Context, conn *jet.Conn) (uint64, error) {
	tasks, err := natstest.Tasks(ctx, conn.JS)
	var n uint64
	for _, c := range tasks {
		n += c
	}
	return n, err
}
