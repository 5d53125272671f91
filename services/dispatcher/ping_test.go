package dispatcher

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// TestHungPingReceiversHoldUpOnlyThemselves: 300 subscriptions whose
// receivers accept and never answer, and one healthy beside them: the
// healthy one is pinged its delay after its change, not after theirs
// have timed out.
func TestHungPingReceiversHoldUpOnlyThemselves(t *testing.T) {
	ctx := context.Background()
	conn, store := startStore(t, bus.DefaultLimits())
	release := make(chan struct{})
	rcv := &pings{at: map[string][]time.Time{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/hang/") {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		rcv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	const hung = 300
	for i := range hung + 1 {
		sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: fmt.Sprint("sys", i), EventTypes: []string{"doc.changed"},
			Mode: subs.ModePing, Active: true, Secret: subs.NewSecret(), Created: time.Now()}
		sub.URL = srv.URL + "/hang/" + sub.ID
		if i == hung {
			sub.System, sub.EventTypes, sub.URL = "healthy", []string{"other.changed"}, srv.URL+"/"+sub.ID
		}
		if err := store.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.NotifyDelay = 300 * time.Millisecond
	cfg.PingTimeout = 20 * time.Second
	cfg.AllowPrivate = true
	svc, _ := start(t, conn, cfg, prometheus.NewRegistry())
	// Cleanups run last first: the hung requests end before the stop
	// waits for them.
	t.Cleanup(func() { close(release) })
	natstest.WaitFor(t, 10*time.Second, "every subscription known", func() bool { return len(svc.index.all()) == hung+1 })

	publish := func(typ string) time.Time {
		if _, err := conn.JS.Publish(ctx, bus.EventsSubject("acme", typ), []byte(`{"specversion":"1.0","id":"`+typ+`","source":"/t","type":"`+typ+`","subject":"d"}`)); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	publish("doc.changed")
	time.Sleep(cfg.NotifyDelay + 500*time.Millisecond) // the hung pings are out
	changed := publish("other.changed")
	var healthy string
	for _, e := range svc.index.all() {
		if e.sub.System == "healthy" {
			healthy = e.sub.ID
		}
	}
	natstest.WaitFor(t, 10*time.Second, "the healthy subscription's ping", func() bool { return len(rcv.of(healthy)) > 0 })
	if late := rcv.of(healthy)[0].Sub(changed) - cfg.NotifyDelay; late > 2*time.Second {
		t.Errorf("the healthy ping came %v after its delay, beside %d hung receivers", late, hung)
	}
}

// TestPingBeforeItsSubscriptionIsSeen: a ping timer set by a replica that
// saw a subscription made a moment ago fires on one that has not seen it
// yet. That one waits for its view of the subscriptions to come as far as
// the timer says, then pings, rather than skip the ping as the timer of a
// deleted subscription.
func TestPingBeforeItsSubscriptionIsSeen(t *testing.T) {
	ctx := context.Background()
	conn, store := startStore(t, bus.DefaultLimits())
	rcv, url := timed(t)
	cfg := DefaultConfig()
	cfg.AllowPrivate = true
	start(t, conn, cfg, prometheus.NewRegistry())
	id := subs.NewID()
	due := nats.NewMsg(bus.NotifyDue(id))
	bus.SetSubRevision(due.Header, nextSubRevision(t, conn, store))
	if _, err := conn.JS.PublishMsg(ctx, due); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // taken and found unknown a few times meanwhile
	sub := subs.Subscription{ID: id, Org: "acme", System: "late", EventTypes: []string{"doc.changed"}, URL: url + "/" + id,
		Mode: subs.ModePing, Active: true, Secret: subs.NewSecret(), Created: time.Now()}
	if err := store.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 10*time.Second, "the ping", func() bool { return len(rcv.of(id)) == 1 })
}

// TestSilentReplicasPingIsMadeUnderItsID: a replica claimed a ping, counted
// it, and went silent; the subscription is at its cap. The next due
// message takes the claim over and makes that ping, under its webhook-id
// and without counting it again, so the count matches the pings the
// receiver tells apart; nor is the ping lost to the cap.
func TestSilentReplicasPingIsMadeUnderItsID(t *testing.T) {
	ctx := context.Background()
	conn, store := startStore(t, bus.DefaultLimits())
	ids := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids <- r.Header.Get("webhook-id")
	}))
	t.Cleanup(srv.Close)
	cfg := DefaultConfig()
	cfg.AllowPrivate = true
	cfg.NotifyDelay = 100 * time.Millisecond
	cfg.PingTimeout = time.Second
	cfg.MaxUnacked = 2
	sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "erp", EventTypes: []string{"doc.changed"}, URL: srv.URL,
		Mode: subs.ModePing, Active: true, Secret: subs.NewSecret(), Created: time.Now()}
	if err := store.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	const silent = 1 << 40 // the due message the silent replica claimed
	if _, _, err := store.UpdateState(ctx, sub.ID, func(st *subs.PingState) error {
		st.Unacked, st.Claim, st.ClaimAt = cfg.MaxUnacked, silent, time.Now().Add(-cfg.PingTimeout-claimGrace)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	start(t, conn, cfg, prometheus.NewRegistry())
	if _, err := conn.JS.PublishMsg(ctx, nats.NewMsg(bus.NotifyDue(sub.ID))); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-ids:
		if want := fmt.Sprintf("ping_%s_%d", sub.ID, uint64(silent)); id != want {
			t.Errorf("webhook-id %q, want the silent replica's %q", id, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the silent replica's ping was never made")
	}
	natstest.WaitFor(t, 5*time.Second, "the ping recorded", func() bool {
		st, err := store.State(ctx, sub.ID)
		return err == nil && st.Claim == 0 && !st.Last.IsZero()
	})
	if st, _ := store.State(ctx, sub.ID); st.Unacked != cfg.MaxUnacked {
		t.Errorf("unacked %d after the taken-over ping, want %d: it was counted when claimed", st.Unacked, cfg.MaxUnacked)
	}
}
