package tests

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/natstest"
)

// webhookIDs counts the distinct deliveries a receiver got, by
// subscription (the URL path) and webhook-id.
type webhookIDs struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (w *webhookIDs) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	w.seen[r.URL.Path+" "+r.Header.Get("webhook-id")] = true
	w.mu.Unlock()
}

func (w *webhookIDs) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

// delivered reads a dispatcher's count of successful payload deliveries
// from its metrics.
func delivered(t *testing.T, base string) int {
	t.Helper()
	v, _ := scrapeMetrics(t, base).value("kurier_deliveries_total", map[string]string{"mode": "payload", "outcome": "success"})
	return int(v)
}

// partitions reads how many payload partitions a dispatcher owns.
func partitions(t *testing.T, base string) int {
	t.Helper()
	v, _ := scrapeMetrics(t, base).value("kurier_dispatcher_partitions", map[string]string{})
	return int(v)
}

// TestPayloadSharedByDispatchers: two dispatcher processes share the
// payload deliveries of forty subscriptions, each a fair part; one is then
// killed mid-run, and the other delivers everything that follows and
// everything the killed one had not finished.
func TestPayloadSharedByDispatchers(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, nil, "admin", "ingest", "dispatcher-1", "dispatcher-2")
	ctx := context.Background()
	rcv := &webhookIDs{seen: map[string]bool{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	adm, key := setup(t, d.get("admin"), "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	const nSubs, nEvents = 40, 100
	for i := range nSubs {
		if _, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
			OrgId: "acme", System: fmt.Sprint("s", i), EventTypes: []string{"doc.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD,
			Url: fmt.Sprintf("%s/%d", srv.URL, i), Timeout: durationpb.New(5 * time.Second), Active: true,
		}}); err != nil {
			t.Fatal(err)
		}
	}
	d.waitKnown(t, nSubs, "dispatcher-1", "dispatcher-2")
	natstest.WaitForErr(t, 30*time.Second, "the 16 partitions shared by the dispatchers", func() error {
		one, two := partitions(t, d.get("dispatcher-1").HTTP), partitions(t, d.get("dispatcher-2").HTTP)
		if one == 0 || two == 0 || one+two != 16 {
			return fmt.Errorf("they own %d and %d", one, two)
		}
		return nil
	})
	send := func(from int) {
		for b := from; b < from+nEvents; b += 25 {
			var batch []map[string]any
			for i := b; i < b+25; i++ {
				batch = append(batch, ev(fmt.Sprint("e", i), "doc.changed", fmt.Sprint("d", i), map[string]any{"n": i}))
			}
			if a := post(t, d.get("ingest"), key, "application/cloudevents-batch+json", mustJSON(t, batch), nil); a.Status != http.StatusAccepted {
				t.Fatalf("events answered %d", a.Status)
			}
		}
	}
	wait := func(n int, limit time.Duration) {
		t.Helper()
		natstest.WaitForErr(t, limit, fmt.Sprintf("%d deliveries", n), func() error {
			if got := rcv.count(); got < n {
				return fmt.Errorf("%d of %d", got, n)
			}
			return nil
		})
	}
	send(0)
	wait(nSubs*nEvents, time.Minute)
	one, two := delivered(t, d.get("dispatcher-1").HTTP), delivered(t, d.get("dispatcher-2").HTTP)
	t.Logf("shares: dispatcher-1 %d, dispatcher-2 %d", one, two)
	if one+two < nSubs*nEvents || one < nSubs*nEvents/5 || two < nSubs*nEvents/5 {
		t.Errorf("dispatcher-1 delivered %d, dispatcher-2 %d of %d: want each at least 20%%", one, two, nSubs*nEvents)
	}

	// Killed while it has deliveries in flight and in its partitions.
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for deadline := time.Now().Add(time.Minute); rcv.count() < nSubs*nEvents+nSubs*nEvents/4 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		d.kill(t, "dispatcher-2")
	}()
	send(nEvents)
	<-killed
	wait(2*nSubs*nEvents, 2*time.Minute)
}
