package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/subs"
)

// handleEvent starts a ping timer for every ping subscription the event
// matches that has none running, queues a delivery task for each payload
// subscription and a message for each queue subscription, all at once. The event is acknowledged
// once all are in place; on a failure it comes again, which is harmless: a
// timer that runs covers it.
func (s *Service) handleEvent(ctx context.Context, m jetstream.Msg) {
	org, typ, ok := eventKey(m.Subject())
	if !ok {
		_ = m.Term()
		return
	}
	stored := storedAt(m)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for _, e := range s.index.match(org, typ) {
		if e.sub.Mode == subs.ModeQueue {
			wg.Go(func() {
				if err := s.enqueue(ctx, e.sub, m); err != nil {
					s.log.Warn("queue message not stored, the event comes again", "subscription", e.sub.ID, "err", err)
					failed.Store(true)
				}
			})
			continue
		}
		if e.sub.Mode == subs.ModePayload {
			if e.sub.Ordered && !e.sub.Daily() {
				continue // reads its events from the stream itself
			}
			wg.Go(func() {
				if err := s.task(ctx, e.sub, m); err != nil {
					s.log.Warn("delivery task not queued, the event comes again", "subscription", e.sub.ID, "err", err)
					failed.Store(true)
				}
			})
			continue
		}
		if e.sub.Mode != subs.ModePing || s.pingedSince(e, stored) {
			continue
		}
		wg.Go(func() {
			if err := s.schedule(ctx, e); err != nil {
				s.log.Warn("ping timer not set, the event comes again", "subscription", e.sub.ID, "err", err)
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		_ = m.NakWithDelay(time.Second)
		return
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
	now, stored := time.Now(), storedAt(m)
	for _, e := range s.index.match(org, typ) {
		if e.sub.Mode == subs.ModePayload && (!e.sub.Ordered || e.sub.Daily()) || e.sub.Mode == subs.ModeQueue {
			return false // every event is a delivery task or a queue message
		}
		if e.sub.Mode != subs.ModePing || s.pingedSince(e, stored) {
			continue
		}
		// A held lock means a worker is setting the timer: leave the event
		// to the workers rather than hold up the consumer behind its I/O.
		if !e.mu.TryLock() {
			return false
		}
		pending := now.Before(e.pendingUntil)
		e.mu.Unlock()
		if !pending && s.index.unackedOf(e.sub.ID) < s.cfg.MaxUnacked {
			return false
		}
	}
	return true
}

// clockSlack allows for replicas' clocks differing from the server's,
// whose time stamps events, when comparing the two.
const clockSlack = time.Second

// pingedSince tells whether a ping of the subscription began after the
// event was stored. Such a ping covers the event, so a backlog of old
// events, as after a burst or an outage, needs no new timers. The state is
// a watcher's copy: if it lags, fewer events count as covered, never more.
func (s *Service) pingedSince(e *entry, stored time.Time) bool {
	st, _ := s.index.state(e.sub.ID)
	return !stored.IsZero() && st.Started.After(stored.Add(clockSlack))
}

// storedAt is when the stream stored a message; zero if unknown.
func storedAt(m jetstream.Msg) time.Time {
	md, err := m.Metadata()
	if err != nil {
		return time.Time{}
	}
	return md.Timestamp
}

// schedule makes sure a ping is pending for the subscription: either one
// already is (the change is coalesced into it), or a timer is started that
// fires NotifyDelay from now.
func (s *Service) schedule(ctx context.Context, e *entry) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := e.sub.ID
	for {
		now := time.Now()
		if now.Before(e.pendingUntil) {
			return nil
		}
		if s.index.unackedOf(id) >= s.cfg.MaxUnacked {
			return nil // capped: no ping until the feed is read
		}
		at := now.Add(s.cfg.NotifyDelay)
		err := bus.StartTimer(ctx, s.conn.JS, bus.NotifySched(id), bus.NotifyDue(id), at)
		if err == nil {
			s.m.scheduled.Inc()
			e.pendingUntil = at
			return nil
		}
		if !errors.Is(err, bus.ErrTimerRunning) {
			return err
		}
		// A timer runs already, set by another replica: learn until when.
		msg, err := s.notify.GetLastMsgForSubject(ctx, bus.NotifySched(id))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue // it fired meanwhile: set the next one
		case err != nil:
			return fmt.Errorf("read ping timer: %w", err)
		}
		if e.pendingUntil = bus.TimerAt(msg.Header); e.pendingUntil.IsZero() {
			return fmt.Errorf("ping timer of %s has no readable time", id)
		}
	}
}
