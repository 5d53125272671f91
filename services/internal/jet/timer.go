package jet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrTimerRunning: a timer on that subject is already pending.
var ErrTimerRunning = errors.New("a timer is already running")

// StartTimer publishes a scheduled message on subject that the server
// turns into one on target at at. It expects no message on subject, which
// holds one exactly while a timer runs (the server removes it when it
// fires): so starting costs one write, and of several racing to start the
// same timer exactly one does; the others get ErrTimerRunning. The
// message that fires carries header (which may be nil) as well.
func StartTimer(ctx context.Context, js jetstream.JetStream, subject, target string, at time.Time, header nats.Header) error {
	m := nats.NewMsg(subject)
	for k, v := range header {
		m.Header[k] = v
	}
	// RFC 3339 with nanoseconds: WithScheduleAt would cut to whole seconds
	// and could fire up to a second early.
	m.Header.Set(jetstream.ScheduleHeader, "@at "+at.UTC().Format(time.RFC3339Nano))
	m.Header.Set(jetstream.ScheduleTargetHeader, target)
	_, err := js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(0))
	if IsWrongLastSeq(err) {
		return ErrTimerRunning
	}
	if err != nil {
		return fmt.Errorf("start timer %s: %w", subject, err)
	}
	return nil
}

// TimerAt reads when a pending timer fires; zero if unreadable.
func TimerAt(h nats.Header) time.Time {
	v, ok := strings.CutPrefix(h.Get(jetstream.ScheduleHeader), "@at ")
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}
	}
	return t
}
