package jet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"kurier.dev/services/bus"
)

// Retry calls f until it succeeds or ctx ends, waiting longer after each
// failure, up to 5 s. It is for the calls a service makes to set itself
// up: a cluster that is forming, or electing the leader of the stream
// asked, refuses them or leaves them unanswered for a few seconds, and a
// replica that gave up then would stay down. bus.ErrNoRoom and
// bus.ErrRefused end it at once: no wait changes them.
func Retry(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) error {
	for delay := 250 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, bus.ErrNoRoom) || errors.Is(err, bus.ErrRefused) {
			return fmt.Errorf("%s: %w", what, err)
		}
		log.Warn(what+" not ready, retrying", "err", err, "in", delay.String())
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(delay):
		}
	}
}
