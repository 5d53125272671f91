package bus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/bustest"
)

func locks(t *testing.T) (*bus.Conn, jetstream.KeyValue) {
	t.Helper()
	conn := bustest.Start(t, bus.DefaultLimits())
	kv, err := bus.Bucket(context.Background(), conn.JS, bus.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	return conn, kv
}

func TestLockIsExclusiveAndPassesOn(t *testing.T) {
	conn, kv := locks(t)
	ctx := context.Background()
	a, err := bus.Lock(ctx, conn.JS, kv, "k", "a", 2*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Held past its time to live: the holder renews it.
	start := time.Now()
	if _, err := bus.Lock(ctx, conn.JS, kv, "k", "b", 2*time.Second, 3*time.Second); !errors.Is(err, bus.ErrLocked) {
		t.Fatalf("second holder while the first renews: %v", err)
	}
	if waited := time.Since(start); waited < 3*time.Second {
		t.Fatalf("gave up after %v, before its wait", waited)
	}
	// A waiter gets it as soon as it is released.
	got := make(chan error, 1)
	go func() {
		b, err := bus.Lock(ctx, conn.JS, kv, "k", "b", time.Second, 5*time.Second)
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
	l, err := bus.Lock(ctx, conn.JS, kv, "k", "b", time.Second, 5*time.Second)
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
	l, err := bus.Lock(ctx, conn.JS, kv, "k", "a", time.Second, 0)
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

func TestLastMsgs(t *testing.T) {
	conn := bustest.Start(t, bus.DefaultLimits())
	ctx := context.Background()
	kv, err := bus.Bucket(ctx, conn.JS, bus.BucketPersons)
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for i := range 2500 {
		key := fmt.Sprintf("k%d", i)
		subjects = append(subjects, bus.KVSubject(bus.BucketPersons, key))
		if i%2 == 0 {
			if _, err := kv.Put(ctx, key, []byte(key)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := kv.Delete(ctx, "k0"); err != nil {
		t.Fatal(err)
	}
	got, err := bus.LastMsgs(ctx, conn.NC, bus.KVStream(bus.BucketPersons), subjects)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1250 {
		t.Fatalf("%d messages, want 1250", len(got))
	}
	if m := got[subjects[2498]]; m == nil || string(m.Data) != "k2498" {
		t.Fatalf("k2498: %v", m)
	}
	if m := got[subjects[0]]; m == nil || m.Header.Get("KV-Operation") != "DEL" {
		t.Fatalf("k0, deleted: %v", m)
	}
	if _, ok := got[subjects[1]]; ok {
		t.Fatal("an absent key answered")
	}
	none, err := bus.LastMsgs(ctx, conn.NC, bus.KVStream(bus.BucketPersons), subjects[1:2])
	if err != nil || len(none) != 0 {
		t.Fatalf("one absent key: %v, %v", none, err)
	}
}
