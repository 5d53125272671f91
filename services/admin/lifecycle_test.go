package admin_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/book"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/subs"
)

// TestSwitchedOnPingOwesChanges: a change stored while a ping subscription
// at its cap of unacknowledged pings is switched on may be routed by a
// dispatcher that still sees the old count, which sets no timer, so the
// switch sets it. No dispatcher runs here: a timer can only come from the
// switch. Changes made before the switch are owed none.
func TestSwitchedOnPingOwesChanges(t *testing.T) {
	ctx, api, conn := busAdmin(t)
	store, err := subs.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "erp", Mode: subs.ModePing, EventTypes: []string{"invoice.changed"},
		URL: "https://erp.example/ping", Secret: subs.NewSecret()}
	if err := store.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	notify, err := conn.JS.Stream(ctx, bus.StreamNotify)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	change := func() {
		n++
		ev := `{"specversion":"1.0","id":"c` + strconv.Itoa(n) + `","source":"/s","type":"invoice.changed","subject":"I"}`
		if _, err := conn.JS.Publish(context.Background(), bus.EventsSubject("acme", "invoice.changed"), []byte(ev)); err != nil {
			t.Error(err)
		}
	}
	switchOn := func() time.Time {
		t.Helper()
		if _, _, err := store.UpdateState(ctx, sub.ID, func(st *subs.PingState) error { st.Unacked = 100; return nil }); err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		if _, err := api.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: sub.ID, Active: true}); err != nil {
			t.Fatal(err)
		}
		if st, _ := store.State(ctx, sub.ID); st.Unacked != 0 {
			t.Fatalf("unacked %d after switching on", st.Unacked)
		}
		return before
	}
	timer := func() (time.Time, bool) {
		m, err := notify.GetLastMsgForSubject(ctx, bus.NotifySched(sub.ID))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return time.Time{}, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return jet.TimerAt(m.Header), true
	}

	change()
	switchOn()
	if at, ok := timer(); ok {
		t.Fatalf("a ping due at %v for a change made while the subscription was off", at)
	}
	if _, err := api.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: sub.ID, Active: false}); err != nil {
		t.Fatal(err)
	}

	// A switch owes a ping when a change came after the last one it read
	// (the subscription's RoutedFrom) and before it reset the count:
	// changes are stored all the while until one switch falls so.
	events, err := conn.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	for try := 1; ; try++ {
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
					change()
				}
			}
		}()
		before := switchOn()
		close(stop)
		<-done
		got, err := store.Get(ctx, sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		reset, err := store.StateBucket().Get(ctx, sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		first, err := events.GetMsg(ctx, got.RoutedFrom+1)
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatal(err)
		}
		at, ok := timer()
		if first != nil && first.Time.Before(reset.Created()) {
			if !ok {
				t.Fatalf("no ping for event %d, stored after the switch read event %d and before it reset the count", first.Sequence, got.RoutedFrom)
			}
			if at.Before(before.Add(time.Minute)) {
				t.Errorf("the ping is due at %v, sooner than the notify delay", at)
			}
			return
		}
		if try == 50 {
			t.Fatal("in 50 switches no change came between the switch's read of EVENTS and its reset")
		}
		if _, err := api.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: sub.ID, Active: false}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeletedSubscriptionsTasksGo: deleting a payload subscription removes
// its tasks from DELIVERIES (in its partition, waiting for a retry,
// gathered for a digest), which no dispatcher may own the partition to
// remove, and leaves another subscription's alone.
func TestDeletedSubscriptionsTasksGo(t *testing.T) {
	ctx, api, conn := busAdmin(t)
	store, err := subs.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := conn.JS.Stream(ctx, bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	subjects := func(id string) []string {
		return []string{bus.DeliverSubject(id), bus.RetrySubject(id, "t1"), bus.DigestSubject(id)}
	}
	left := func(id string) (n uint64) {
		for _, subject := range subjects(id) {
			info, err := deliveries.Info(ctx, jetstream.WithSubjectFilter(subject))
			if err != nil {
				t.Fatal(err)
			}
			n += info.State.Subjects[subject]
		}
		return n
	}
	var ids []string
	for range 2 {
		sub := subs.Subscription{ID: subs.NewID(), Org: "acme", Mode: subs.ModePayload, EventTypes: []string{"invoice.changed"},
			URL: "https://erp.example/hook", Active: true, Secret: subs.NewSecret()}
		if err := store.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
		for _, subject := range subjects(sub.ID) {
			if _, err := conn.JS.Publish(ctx, subject, []byte("task")); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, sub.ID)
	}
	if _, err := api.DeleteSubscription(ctx, &adminv1.DeleteSubscriptionRequest{SubscriptionId: ids[0]}); err != nil {
		t.Fatal(err)
	}
	if n := left(ids[0]); n != 0 {
		t.Errorf("%d tasks of the deleted subscription left", n)
	}
	if n := left(ids[1]); n != 3 {
		t.Errorf("%d tasks of the other subscription left, want its 3", n)
	}
}

// TestPersonIDsCountedInCharacters: admin takes every person id a sync
// takes (up to book.MaxIDLen characters, however many bytes), and refuses
// a longer one naming the field.
func TestPersonIDsCountedInCharacters(t *testing.T) {
	ctx, api, _ := busAdmin(t)
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	_, err := api.GetPerson(ctx, &adminv1.GetPersonRequest{OrgId: "acme", ExternalDbId: strings.Repeat("ä", book.MaxIDLen)})
	if status.Code(err) != codes.NotFound {
		t.Errorf("an id of %d characters in %d bytes: %v, want NOT_FOUND", book.MaxIDLen, 2*book.MaxIDLen, err)
	}
	_, err = api.GetPerson(ctx, &adminv1.GetPersonRequest{OrgId: "acme", ExternalDbId: strings.Repeat("a", book.MaxIDLen+1)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "external_db_id") {
		t.Errorf("an id of %d characters: %v, want INVALID_ARGUMENT naming external_db_id", book.MaxIDLen+1, err)
	}
}
