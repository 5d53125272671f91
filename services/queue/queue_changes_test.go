package queue

import (
	"context"
	"net/http"
	"testing"
	"time"

	"kurier.dev/services/bus"
	"kurier.dev/services/contract"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/natstest"
)

// waiting answers how many peeks wait on the service's queues.
func (s *Service) waitingPeeks() int {
	s.waiters.mu.Lock()
	defer s.waiters.mu.Unlock()
	n := 0
	for _, set := range s.waiters.byQueue {
		n += len(set)
	}
	return n
}

// A peek waiting on a queue that is deleted answers 404, as every call on
// the queue does from then on, rather than waiting out its timeout and
// answering 408 as if the queue were there and empty: a receiver told 408
// polls again, one told 404 knows the queue is gone. Deleted through the
// queue API the waiting peek answers at once; deleted elsewhere (admin,
// another replica), by its next look.
func TestPeekWaitingOnDeletedQueue(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	base, svc := serveSvc(t, conn, DefaultConfig())
	k := makeKeys(t, conn)
	store, err := queues.Open(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	for name, del := range map[string]func(q *contract.Queue){
		"through the API": func(q *contract.Queue) {
			if a := q.Delete(t); a.Status != http.StatusOK {
				t.Errorf("delete queue: %d %s", a.Status, a.Body)
			}
		},
		"elsewhere": func(q *contract.Queue) {
			if err := store.Delete(context.Background(), "acme", q.QueueID); err != nil {
				t.Error(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			q := contract.CreateQueue(t, base, k.acme)
			type answer struct {
				a    contract.Answer
				took time.Duration
			}
			got := make(chan answer, 1)
			began := time.Now()
			go func() {
				a, _ := q.Peek(t, "?timeout=20")
				got <- answer{a, time.Since(began)}
			}()
			natstest.WaitFor(t, 5*time.Second, "the peek waiting", func() bool { return svc.waitingPeeks() == 1 })
			deleted := time.Now()
			del(q)
			within := time.Second
			if name == "elsewhere" {
				within = recheck + 2*time.Second
			}
			select {
			case r := <-got:
				e, ok := r.a.ErrorForm()
				if r.a.Status != http.StatusNotFound || !ok || e.Code != "not_found" || e.Field != "queueId" || time.Since(deleted) > within {
					t.Fatalf("the waiting peek answered %d %s after %v (%v after the delete), want 404 naming queueId within %v",
						r.a.Status, r.a.Body, r.took, time.Since(deleted), within)
				}
			case <-time.After(25 * time.Second):
				t.Fatal("the waiting peek did not answer")
			}
		})
	}
}

// A receiver that gives up on a waiting peek leaves nothing waiting, and
// the message that comes next is there for its next peek.
func TestPeekAbandonedLeavesNothing(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	base, svc := serveSvc(t, conn, DefaultConfig())
	k := makeKeys(t, conn)
	q := contract.CreateQueue(t, base, k.acme)
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/queues/"+q.QueueID+"/messages?timeout=30", nil)
		req.Header.Set(PartnerKeyHeader, k.acme)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		natstest.WaitFor(t, 5*time.Second, "the peek waiting", func() bool { return svc.waitingPeeks() == 1 })
		cancel()
		<-done
		natstest.WaitFor(t, 5*time.Second, "the abandoned peek gone", func() bool { return svc.waitingPeeks() == 0 })
	}
	if a := q.Send(t, `{"after":true}`); a.Status != http.StatusOK {
		t.Fatalf("post: %d %s", a.Status, a.Body)
	}
	// Two receivers peeking at once both see it: a peek removes nothing.
	got := make(chan []contract.QueueMessage, 2)
	for range 2 {
		go func() { _, msgs := q.Peek(t, "?timeout=5"); got <- msgs }()
	}
	for range 2 {
		if c := contract.QueueContents(<-got); len(c) != 1 || c[0] != `{"after":true}` {
			t.Fatalf("a peek after abandoned ones: %q", c)
		}
	}
}
