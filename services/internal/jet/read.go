package jet

import (
	"context"
	"errors"
	"time"

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
	info, err := c.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	pending = int(info.NumPending)
	want := min(pending, limit)
	for stopped := false; read < want && !stopped; {
		batch, err := c.Fetch(min(want-read, 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return pending, read, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if stopped {
				continue // a batch is drained to its end
			}
			read++
			if stopped, err = each(m); err != nil {
				return pending, read, err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return pending, read, err
		}
		if got == 0 {
			break // the stream moved under us
		}
	}
	return pending, read, nil
}
