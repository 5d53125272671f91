package jet

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Read hands the messages an ordered consumer with cfg sees to each, oldest
// first, until each says stop, limit messages are read or none is left of
// those pending when it began. It answers how many were pending then and
// how many each was given. The consumer goes away by itself soon after.
func Read(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig, limit int, each func(jetstream.Msg) (stop bool, err error)) (pending, read int, err error) {
	if cfg.InactiveThreshold == 0 {
		// The server drops it soon after, not after the client library's minutes.
		cfg.InactiveThreshold = 10 * time.Second
	}
	c, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return 0, 0, err
	}
	info, err := served(ctx, func() (*jetstream.ConsumerInfo, error) { return c.Info(ctx) })
	if err != nil {
		return 0, 0, err
	}
	pending = int(info.NumPending)
	want := min(pending, limit)
	for stopped := false; read < want && !stopped; {
		got := 0
		_, err := served(ctx, func() (struct{}, error) {
			batch, err := c.Fetch(min(want-read, 1000), jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return struct{}{}, err
			}
			for m := range batch.Messages() {
				got++
				if stopped {
					continue // a batch is drained to its end
				}
				read++
				if stopped, err = each(m); err != nil {
					return struct{}{}, err
				}
			}
			if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && (got == 0 || !errors.Is(err, nats.ErrNoResponders)) {
				return struct{}{}, err
			}
			return struct{}{}, nil
		})
		if err != nil {
			return pending, read, err
		}
		if got == 0 {
			break // the stream moved under us
		}
	}
	return pending, read, nil
}

// served retries f while no server answers it: in a cluster, a consumer
// just made is not served at once on every server, and its first requests
// may find no responder for a moment. Any other answer, or ctx ending or
// five seconds passing, ends it.
func served[T any](ctx context.Context, f func() (T, error)) (T, error) {
	deadline := time.Now().Add(5 * time.Second)
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		v, err := f()
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
	}
}
