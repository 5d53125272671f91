package lease_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/lease"
	"kurier.dev/services/natstest"
)

func locks(t *testing.T) (*jet.Conn, jetstream.KeyValue) {
	t.Helper()
	conn := natstest.Start(t, bus.DefaultLimits())
	kv, err := jet.Bucket(context.Background(), conn.JS, bus.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	return conn, kv
}

func TestLockIsExclusiveAndPassesOn(t *testing.T) {
	conn, kv := locks(t)
	ctx := context.Background()
	a, err := lease.Lock(ctx, conn.JS, kv, "k", "a", 2*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Held past its time to live: the holder renews it.
	start := time.Now()
	if _, err := lease.Lock(ctx, conn.JS, kv, "k", "b", 2*time.Second, 3*time.Second); !errors.Is(err, lease.ErrLocked) {
		t.Fatalf("second holder while the first renews: %v", err)
	}
	if waited := time.Since(start); waited < 3*time.Second {
		t.Fatalf("gave up after %v, before its wait", waited)
	}
	// A waiter gets it as soon as it is released.
	got := make(chan error, 1)
	go func() {
		b, err := lease.Lock(ctx, conn.JS, kv, "k", "b", time.Second, 5*time.Second)
		if err == nil {
			err = b.Release(ctx)
		}
		got <- err
	}()
	time.Sleep(200 * time.Millisecond)
	released := time.Now()
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(released); d > 400*time.Millisecond {
		t.Fatalf("the waiter took the released lock after %v", d)
	}
}

func TestLockOfDeadHolderExpires(t *testing.T) {
	conn, kv := locks(t)
	ctx := context.Background()
	// A holder that died: its key, never renewed.
	if _, err := kv.Create(ctx, "k", []byte("dead"), jetstream.KeyTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l, err := lease.Lock(ctx, conn.JS, kv, "k", "b", time.Second, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 3*time.Second {
		t.Fatalf("took the dead holder's lock after %v, want about its TTL", d)
	}
	guarded, cancel := l.Guard(ctx)
	defer cancel()
	time.Sleep(1500 * time.Millisecond)
	if guarded.Err() != nil {
		t.Fatal("lost a lease that renews")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("key after release: %v", err)
	}
}

func TestLeaseLostWhenTakenOver(t *testing.T) {
	conn, kv := locks(t)
	ctx := context.Background()
	l, err := lease.Lock(ctx, conn.JS, kv, "k", "a", time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	guarded, cancel := l.Guard(ctx)
	defer cancel()
	// Someone else writes the key, as after an expiry the holder missed.
	if _, err := kv.Put(ctx, "k", []byte("b")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-guarded.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the guarded context lives on after the lease was taken over")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "b" {
		t.Fatalf("release deleted the new holder's key: %v", err)
	}
}

// A holder whose renewals are confirmed late, and then not at all, writes
// until half the lease's time to live after the last confirmed renewal
// was sent, not after its confirmation came, and no longer: none of its
// writes lands later.
func TestLeaseMarginCountsFromTheRenewalSent(t *testing.T) {
	conn, _ := locks(t)
	ctx := context.Background()
	const ttl, late = 3 * time.Second, 400 * time.Millisecond
	lag := &natstest.Lag{}
	holder := natstest.Connect(t, conn, lag)
	kv, err := jet.Bucket(ctx, holder.JS, bus.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	// When renewals and writes land, seen on a connection that is not late.
	var mu sync.Mutex
	landed := map[string][]time.Time{}
	keySubject := bus.KVSubject(bus.BucketLocks, "k")
	for _, subj := range []string{keySubject, "writes"} {
		if _, err := conn.NC.Subscribe(subj, func(m *nats.Msg) {
			mu.Lock()
			landed[m.Subject] = append(landed[m.Subject], time.Now())
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.NC.Flush(); err != nil {
		t.Fatal(err)
	}

	l, err := lease.Lock(ctx, holder.JS, kv, "k", "a", ttl, 0)
	if err != nil {
		t.Fatal(err)
	}
	lag.Set(late)
	stopped := make(chan error, 1)
	go func() {
		for {
			if err := l.Check(); err != nil {
				stopped <- err
				return
			}
			if err := holder.NC.Publish("writes", nil); err != nil {
				stopped <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(2 * time.Second) // renewals, each confirmed late
	held := time.Now()
	lag.Set(time.Hour) // and then none confirmed
	var why error
	select {
	case why = <-stopped:
	case <-time.After(ttl):
		t.Fatal("the holder still writes a lease's time to live after its renewals stopped being confirmed")
	}
	lag.Set(0)
	if !errors.Is(why, lease.ErrShort) {
		t.Fatalf("the holder stopped with %v, want ErrShort", why)
	}
	time.Sleep(100 * time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	// The last renewal the holder saw confirmed landed before held-late:
	// the confirmation of any later one was held back. Which one it was
	// is known give or take the slack.
	const slack = 50 * time.Millisecond
	lastBefore := func(at time.Time) time.Time {
		var last time.Time
		for _, r := range landed[keySubject] {
			if r.Before(at) {
				last = r
			}
		}
		return last
	}
	writes := landed["writes"]
	if len(writes) == 0 {
		t.Fatal("no write landed")
	}
	lastWrite := writes[len(writes)-1]
	earliest := lastBefore(held.Add(-late - slack)).Add(ttl/2 - 2*slack)
	latest := lastBefore(held.Add(-late + slack)).Add(ttl/2 + 2*slack)
	t.Logf("confirmations held back %v after the last confirmed renewal landed; last write landed %v after it",
		held.Sub(lastBefore(held.Add(-late))).Round(time.Millisecond), lastWrite.Sub(lastBefore(held.Add(-late))).Round(time.Millisecond))
	if lastWrite.After(latest) {
		t.Fatalf("a write landed %v after half the TTL from the last confirmed renewal", lastWrite.Sub(latest.Add(-2*slack)).Round(time.Millisecond))
	}
	if lastWrite.Before(earliest) {
		t.Fatalf("the holder stopped %v before half the TTL from the last confirmed renewal", earliest.Add(2*slack).Sub(lastWrite).Round(time.Millisecond))
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
