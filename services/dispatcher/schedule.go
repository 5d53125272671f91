package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/subs"
)

// handleEvent starts a ping timer for every ping subscription the event
// matches that has none running. The event is acknowledged once all are
// in place; on a failure it comes again, which is harmless: a timer that
// runs covers it.
func (s *Service) handleEvent(ctx context.Context, m jetstream.Msg) {
	org, typ, ok := eventKey(m.Subject())
	if !ok {
		_ = m.Term()
		return
	}
	for _, e := range s.index.match(org, typ) {
		if e.sub.Mode != subs.ModePing {
			continue
		}
		if err := s.schedule(ctx, e); err != nil {
			s.log.Warn("ping timer not set, the event comes again", "subscription", e.sub.ID, "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
	}
	_ = m.Ack()
}

// covered tells, without any I/O, whether every ping subscription the event
// matches has a timer running or is capped: then the event needs no more
// than its acknowledgement.
func (s *Service) covered(m jetstream.Msg) bool {
	org, typ, ok := eventKey(m.Subject())
	if !ok {
		return false
	}
	now := time.Now()
	for _, e := range s.index.match(org, typ) {
		if e.sub.Mode != subs.ModePing {
			continue
		}
		e.mu.Lock()
		pending := now.Before(e.pendingUntil)
		e.mu.Unlock()
		if !pending && s.index.unackedOf(e.sub.ID) < s.cfg.MaxUnacked {
			return false
		}
	}
	return true
}

// schedule makes sure a ping is pending for the subscription: either one
// already is (the change is coalesced into it), or a scheduled message is
// published that the server turns into a due message NotifyDelay from now.
// The publish expects the timer's last sequence, so of replicas racing for
// one subscription exactly one sets the timer and the others see it.
func (s *Service) schedule(ctx context.Context, e *entry) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if now.Before(e.pendingUntil) {
		return nil
	}
	id := e.sub.ID
	if s.index.unackedOf(id) >= s.cfg.MaxUnacked {
		return nil // capped: no ping until the feed is read
	}
	for {
		var last uint64
		msg, err := s.notify.GetLastMsgForSubject(ctx, bus.NotifyAll(id))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return fmt.Errorf("read ping timer: %w", err)
		case msg.Subject == bus.NotifySched(id):
			e.pendingUntil = scheduledAt(msg.Header)
			return nil
		default:
			last = msg.Sequence
		}
		at := now.Add(s.cfg.NotifyDelay)
		sched := nats.NewMsg(bus.NotifySched(id))
		// RFC 3339 with nanoseconds: WithScheduleAt would cut to whole
		// seconds and could fire up to a second early.
		sched.Header.Set(jetstream.ScheduleHeader, "@at "+at.UTC().Format(time.RFC3339Nano))
		sched.Header.Set(jetstream.ScheduleTargetHeader, bus.NotifyDue(id))
		_, err = s.conn.JS.PublishMsg(ctx, sched, jetstream.WithExpectLastSequenceForSubject(last, bus.NotifyAll(id)))
		if wrongLast(err) {
			continue // another replica moved the timer: look again
		}
		if err != nil {
			return fmt.Errorf("set ping timer: %w", err)
		}
		s.m.scheduled.Inc()
		e.pendingUntil = at
		return nil
	}
}

// wrongLast tells whether a publish lost a compare-and-set race: 10071 on
// one server, 10164 when a replicated stream's leader rejects it.
func wrongLast(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == 10164)
}

// scheduledAt reads the time of a scheduled message; an unreadable one
// counts as already due, so the stream is asked again next time.
func scheduledAt(h nats.Header) time.Time {
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
