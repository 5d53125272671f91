package testevent

import (
	"context"
	"errors"
	"testing"
	"time"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// TestNoDispatcher: with no dispatcher to make it, a test says so at once
// rather than wait.
func TestNoDispatcher(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	began := time.Now()
	_, err := Ask(context.Background(), conn.NC, subs.Subscription{ID: subs.NewID()}, 10*time.Second)
	if !errors.Is(err, ErrNoDispatcher) || time.Since(began) > 5*time.Second {
		t.Fatalf("answered %v after %v, want %v at once", err, time.Since(began), ErrNoDispatcher)
	}
}
