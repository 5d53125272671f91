package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
)

// errNoRoom: DELIVERIES is about full. It holds scheduled messages, so the
// server only allows it to drop its oldest messages when full, which
// would lose tasks; instead nothing new is stored while it is this full:
// events wait in EVENTS, and a failed attempt waits where it is.
var errNoRoom = errors.New("DELIVERIES is full: tasks wait until it has room")

const (
	// roomLook is how often the stream's size is read, roomRecheck how
	// often while it counts as full.
	roomLook    = time.Second
	roomRecheck = 100 * time.Millisecond
)

// room tells whether DELIVERIES may take more tasks, from its size read
// at most once a roomLook, by one caller while the others go by the last,
// plus what this replica has made room for since.
type room struct {
	stream jetstream.Stream
	log    *slog.Logger

	mu      sync.Mutex
	at      time.Time // of the last look
	looking bool
	limit   int64 // the stream's byte limit, 0 for none
	bytes   int64 // its size at the last look, plus what was stored since
	warned  time.Time
}

// full must be called with r.mu held.
func (r *room) full() bool {
	return bus.DeliveriesFull(r.bytes, r.limit)
}

// take makes room for tasks about to be stored, or asks for the message
// they come from to come again later while DELIVERIES is within
// bus.DeliveriesHeadroom of its byte limit. A failed look changes nothing:
// storing fails on its own if the stream cannot take a task.
func (r *room) take(ctx context.Context, tasks ...*nats.Msg) error {
	r.mu.Lock()
	// Counted full, look again sooner: tasks counted since the last look
	// may have been delivered and removed meanwhile.
	due := roomLook
	if r.full() {
		due = roomRecheck
	}
	look := !r.looking && time.Since(r.at) >= due
	r.looking = r.looking || look
	r.mu.Unlock()
	if look {
		r.look(ctx)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full() {
		return again(5*time.Second, errNoRoom)
	}
	for _, t := range tasks {
		// Close to what the task takes in the store.
		r.bytes += int64(len(t.Subject) + len(t.Data) + 32)
		for k, vs := range t.Header {
			for _, v := range vs {
				r.bytes += int64(len(k) + len(v) + 4)
			}
		}
	}
	return nil
}

// admits is take for a message that may as well not be stored.
func (r *room) admits(ctx context.Context, m *nats.Msg) bool { return r.take(ctx, m) == nil }

func (r *room) look(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, roomLook)
	info, err := r.stream.Info(ctx)
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.looking, r.at = false, time.Now()
	if err != nil {
		return
	}
	r.limit, r.bytes = info.Config.MaxBytes, int64(info.State.Bytes)
	if r.full() && time.Since(r.warned) >= time.Minute {
		r.warned = time.Now()
		r.log.Warn("DELIVERIES is full: new events wait in EVENTS, failed attempts where they are, until it has room; raise KURIER_DELIVERIES_MAX_BYTES or switch failing subscriptions off",
			"bytes", info.State.Bytes, "max_bytes", r.limit)
	}
}
