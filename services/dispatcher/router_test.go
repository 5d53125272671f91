package dispatcher

import (
	"slices"
	"testing"
	"time"

	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// TestEventsBeforeSubscriptionSeen: an event stored after a subscription
// began (its RoutedFrom) but matched before the dispatchers saw the
// subscription still reaches it, with both replicas routing; one stored
// before it began does not. The race is made certain: the event is routed
// before the subscription is written at all.
func TestEventsBeforeSubscriptionSeen(t *testing.T) {
	conn, store, rcv, url, svcs := setup(t, 2)
	publishInvoice(t, conn, "before", 1) // seq 1
	publishInvoice(t, conn, "after", 1)  // seq 2
	routed(t, conn)

	from := func(seq uint64) func(*subs.Subscription) {
		return func(s *subs.Subscription) { s.RoutedFrom = seq }
	}
	began := payloadSub(t, store, url, "invoice.changed", 10, from(1))
	later := payloadSub(t, store, url, "invoice.changed", 10, from(2))
	ordered := payloadSub(t, store, url, "invoice.changed", 1, from(1), func(s *subs.Subscription) { s.Ordered, s.OrderedFrom = true, 1 })
	knows(t, svcs, began, later, ordered)
	natstest.WaitFor(t, 10*time.Second, "the event caught up", func() bool {
		return slices.Contains(rcv.ids(began), "after") && slices.Contains(rcv.ids(ordered), "after")
	})
	publishInvoice(t, conn, "seen", 1)
	routed(t, conn)
	natstest.WaitFor(t, 10*time.Second, "the event routed as usual", func() bool {
		return slices.Contains(rcv.ids(began), "seen") && slices.Contains(rcv.ids(later), "seen") && slices.Contains(rcv.ids(ordered), "seen")
	})
	for id, want := range map[string][]string{began: {"after", "seen"}, later: {"seen"}, ordered: {"after", "seen"}} {
		if got := rcv.ids(id); !slices.Equal(got, want) {
			t.Errorf("subscription %s got %v, want %v once each", id, got, want)
		}
	}
}
