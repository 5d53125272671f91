package ingest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/subs"
)

// TestFeedReadRearmsPing: a change stored after the feed was read but
// before the unacked counter was reset found the ping subscription at its
// cap, so no ping was set for it. The reset, which comes after the read,
// sets one. The read, the change and the reset are made in that order
// here, so the race is certain rather than a matter of luck.
func TestFeedReadRearmsPing(t *testing.T) {
	ctx := context.Background()
	_, svc, conn, _ := start(t, DefaultConfig())
	store, err := subs.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "erp", Mode: subs.ModePing, EventTypes: []string{"invoice.changed"},
		URL: "https://erp.example/ping", Active: true, Secret: subs.NewSecret()}
	if err := store.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.UpdateState(ctx, sub.ID, func(st *subs.PingState) error { st.Unacked = 100; return nil }); err != nil {
		t.Fatal(err)
	}
	notify, err := conn.JS.Stream(ctx, bus.StreamNotify)
	if err != nil {
		t.Fatal(err)
	}
	timer := func() bool {
		_, err := notify.GetLastMsgForSubject(ctx, bus.NotifySched(sub.ID))
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	change := func(id string) {
		ev := `{"specversion":"1.0","id":"` + id + `","source":"/s","type":"invoice.changed","subject":"` + id + `"}`
		if _, err := conn.JS.Publish(ctx, bus.EventsSubject("acme", "invoice.changed"), []byte(ev)); err != nil {
			t.Fatal(err)
		}
	}
	fq := feedQuery{org: "acme", system: "erp", typ: "invoice.changed", limit: defaultChanges}

	// Everything stored was answered: the counter is reset, no ping is set.
	change("I-1")
	res, err := svc.queryFeed(ctx, fq)
	if err != nil || len(res.Changes) != 1 {
		t.Fatalf("first read: %v %v", res, err)
	}
	if err := svc.ackPings(ctx, fq, res); err != nil {
		t.Fatal(err)
	}
	if st, _ := store.State(ctx, sub.ID); st.Unacked != 0 || timer() {
		t.Fatalf("after a read that answered everything: unacked %d, timer %v", st.Unacked, timer())
	}

	// A change between the read and the reset gets its ping.
	if _, _, err := store.UpdateState(ctx, sub.ID, func(st *subs.PingState) error { st.Unacked = 100; return nil }); err != nil {
		t.Fatal(err)
	}
	if res, err = svc.queryFeed(ctx, fq); err != nil || len(res.Changes) != 0 {
		t.Fatalf("second read: %v %v", res, err)
	}
	change("I-2")
	before := time.Now()
	if err := svc.ackPings(ctx, fq, res); err != nil {
		t.Fatal(err)
	}
	m, err := notify.GetLastMsgForSubject(ctx, bus.NotifySched(sub.ID))
	if err != nil {
		t.Fatalf("no ping timer for the change stored between read and reset: %v", err)
	}
	if at := jet.TimerAt(m.Header); at.Before(before.Add(DefaultConfig().NotifyDelay)) {
		t.Fatalf("the ping is due at %v, sooner than the notify delay", at)
	}
	if st, _ := store.State(ctx, sub.ID); st.Unacked != 0 {
		t.Fatalf("unacked %d after the read", st.Unacked)
	}
}
