// Package lease is a lock on a key of a bucket with LimitMarkerTTL, held
// by renewing it: one holder at a time, for work that must not run twice
// at once on any replica, and freed by itself when its holder dies.
package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
)

// ErrLocked: the lock stayed taken for as long as the caller would wait.
var ErrLocked = errors.New("locked by another holder")

// ErrShort: a lease may have less than half its time to live left,
// because its renewals are late or failing, or it has been lost. Its
// holder writes no more, so that no write of it lands after another
// holder has taken the lock over.
var ErrShort = errors.New("lease too short to write under: the lock may pass to another")

// lockPoll is how often a waiter tries again without having seen the
// lock go: the watch tells it sooner, this covers a missed marker.
const lockPoll = 500 * time.Millisecond

// Lease is a held lock. It renews itself every sixth of its time to live
// until Release; a holder that dies stops renewing, and the key expires.
//
// The server counts a key's time to live from when a write of it
// arrives, which is after it was sent: a write of the key sent at t keeps
// it until t+ttl at least. The holder writes under the lease until half
// the time to live after the last write of the key that the server
// confirmed was sent (not when the confirmation came: it may come late).
// Renewing every sixth leaves two more tries before then, and a write of
// the holder that is slow on its way the other half to land before the
// key can expire and another holder begin.
type Lease struct {
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	key  string
	ttl  time.Duration
	stop chan struct{}
	done chan struct{}
	lost chan struct{} // closed once the lease may have passed to another

	mu   sync.Mutex // guards rev and sent
	rev  uint64     // the revision of the last write of the key
	sent time.Time  // when that write was sent
}

// Lock takes key in kv, which needs LimitMarkerTTL, for holder, waiting
// up to wait for another holder to release it or for its lease to
// expire: ErrLocked after that. ttl is rounded up to whole seconds, the
// unit JetStream keeps message TTLs in.
func Lock(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, key, holder string, ttl, wait time.Duration) (*Lease, error) {
	ttl = max(ttl.Round(time.Second), time.Second)
	deadline := time.Now().Add(wait)
	var changed <-chan jetstream.KeyValueEntry
	for {
		sent := time.Now()
		rev, err := kv.Create(ctx, key, []byte(holder), jetstream.KeyTTL(ttl))
		if err == nil {
			l := &Lease{js: js, kv: kv, key: key, ttl: ttl, rev: rev, sent: sent,
				stop: make(chan struct{}), done: make(chan struct{}), lost: make(chan struct{})}
			go l.renew([]byte(holder))
			return l, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("lock %s: %w", key, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, ErrLocked
		}
		if changed == nil {
			w, err := kv.Watch(ctx, key, jetstream.UpdatesOnly())
			if err != nil {
				return nil, fmt.Errorf("lock %s: %w", key, err)
			}
			defer w.Stop()
			changed = w.Updates()
		}
		select {
		case <-changed:
		case <-time.After(min(left, lockPoll)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// renew rewrites the key with a fresh time to live, expecting the
// revision it last wrote: kv.Update would drop the TTL, and a key that
// someone else took in the meantime must not be overwritten.
func (l *Lease) renew(holder []byte) {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 6)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		rev, last := l.rev, l.sent
		l.mu.Unlock()
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
		m := &nats.Msg{Subject: bus.KVSubject(l.kv.Bucket(), l.key), Data: holder}
		ack, err := l.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(l.ttl))
		cancel()
		if err == nil {
			l.mu.Lock()
			l.rev, l.sent = ack.Sequence, sent
			l.mu.Unlock()
			continue
		}
		if jet.IsWrongLastSeq(err) || time.Since(last) >= l.ttl {
			close(l.lost)
			return
		}
	}
}

// left answers how long the holder may still write: until half the time
// to live after the last confirmed write of the key was sent.
func (l *Lease) left() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ttl/2 - time.Since(l.sent)
}

// Check answers an error wrapping ErrShort once the holder must
// write no more. Work under the lock checks it before each write it
// sends: a write sent later might land after the key expired.
func (l *Lease) Check() error {
	select {
	case <-l.lost:
		return fmt.Errorf("lock %s lost: %w", l.key, ErrShort)
	default:
	}
	if left := l.left(); left <= 0 {
		return fmt.Errorf("lock %s: no renewal confirmed for %v: %w", l.key, (l.ttl/2 - left).Round(time.Millisecond), ErrShort)
	}
	return nil
}

// Guard answers a context that ends with ctx or once Check fails, with
// its error as the cause: work under the lock stops then, and what it
// waits for, such as acknowledgements of its writes, is waited for no
// longer.
func (l *Lease) Guard(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		t := time.NewTimer(l.left())
		defer t.Stop()
		for {
			select {
			case <-l.lost:
			case <-t.C:
			case <-ctx.Done():
				return
			}
			if err := l.Check(); err != nil {
				cancel(err)
				return
			}
			t.Reset(l.left()) // renewed meanwhile
		}
	}()
	return ctx, func() { cancel(nil) }
}

// Release stops the renewals and deletes the key, unless it has been
// written since: then it is no longer this lease's to delete.
func (l *Lease) Release(ctx context.Context) error {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("unlock %s: %w", l.key, err)
	}
	return nil
}
