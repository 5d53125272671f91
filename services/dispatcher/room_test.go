package dispatcher

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// TestFullDeliveriesLoseNothing: DELIVERIES fills with the retries of a
// receiver that fails; the server would drop its oldest messages, so the
// dispatcher stores no more tasks meanwhile. Once it has room again, no
// retry is missing and the events held back are delivered.
func TestFullDeliveriesLoseNothing(t *testing.T) {
	ctx := context.Background()
	const limit = 64 << 10
	conn, store, rcv, url, _ := setup(t, 1, func(l *bus.Limits) { l.MaxBytes.Deliveries = limit })

	const failing, healthy = 300, 20
	for i := range failing {
		rcv.fail[fmt.Sprintf("fail-%d", i)] = http.StatusInternalServerError
	}
	bad := payloadSub(t, store, url, "fail", 10, func(s *subs.Subscription) { s.RetrySchedule = []time.Duration{time.Hour} })
	good := payloadSub(t, store, url, "ok", 10)
	time.Sleep(300 * time.Millisecond)
	publishEvents(t, conn, "fail", failing)

	deliveries, err := conn.JS.Stream(ctx, bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	retries := func() int {
		info, err := deliveries.Info(ctx, jetstream.WithSubjectFilter(bus.RetrySubject(bad, ">")))
		if err != nil {
			t.Fatal(err)
		}
		return len(info.State.Subjects)
	}
	natstest.WaitFor(t, 30*time.Second, "DELIVERIES full", func() bool {
		info, err := deliveries.Info(ctx)
		return err == nil && float64(info.State.Bytes) >= 0.9*limit
	})
	publishEvents(t, conn, "ok", healthy)
	time.Sleep(2 * time.Second)
	held := retries()
	if held >= failing {
		t.Fatalf("%d retries fit in DELIVERIES: the test needs a smaller stream", held)
	}

	// Room again, as after a larger KURIER_DELIVERIES_MAX_BYTES.
	info, err := deliveries.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info.Config.MaxBytes = 64 << 20
	if _, err := conn.JS.UpdateStream(ctx, info.Config); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 30*time.Second, "every healthy event delivered", func() bool { n, _ := rcv.count(good); return n == healthy })
	// A failed attempt whose retry found no room is made again instead,
	// which this receiver answers 200.
	// Deferred tasks (those beyond the in-flight limit) wait as retries
	// too, up to the time the subscription takes to work through them.
	natstest.WaitFor(t, time.Minute, "every failed event delivered or waiting for its retry", func() bool {
		n, _ := rcv.count(bad)
		return n+retries() == failing
	})
	n, _ := rcv.count(bad)
	t.Logf("%d of %d retries fit while DELIVERIES was full; %d events were attempted again instead; none was lost", held, failing, n)
}
