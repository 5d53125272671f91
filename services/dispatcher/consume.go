package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Handler handles one message of its delivery mode. nil acknowledges the
// message; an error made by again naks it, to come again after the wait
// it names; any other error terminates it: it is not delivered again, and
// the error is logged. settle is the one place that acts on the answer.
type Handler interface {
	Handle(ctx context.Context, m jetstream.Msg) error
}

// later is a handler's "not now": the message comes again after wait.
type later struct {
	wait time.Duration
	err  error
}

func (l *later) Error() string { return fmt.Sprintf("again in %v: %v", l.wait, l.err) }
func (l *later) Unwrap() error { return l.err }

// again asks for a message to be delivered again after wait, because of
// err (nil: nothing went wrong, the time is just not right). An err that
// already asks for that keeps its own wait.
func again(wait time.Duration, err error) error {
	if l := (*later)(nil); errors.As(err, &l) {
		return err
	}
	return &later{wait: wait, err: err}
}

// settle acknowledges, naks or terminates a message by its handler's
// answer.
func settle(log *slog.Logger, m jetstream.Msg, err error) {
	var l *later
	switch {
	case err == nil:
		_ = m.Ack()
	case errors.As(err, &l):
		if l.err != nil {
			log.Warn("message comes again", "subject", m.Subject(), "in", l.wait.String(), "err", l.err)
		}
		if l.wait <= 0 {
			_ = m.Nak()
		} else {
			_ = m.NakWithDelay(l.wait)
		}
	default:
		log.Warn("message dropped", "subject", m.Subject(), "err", err)
		_ = m.Term()
	}
}

// run calls h and settles what it answers; a panic comes again.
func run(ctx context.Context, log *slog.Logger, h Handler, m jetstream.Msg) {
	var err error
	defer func() {
		if p := recover(); p != nil {
			err = again(time.Second, fmt.Errorf("handler panicked: %v", p))
		}
		settle(log, m, err)
	}()
	err = h.Handle(ctx, m)
}

// pool runs a handler on at most n messages at once, on ctx, which a stop
// does not cancel: work taken is finished. wg counts the running ones.
type pool struct {
	ctx   context.Context
	log   *slog.Logger
	h     Handler
	slots chan struct{}
	wg    *sync.WaitGroup
	// skip tells, without I/O, that a message needs nothing but its
	// acknowledgement, so it takes no slot.
	skip func(jetstream.Msg) bool
}

// take is a consumer's callback. Waiting for a free slot holds the
// consumer back, so pending work stays in the stream.
func (p *pool) take(m jetstream.Msg) {
	if p.skip != nil && p.skip(m) {
		_ = m.Ack()
		return
	}
	p.slots <- struct{}{}
	p.wg.Go(func() {
		defer func() { <-p.slots }()
		run(p.ctx, p.log, p.h, m)
	})
}

// consume hands c's messages to take until the returned stop, which hands
// over what is buffered and returns once no callback runs.
func consume(c jetstream.Consumer, take func(jetstream.Msg), opts ...jetstream.PullConsumeOpt) (func(), error) {
	cc, err := c.Consume(take, opts...)
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	return func() { cc.Drain(); <-cc.Closed() }, nil
}
