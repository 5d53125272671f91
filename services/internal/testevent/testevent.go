// Package testevent is the request admin makes of a dispatcher to send a
// test event through a subscription, and its answer: the dispatcher holds
// the one way requests are made, so admin asks rather than send itself.
package testevent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/subs"
)

// Type is the type of the event a test sends.
const Type = "kurier.test"

// Request carries the subscription as admin read it, so that a test made
// right after a change tests the change, whether or not a dispatcher's
// watch has brought it yet.
type Request struct {
	Subscription subs.Subscription `json:"subscription"`
}

// Reply is how the receiver answered.
type Reply struct {
	EventID   string  `json:"event_id"`
	Method    string  `json:"method"`
	URL       string  `json:"url"` // secret attributes masked
	Status    int     `json:"status,omitempty"`
	Error     string  `json:"error,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
	Response  string  `json:"response,omitempty"` // the first 4 KiB
	// Refused: the dispatcher sends nothing for such a subscription.
	Refused string `json:"refused,omitempty"`
}

// ErrNoDispatcher: no dispatcher replica runs to make the request.
var ErrNoDispatcher = errors.New("no dispatcher is running to send the test event")

// Ask has a dispatcher send a test event through sub and waits up to wait
// for its answer.
func Ask(ctx context.Context, nc *nats.Conn, sub subs.Subscription, wait time.Duration) (Reply, error) {
	b, err := json.Marshal(Request{Subscription: sub})
	if err != nil {
		return Reply{}, fmt.Errorf("encode test request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, bus.TestEventSubject, b)
	if errors.Is(err, nats.ErrNoResponders) {
		return Reply{}, ErrNoDispatcher
	}
	if err != nil {
		return Reply{}, fmt.Errorf("test event request: %w", err)
	}
	var r Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return Reply{}, fmt.Errorf("decode test reply: %w", err)
	}
	return r, nil
}
