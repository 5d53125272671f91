package dispatcher

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// pings records when each subscription's URL was called.
type pings struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (p *pings) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := strings.TrimPrefix(r.URL.Path, "/")
	p.at[id] = append(p.at[id], time.Now())
}

func (p *pings) of(id string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.at[id]...)
}

// TestThreeReplicasKeepThePingRules runs three dispatchers on a three-node
// JetStream cluster with R3 streams, under a steady flow of changes to
// twenty subscriptions, and stops one dispatcher half-way. Every
// subscription must get pings never closer than the delay, and a ping
// after its last change.
func TestThreeReplicasKeepThePingRules(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	const (
		delay = 500 * time.Millisecond
		nSubs = 20
		flow  = 4 * time.Second
	)
	limits := bus.DefaultLimits()
	limits.Replicas = 3
	cluster := natstest.StartCluster(t, 3)
	pub := cluster.Connect(t, limits)
	ctx := context.Background()

	rcv := &pings{at: map[string][]time.Time{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	store, err := subs.Open(ctx, pub.JS)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range nSubs {
		sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: fmt.Sprint("sys", i), EventTypes: []string{fmt.Sprintf("doc%d.changed", i%5)},
			Mode: subs.ModePing, Active: true, Secret: subs.NewSecret(), Created: time.Now()}
		sub.URL = srv.URL + "/" + sub.ID
		if err := store.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sub.ID)
	}

	cfg := DefaultConfig()
	cfg.NotifyDelay = delay
	cfg.PingTimeout = 2 * time.Second
	cfg.AllowPrivate = true // the receiver is on loopback
	stops := make([]func(), 3)
	for i := range 3 {
		_, stops[i] = start(t, cluster.Connect(t, limits), cfg, prometheus.NewRegistry())
	}
	time.Sleep(500 * time.Millisecond) // consumers in place before the first change

	lastChange := map[string]time.Time{} // doc type -> time of its last stored change
	start := time.Now()
	stopped := false
	for n := 0; time.Since(start) < flow; n++ {
		typ := fmt.Sprintf("doc%d.changed", n%5)
		if _, err := pub.JS.Publish(ctx, bus.EventsSubject("acme", typ), []byte(`{"specversion":"1.0","id":"x","source":"/t","type":"`+typ+`","subject":"d"}`)); err != nil {
			t.Fatal(err)
		}
		lastChange[typ] = time.Now()
		if !stopped && time.Since(start) > flow/2 {
			stops[0]() // one replica goes away mid-flow
			stopped = true
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every subscription gets its trailing ping; on a loaded machine that
	// may take longer than the delay, so wait for it rather than a fixed time.
	natstest.WaitForErr(t, 20*time.Second, "every subscription's trailing ping", func() error {
		var without []int
		for i, id := range ids {
			got := rcv.of(id)
			if len(got) == 0 || !got[len(got)-1].After(lastChange[fmt.Sprintf("doc%d.changed", i%5)]) {
				without = append(without, i)
			}
		}
		if len(without) > 0 {
			return fmt.Errorf("no ping after the last change of subscriptions %v", without)
		}
		return nil
	})
	time.Sleep(delay) // and nothing closer than the delay follows it

	total := 0
	for i, id := range ids {
		got := rcv.of(id)
		total += len(got)
		for j := 1; j < len(got); j++ {
			if gap := got[j].Sub(got[j-1]); gap < delay {
				t.Errorf("subscription %d: pings %d and %d only %v apart", i, j-1, j, gap)
			}
		}
		if max := int(flow/delay) + 2; len(got) > max {
			t.Errorf("subscription %d: %d pings in %v, at most %d fit", i, len(got), flow, max)
		}
	}
	t.Logf("%d pings to %d subscriptions over %v of changes, delay %v", total, nSubs, flow, delay)
}
