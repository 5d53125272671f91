// Package kvcache keeps the entries of a key-value bucket in memory,
// followed by one watch for as long as its context lives. Listing them
// then costs one request, however large the bucket grows, where a watch of
// the whole bucket per listing would read every entry each time.
package kvcache

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
)

// Decode turns an entry of the bucket into a T; false leaves out keys of
// another kind that share the bucket.
type Decode[T any] func(key string, value []byte) (T, bool, error)

// stall is how long a listing waits for the watch to bring the bucket's
// last revision before it takes the watch for stuck. The consumer behind
// a watch whose server died comes back only once its heartbeats are
// missed, some 15 s later; a new watch, resumed where the old one left
// off, reads from a live server at once.
const stall = time.Second

// Cache holds a bucket's entries.
type Cache[T any] struct {
	ctx    context.Context
	kv     jetstream.KeyValue
	stream jetstream.Stream
	decode Decode[T]
	log    *slog.Logger

	mu      sync.Mutex // guards the fields below
	items   map[string]T
	rev     uint64        // the items are as of this revision of the bucket
	moved   chan struct{} // closed when rev next moves
	w       jetstream.KeyWatcher
	watched time.Time // when w began
}

// Open starts following the bucket until ctx ends.
func Open[T any](ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, decode Decode[T], log *slog.Logger) (*Cache[T], error) {
	st, err := js.Stream(ctx, bus.KVStream(kv.Bucket()))
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", kv.Bucket(), err)
	}
	c := &Cache[T]{ctx: ctx, kv: kv, stream: st, decode: decode, log: log, items: map[string]T{}, moved: make(chan struct{})}
	if err := c.watch(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// watch starts a watch from where the items are, and stops the one it
// replaces.
func (c *Cache[T]) watch(ctx context.Context) error {
	// Every entry up to here is among what the watch delivers before its
	// end-of-initial-values mark, even if none of them is this revision
	// itself.
	info, err := c.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", c.kv.Bucket(), err)
	}
	c.mu.Lock()
	from := c.rev + 1
	c.mu.Unlock()
	var opts []jetstream.WatchOpt
	if from > 1 {
		opts = append(opts, jetstream.ResumeFromRevision(from))
	}
	w, err := c.kv.WatchAll(c.ctx, opts...)
	if err != nil {
		return fmt.Errorf("watch %s: %w", c.kv.Bucket(), err)
	}
	c.mu.Lock()
	old := c.w
	c.w, c.watched = w, time.Now()
	c.mu.Unlock()
	if old != nil {
		_ = old.Stop()
	}
	go c.follow(w, info.State.LastSeq)
	return nil
}

func (c *Cache[T]) follow(w jetstream.KeyWatcher, loaded uint64) {
	defer func() { _ = w.Stop() }()
	for e := range w.Updates() {
		c.mu.Lock()
		switch {
		case c.w != w: // replaced
		case e == nil:
			c.advance(loaded)
		default:
			c.apply(e)
		}
		c.mu.Unlock()
	}
}

// advance moves rev on and wakes the listings waiting for it. c.mu must
// be held.
func (c *Cache[T]) advance(rev uint64) {
	if rev <= c.rev {
		return
	}
	c.rev = rev
	close(c.moved)
	c.moved = make(chan struct{})
}

// apply takes in one entry. c.mu must be held.
func (c *Cache[T]) apply(e jetstream.KeyValueEntry) {
	defer c.advance(e.Revision())
	if e.Operation() != jetstream.KeyValuePut {
		delete(c.items, e.Key())
		return
	}
	v, ok, err := c.decode(e.Key(), e.Value())
	switch {
	case err != nil:
		c.log.Error("undecodable entry left out", "bucket", e.Bucket(), "key", e.Key(), "err", err)
		delete(c.items, e.Key())
	case ok:
		c.items[e.Key()] = v
	}
}

// Get answers the entry under key as the watch last brought it. Unlike
// List it does not wait for the bucket's last revision: it is for readers
// on every request, to which a change arriving a moment late costs less
// than a round trip per call.
func (c *Cache[T]) Get(key string) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.items[key]
	return v, ok
}

// List answers the entries keep accepts, in no order. They include every
// write to the bucket made before the call: it waits until the watch has
// brought the bucket's last revision, which it reads through the stream's
// leader.
func (c *Cache[T]) List(ctx context.Context, keep func(T) bool) ([]T, error) {
	info, err := c.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", c.kv.Bucket(), err)
	}
	stalled := time.NewTicker(stall)
	defer stalled.Stop()
	for {
		c.mu.Lock()
		if c.rev >= info.State.LastSeq {
			var out []T
			for _, v := range c.items {
				if keep(v) {
					out = append(out, v)
				}
			}
			c.mu.Unlock()
			return out, nil
		}
		moved := c.moved
		c.mu.Unlock()
		select {
		case <-moved:
		case <-stalled.C:
			c.mu.Lock()
			renew := time.Since(c.watched) >= stall
			if renew {
				c.watched = time.Now() // one listing renews it, not each
			}
			c.mu.Unlock()
			if !renew {
				continue
			}
			if err := c.watch(ctx); err != nil {
				c.log.Warn("watch not renewed", "bucket", c.kv.Bucket(), "err", err)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s: %w", c.kv.Bucket(), ctx.Err())
		}
	}
}
