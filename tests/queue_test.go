package tests

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// Two queue service replicas on one NATS: a peek waiting on one answers
// within milliseconds of a post to the other.
func TestQueueLongPollAcrossReplicas(t *testing.T) {
	t.Parallel()
	base := harness.Start(t, harness.Options{})
	a := harness.Start(t, harness.Options{Role: "queue", NATSURL: base.NATS})
	b := harness.Start(t, harness.Options{Role: "queue", NATSURL: base.NATS, Env: []string{"KURIER_PUBLIC_URL=https://queues.example/"}})
	_, key := setup(t, base, "acme", adminv1.KeyScope_KEY_SCOPE_PARTNER)
	q := contract.CreateQueue(t, a.HTTP, key)
	if fromB := contract.CreateQueue(t, b.HTTP, key); !strings.HasPrefix(fromB.NotificationURL, "https://queues.example/api/queues/") {
		t.Fatalf("KURIER_PUBLIC_URL not used: %s", fromB.NotificationURL)
	}
	// The sender got the URL from replica a; it posts to replica b.
	toB := *q
	toB.Base = b.HTTP
	var worst time.Duration
	for i := range 5 {
		got := make(chan []contract.QueueMessage, 1)
		go func() {
			_, msgs := q.Peek(t, "?timeout=20&count=10")
			got <- msgs
		}()
		time.Sleep(300 * time.Millisecond) // the peek is waiting on a
		sent := time.Now()
		if r := toB.Send(t, fmt.Sprintf(`{"round":%d}`, i)); r.Status != http.StatusOK {
			t.Fatalf("post to b: %d %s", r.Status, r.Body)
		}
		select {
		case msgs := <-got:
			worst = max(worst, time.Since(sent))
			if len(msgs) != 1 || string(msgs[0].Content) != fmt.Sprintf(`{"round":%d}`, i) {
				t.Fatalf("round %d: %v", i, contract.QueueContents(msgs))
			}
			if r := toB.DeleteMessage(t, msgs[0].MessageID); r.Status != http.StatusOK {
				t.Fatalf("delete through b: %d %s", r.Status, r.Body)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: the peek waiting on a did not answer", i)
		}
	}
	t.Logf("slowest wake-up across replicas: %v", worst)
	if worst > time.Second {
		t.Fatalf("a waiting peek answered %v after a post to the other replica", worst)
	}
	// A stopping replica answers its waiting peeks at once.
	got := make(chan contract.Answer, 1)
	go func() {
		r, _ := q.Peek(t, "?timeout=30")
		got <- r
	}()
	time.Sleep(300 * time.Millisecond)
	if code := a.Stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("queue replica exit %d", code)
	}
	select {
	case r := <-got:
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("waiting peek at stop: %d %s", r.Status, r.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting peek was not answered at stop")
	}
}

// A restart keeps every message, a queue subscription's and a sender's,
// and the queue's URL and secret. Without KURIER_PUBLIC_URL the
// notificationURL is at the HTTP listen address.
func TestQueueRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := harness.Start(t, harness.Options{DataDir: dir})
	adm, key := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_PARTNER, adminv1.KeyScope_KEY_SCOPE_INGEST)
	q := contract.CreateQueue(t, k.HTTP, key)
	if want := k.HTTP + "/api/queues/" + q.QueueID + "/messages"; q.NotificationURL != want {
		t.Fatalf("notificationURL %s, want %s", q.NotificationURL, want)
	}
	if _, err := adm.CreateSubscription(context.Background(), &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "hub", EventTypes: []string{"invoice.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: q.QueueID,
	}}); err != nil {
		t.Fatal(err)
	}
	// The dispatcher learns of the subscription a moment after it is
	// made: events go out until one is queued.
	var events []string
	next := time.Now()
	natstest.WaitForErr(t, 20*time.Second, "an event in the queue", func() error {
		if time.Now().After(next) {
			events = append(events, change(t, k, key, "invoice.changed", "INV-1", map[string]any{"total": 1.5, "customer": "Müller"}))
			next = time.Now().Add(2 * time.Second)
		}
		if msgs := q.Messages(t, "?count=100"); len(msgs) == 0 {
			return fmt.Errorf("%d events sent", len(events))
		}
		return nil
	})
	for i := range 3 {
		if a := q.Send(t, fmt.Sprintf(`{"i":%d}`, i)); a.Status != http.StatusOK {
			t.Fatalf("post: %d %s", a.Status, a.Body)
		}
	}
	before := q.Messages(t, "?count=100")
	if e, ok := before[0].Event(); len(before) < 4 || !ok || !slices.Contains(events, e.ID) {
		t.Fatalf("before the restart: %v, want an event of %v and 3 senders' messages", contract.QueueContents(before), events)
	}
	if code := k.Stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	k = harness.Start(t, harness.Options{DataDir: dir})
	q.Base = k.HTTP // the new process listens elsewhere
	if after := q.Messages(t, "?count=100"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("after the restart:\n%v\nbefore:\n%v", contract.QueueContents(after), contract.QueueContents(before))
	}
	if a := q.DeleteMessage(t, before[0].MessageID); a.Status != http.StatusOK {
		t.Fatalf("delete after the restart: %d %s", a.Status, a.Body)
	}
	if a := q.Send(t, `{"after":"restart"}`); a.Status != http.StatusOK {
		t.Fatalf("the queue's URL and secret after the restart: %d %s", a.Status, a.Body)
	}
}
