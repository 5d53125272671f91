package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrLocked: the lock stayed taken for as long as the caller would wait.
var ErrLocked = errors.New("locked by another holder")

// lockPoll is how often a waiter tries again without having seen the
// lock go: the watch tells it sooner, this covers a missed marker.
const lockPoll = 500 * time.Millisecond

// Lease is a held lock. It renews itself every third of its time to live
// until Release; a holder that dies stops renewing, and the key expires.
type Lease struct {
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	key  string
	ttl  time.Duration
	stop chan struct{}
	done chan struct{}
	lost chan struct{} // closed once the lease may have passed to another

	mu  sync.Mutex
	rev uint64 // guarded by mu: the revision of the last write of the key
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
		rev, err := kv.Create(ctx, key, []byte(holder), jetstream.KeyTTL(ttl))
		if err == nil {
			l := &Lease{js: js, kv: kv, key: key, ttl: ttl, rev: rev,
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
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		rev := l.rev
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
		m := &nats.Msg{Subject: KVSubject(l.kv.Bucket(), l.key), Data: holder}
		ack, err := l.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(l.ttl))
		cancel()
		if err == nil {
			l.mu.Lock()
			l.rev = ack.Sequence
			l.mu.Unlock()
			renewed = time.Now()
			continue
		}
		if IsWrongLastSeq(err) || time.Since(renewed) >= l.ttl {
			close(l.lost)
			return
		}
	}
}

// Guard answers a context that ends with ctx or when the lease is lost:
// when it could not be renewed in time, so that the key may have expired
// and another holder may have it. Work done under the lock stops then.
func (l *Lease) Guard(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-l.lost:
			cancel(errors.New("lock lost"))
		case <-ctx.Done():
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
