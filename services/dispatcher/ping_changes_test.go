package dispatcher

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// TestRunningTimerPastItsTimeIsNoReasonToAskAgain: nats-server fires a
// timer up to a scheduler tick (250 ms) after its time. A change routed in
// that gap finds the timer still running; that timer fires after the
// change was stored, so the change is covered, and setting the timer once
// more only to be refused again would be a loop of requests until it
// fires. Each change may try to set the timer at most a couple of times.
func TestRunningTimerPastItsTimeIsNoReasonToAskAgain(t *testing.T) {
	rcv := &pings{at: map[string][]time.Time{}}
	cfg := DefaultConfig()
	cfg.NotifyDelay = 100 * time.Millisecond
	conn, _, sub, _, _ := pingFixture(t, cfg, rcv)
	var starts atomic.Int64
	s, err := conn.NC.Subscribe(bus.NotifySched(sub.ID), func(*nats.Msg) { starts.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Unsubscribe() })

	const events = 150
	for range events {
		publishEvents(t, conn, "doc.changed", 1)
		time.Sleep(10 * time.Millisecond)
	}
	natstest.WaitFor(t, 10*time.Second, "a ping after the changes", func() bool { return len(rcv.of(sub.ID)) > 0 })
	time.Sleep(500 * time.Millisecond)
	if n := starts.Load(); n > 2*events {
		t.Errorf("%d attempts to set the timer for %d changes", n, events)
	}
	t.Logf("%d attempts to set the timer for %d changes, %d pings", starts.Load(), events, len(rcv.of(sub.ID)))
}

// pingFixture is one ping subscription on one dispatcher run with cfg,
// its URL on a receiver served by handler.
func pingFixture(t *testing.T, cfg Config, handler http.Handler) (*jet.Conn, *subs.Store, subs.Subscription, string, *Service) {
	t.Helper()
	conn, store := startStore(t, bus.DefaultLimits())
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "erp", EventTypes: []string{"doc.changed"},
		Mode: subs.ModePing, Active: true, Secret: subs.NewSecret(), Created: time.Now()}
	sub.URL = srv.URL + "/" + sub.ID
	if err := store.Create(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	cfg.AllowPrivate = true
	svc, _ := start(t, conn, cfg, prometheus.NewRegistry())
	natstest.WaitFor(t, 10*time.Second, "the subscription known", func() bool { return svc.index.get(sub.ID) != nil })
	return conn, store, sub, srv.URL, svc
}

// TestPingSettingsChangedWhilePending: what a subscription says when its
// timer fires is what the ping follows: a new URL gets it, the old does
// not; switched off, it gets none even though the timer was left running;
// deleted, it gets none and no state comes back.
func TestPingSettingsChangedWhilePending(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.NotifyDelay = 400 * time.Millisecond
	rcv := &pings{at: map[string][]time.Time{}}
	conn, store, sub, base, svc := pingFixture(t, cfg, rcv)
	waitRev := func(id string) {
		t.Helper()
		natstest.WaitFor(t, 5*time.Second, "the change seen", func() bool {
			e, err := store.Bucket().Get(ctx, bus.SubKey(id))
			return err == nil && svc.index.seen.Load() >= e.Revision()
		})
	}

	t.Run("url", func(t *testing.T) {
		publishEvents(t, conn, "doc.changed", 1)
		if _, err := store.Update(ctx, sub.ID, func(s *subs.Subscription) error { s.URL = base + "/moved"; return nil }); err != nil {
			t.Fatal(err)
		}
		natstest.WaitFor(t, 5*time.Second, "the ping at the new URL", func() bool { return len(rcv.of("moved")) == 1 })
		if n := len(rcv.of(sub.ID)); n != 0 {
			t.Errorf("%d pings at the old URL", n)
		}
	})
	time.Sleep(2 * cfg.NotifyDelay)

	t.Run("off", func(t *testing.T) {
		publishEvents(t, conn, "doc.changed", 1)
		if _, err := store.Update(ctx, sub.ID, func(s *subs.Subscription) error { s.Active = false; return nil }); err != nil {
			t.Fatal(err)
		}
		before := len(rcv.of("moved"))
		time.Sleep(3 * cfg.NotifyDelay)
		if n := len(rcv.of("moved")) - before; n != 0 {
			t.Errorf("%d pings to a subscription switched off", n)
		}
	})

	t.Run("on again", func(t *testing.T) {
		if _, err := store.Update(ctx, sub.ID, func(s *subs.Subscription) error { s.Active = true; return nil }); err != nil {
			t.Fatal(err)
		}
		waitRev(sub.ID)
		before := len(rcv.of("moved"))
		publishEvents(t, conn, "doc.changed", 1)
		natstest.WaitFor(t, 5*time.Second, "a ping once on again", func() bool { return len(rcv.of("moved")) == before+1 })
	})
	time.Sleep(2 * cfg.NotifyDelay)

	t.Run("deleted", func(t *testing.T) {
		before := len(rcv.of("moved"))
		publishEvents(t, conn, "doc.changed", 1)
		if _, err := store.Delete(ctx, sub.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * cfg.NotifyDelay)
		if n := len(rcv.of("moved")) - before; n != 0 {
			t.Errorf("%d pings to a deleted subscription", n)
		}
		if _, err := store.StateBucket().Get(ctx, sub.ID); err == nil {
			t.Errorf("the state of the deleted subscription is back")
		}
	})
}

// TestFeedReadDuringPingLeavesNoneUnacked: the receiver reads the feed
// while the ping is still in flight, as a receiver that reacts at once
// does. The ping was counted when claimed, and the read acknowledges it:
// once it ends, the count is zero.
func TestFeedReadDuringPingLeavesNoneUnacked(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.NotifyDelay = 200 * time.Millisecond
	var store *subs.Store
	var id atomic.Value
	done := make(chan struct{}, 4)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := store.ResetUnacked(ctx, id.Load().(string)); err != nil {
			t.Error(err)
		}
		time.Sleep(100 * time.Millisecond)
		done <- struct{}{}
	})
	conn, st, sub, _, _ := pingFixture(t, cfg, handler)
	store = st
	id.Store(sub.ID)
	publishEvents(t, conn, "doc.changed", 1)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no ping")
	}
	natstest.WaitFor(t, 5*time.Second, "the ping recorded", func() bool {
		s, err := store.State(ctx, sub.ID)
		return err == nil && s.Claim == 0 && !s.Last.IsZero()
	})
	if s, _ := store.State(ctx, sub.ID); s.Unacked != 0 {
		t.Errorf("unacked %d after the feed was read during the ping", s.Unacked)
	}
}

// TestFailingPingReceiverIsCappedAndCounted: a receiver that answers 500,
// or never answers, gets a ping per change at most once per delay, each
// counted, until the cap; nothing more comes until the feed is read, and
// then pings go on.
func TestFailingPingReceiverIsCappedAndCounted(t *testing.T) {
	ctx := context.Background()
	for _, hang := range []bool{false, true} {
		t.Run(map[bool]string{false: "500", true: "hang"}[hang], func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.NotifyDelay = 150 * time.Millisecond
			cfg.PingTimeout = 300 * time.Millisecond
			cfg.MaxUnacked = 3
			var n atomic.Int64
			handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				if hang {
					<-r.Context().Done()
					return
				}
				w.WriteHeader(http.StatusInternalServerError)
			})
			conn, store, sub, _, _ := pingFixture(t, cfg, handler)
			for range 40 {
				publishEvents(t, conn, "doc.changed", 1)
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(cfg.NotifyDelay + cfg.PingTimeout + 500*time.Millisecond)
			s, err := store.State(ctx, sub.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := n.Load(); got != int64(cfg.MaxUnacked) || s.Unacked != cfg.MaxUnacked || s.Claim != 0 {
				t.Fatalf("%d pings, state %+v; want %d pings, as many unacked, no claim left", got, s, cfg.MaxUnacked)
			}
			if _, err := store.ResetUnacked(ctx, sub.ID); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // the reset reaches the index
			publishEvents(t, conn, "doc.changed", 1)
			natstest.WaitFor(t, 5*time.Second, "a ping after the reset", func() bool { return n.Load() == int64(cfg.MaxUnacked)+1 })
		})
	}
}

// TestPassedOverAtTheCapPingedAfterReset: a change stored after the count
// was reset, routed by a replica that had not seen the reset yet, got no
// timer; the reset's writer read EVENTS before it and set none either.
// The replica starts the timer once it sees the reset. A change stored
// before the reset is left to the reset's writer.
func TestPassedOverAtTheCapPingedAfterReset(t *testing.T) {
	ctx := context.Background()
	rcv := &pings{at: map[string][]time.Time{}}
	cfg := DefaultConfig()
	cfg.MaxUnacked = 1
	cfg.NotifyDelay = 200 * time.Millisecond
	conn, store, sub, _, svc := pingFixture(t, cfg, rcv)
	notify, err := conn.JS.Stream(ctx, bus.StreamNotify)
	if err != nil {
		t.Fatal(err)
	}
	setUnacked := func(n int) {
		t.Helper()
		if _, _, err := store.UpdateState(ctx, sub.ID, func(st *subs.PingState) error { st.Unacked = n; return nil }); err != nil {
			t.Fatal(err)
		}
		natstest.WaitFor(t, 5*time.Second, "the count seen", func() bool { return svc.index.unackedOf(sub.ID) == n })
	}
	for _, after := range []bool{false, true} {
		setUnacked(1)
		stored := time.Now().Add(-time.Second)
		if after {
			stored = time.Now().Add(time.Second) // stored after the reset below
		}
		if err := svc.pings.schedule(ctx, svc.index.get(sub.ID), stored); err != nil {
			t.Fatal(err)
		}
		if _, err := notify.GetLastMsgForSubject(ctx, bus.NotifySched(sub.ID)); err == nil {
			t.Fatal("a timer set at the cap")
		}
		setUnacked(0)
		if !after {
			time.Sleep(500 * time.Millisecond)
			if n := len(rcv.of(sub.ID)); n != 0 {
				t.Fatalf("%d pings for a change stored before the reset, which its writer answers for", n)
			}
			continue
		}
		natstest.WaitFor(t, 5*time.Second, "a ping for the change passed over", func() bool { return len(rcv.of(sub.ID)) == 1 })
	}
}
