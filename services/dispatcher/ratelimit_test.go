package dispatcher

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// timed starts a receiver that notes when each subscription's requests
// came (the URL path names the subscription).
func timed(t *testing.T) (*pings, string) {
	t.Helper()
	rcv := &pings{at: map[string][]time.Time{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	return rcv, srv.URL
}

// knows waits until every dispatcher has the subscriptions in its index.
func knows(t *testing.T, svcs []*Service, ids ...string) {
	t.Helper()
	natstest.WaitFor(t, 5*time.Second, "the dispatchers know the subscriptions", func() bool {
		for _, s := range svcs {
			for _, id := range ids {
				if s.index.get(id) == nil {
					return false
				}
			}
		}
		return true
	})
}

// checkRate fails the test if requests came faster than perSec with
// burst, or, over the whole run, slower than least per second.
func checkRate(t *testing.T, at []time.Time, perSec, burst int, least float64) {
	t.Helper()
	// In any window, at most burst plus what the rate adds over it. The
	// times are arrivals, not the limiter's tokens: a request that took
	// long from its token to the receiver (a loaded machine, the race
	// detector) brings the next one closer by as much, hence the slack.
	const jitter = 100 * time.Millisecond
	for i := range at {
		for j := i + burst; j < len(at); j++ {
			if need := time.Duration(j-i-burst+1) * time.Second / time.Duration(perSec); at[j].Sub(at[i]) < need-jitter {
				t.Errorf("requests %d to %d within %v: faster than %d/s with burst %d", i, j, at[j].Sub(at[i]), perSec, burst)
				return
			}
		}
	}
	if span := at[len(at)-1].Sub(at[0]); span > 0 {
		if got := float64(len(at)-1) / span.Seconds(); got < least {
			t.Errorf("%d requests in %v: %.2f/s, want at least %.2f/s", len(at), span, got, least)
		}
		t.Logf("%d requests in %v: %.2f/s (limit %d/s, burst %d)", len(at), span, float64(len(at)-1)/span.Seconds(), perSec, burst)
	}
}

// TestRateLimitSpacesDeliveries: a subscription limited to 5/s with burst
// 1 gets its 20 deliveries spaced as the limit says, more than it can take
// within the hold time, so some wait as stored tasks; another subscription
// of the same partition gets its deliveries at once meanwhile.
func TestRateLimitSpacesDeliveries(t *testing.T) {
	conn, store, _, _, svcs := setup(t, 1)
	rcv, url := timed(t)
	const n, perSec, burst = 20, 5, 1
	limited := payloadSub(t, store, url, "doc.changed", 10, func(s *subs.Subscription) { s.RateLimit, s.RateBurst = perSec, burst })
	free := payloadSub(t, store, url, "doc.changed", 10, func(s *subs.Subscription) {
		s.ID = samePartition(limited)
		s.URL = url + "/" + s.ID
	})
	knows(t, svcs, limited, free)
	start := time.Now()
	publishEvents(t, conn, "doc.changed", n)
	natstest.WaitFor(t, 10*time.Second, "the unlimited subscription's deliveries", func() bool { return len(rcv.of(free)) == n })
	if took := time.Since(start); took > time.Second {
		t.Errorf("the unlimited subscription took %v beside a limited one", took)
	}
	if got := len(rcv.of(limited)); got > n/2 {
		t.Errorf("the limited subscription had %d of %d deliveries while the other had all", got, n)
	}
	natstest.WaitFor(t, 20*time.Second, "the limited subscription's deliveries", func() bool { return len(rcv.of(limited)) >= n })
	checkRate(t, rcv.of(limited), perSec, burst, 0.7*perSec)
}

// TestRateLimitAcrossReplicas: with two replicas, and the one delivering a
// limited subscription stopped half-way, every delivery comes (none is
// dropped) and the rate holds but for the new owner's one full burst.
func TestRateLimitAcrossReplicas(t *testing.T) {
	conn, store, _, _, _ := setup(t, 0)
	rcv, url := timed(t)
	cfg := DefaultConfig()
	cfg.AllowPrivate = true
	var svcs []*Service
	var stops []func()
	for range 2 {
		svc, stop := start(t, conn, cfg, prometheus.NewRegistry())
		svcs, stops = append(svcs, svc), append(stops, stop)
	}
	natstest.WaitFor(t, 10*time.Second, "both replicas own partitions", func() bool {
		return owned(svcs[0]) > 0 && owned(svcs[1]) > 0 && owned(svcs[0])+owned(svcs[1]) == bus.Partitions
	})
	const n, perSec, burst = 16, 4, 2
	id := payloadSub(t, store, url, "doc.changed", 10, func(s *subs.Subscription) { s.RateLimit, s.RateBurst = perSec, burst })
	knows(t, svcs, id)
	owner := 0
	if !ownsPartitionOf(svcs[0], id) {
		owner = 1
	}
	publishEvents(t, conn, "doc.changed", n)
	natstest.WaitFor(t, 10*time.Second, "a third of the deliveries", func() bool { return len(rcv.of(id)) >= n/3 })
	stops[owner]()
	natstest.WaitFor(t, 30*time.Second, "every delivery", func() bool { return len(rcv.of(id)) >= n })
	// The new owner starts with a full bucket: one burst more.
	checkRate(t, rcv.of(id), perSec, 2*burst, 0.5*perSec)
	if got := len(rcv.of(id)); got != n {
		t.Errorf("%d deliveries of %d events", got, n)
	}
}

func ownsPartitionOf(s *Service, id string) bool {
	s.parts.mu.Lock()
	defer s.parts.mu.Unlock()
	return s.parts.owned[bus.Partition(id)] != nil
}

// TestRateLimitChangedInFlight: a limit raised while deliveries wait lets
// them go at once; one lowered while they wait spaces the rest at the new
// rate; one removed lets the next go unlimited; and a deleted subscription's bucket goes.
func TestRateLimitChangedInFlight(t *testing.T) {
	conn, store, _, _, svcs := setup(t, 1)
	rcv, url := timed(t)
	ctx := context.Background()
	const n = 8
	raised := payloadSub(t, store, url, "a.changed", 10, func(s *subs.Subscription) { s.RateLimit, s.RateBurst = 1, 1 })
	lowered := payloadSub(t, store, url, "b.changed", 10, func(s *subs.Subscription) { s.RateLimit, s.RateBurst = 5, 1 })
	knows(t, svcs, raised, lowered)
	publishEvents(t, conn, "a.changed", n)
	natstest.WaitFor(t, 5*time.Second, "the first delivery at 1/s", func() bool { return len(rcv.of(raised)) >= 1 })
	if _, err := store.Update(ctx, raised, func(s *subs.Subscription) error { s.RateLimit = 1000; return nil }); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	natstest.WaitFor(t, 10*time.Second, "the rest after the raise", func() bool { return len(rcv.of(raised)) == n })
	// At 1/s the rest would take 7 s.
	if took := time.Since(changed); took > 2*time.Second {
		t.Errorf("the raised limit let the rest go only after %v", took)
	}

	publishEvents(t, conn, "b.changed", n)
	natstest.WaitFor(t, 5*time.Second, "two deliveries at 5/s", func() bool { return len(rcv.of(lowered)) >= 2 })
	if _, err := store.Update(ctx, lowered, func(s *subs.Subscription) error { s.RateLimit = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 10*time.Second, "the lowered subscription's deliveries", func() bool { return len(rcv.of(lowered)) == n })
	// The third may have gone before the change was seen.
	checkRate(t, rcv.of(lowered)[3:], 2, 1, 0.7*2)

	knowsLimit := func(id string, limit int) {
		natstest.WaitFor(t, 5*time.Second, "the dispatcher knows the new limit", func() bool {
			e := svcs[0].index.get(id)
			return e != nil && e.sub.RateLimit == limit
		})
	}
	if _, err := store.Update(ctx, lowered, func(s *subs.Subscription) error { s.RateLimit, s.RateBurst = 0, 0; return nil }); err != nil {
		t.Fatal(err)
	}
	knowsLimit(lowered, 0)
	sent := time.Now()
	publishEvents(t, conn, "b.changed", n)
	natstest.WaitFor(t, 10*time.Second, "the unlimited deliveries", func() bool { return len(rcv.of(lowered)) == 2*n })
	if took := time.Since(sent); took > time.Second {
		t.Errorf("without a limit, %d deliveries took %v", n, took)
	}

	for _, id := range []string{raised, lowered} {
		if _, err := store.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	natstest.WaitFor(t, 5*time.Second, "no bucket left of deleted subscriptions", func() bool {
		l := svcs[0].parts.limits
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.by) == 0
	})
}
