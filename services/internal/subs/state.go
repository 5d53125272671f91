package subs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/catalog"
	"kurier.dev/services/internal/jet"
)

// PingState is what the dispatcher keeps per subscription. Changes go
// through compare-and-set, so replicas never both claim one ping.
type PingState struct {
	// FailingSince (payload mode) is when deliveries began to fail without
	// a success since; zero while they succeed.
	FailingSince time.Time `json:"failing_since,omitzero"`
	// Unacked counts pings since the system last read the change feed.
	Unacked int `json:"unacked"`
	// Last is when the last ping ended: the next starts no sooner than
	// Last plus the notify delay, so the receiver never sees two closer.
	Last time.Time `json:"last,omitzero"`
	// Started is when the last ping began. A change stored before it is
	// covered: the system reads the feed after that ping and finds it.
	Started time.Time `json:"started,omitzero"`
	// Done is the highest due message a ping has gone out for; older ones
	// are covered by it.
	Done uint64 `json:"done,omitempty"`
	// Claim is the due message a ping is being made for, since ClaimAt.
	Claim   uint64    `json:"claim,omitempty"`
	ClaimAt time.Time `json:"claim_at,omitzero"`
	// ClaimID is the due message whose webhook-id the claimed ping
	// carries when it differs from Claim: a ping taken over from a replica
	// that went silent keeps that ping's id, since the receiver may have
	// it already and Unacked counted it once.
	ClaimID uint64 `json:"claim_id,omitempty"`
	// Ordered payload subscriptions: Cursor is the last event (EVENTS
	// sequence) delivered or given up in order; a failed attempt at the
	// next one is retried at RetryAt, after Attempts so far.
	Cursor   uint64    `json:"cursor,omitempty"`
	Attempts int       `json:"attempts,omitempty"`
	RetryAt  time.Time `json:"retry_at,omitzero"`
}

// PingID is the due message whose webhook-id the claimed ping carries.
func (st PingState) PingID() uint64 {
	if st.ClaimID != 0 {
		return st.ClaimID
	}
	return st.Claim
}

// ParseState decodes a stored state.
func ParseState(b []byte) (PingState, error) {
	var st PingState
	err := json.Unmarshal(b, &st)
	return st, err
}

// State reads a subscription's ping state; none yet is the zero state.
func (s *Store) State(ctx context.Context, id string) (PingState, error) {
	st, _, err := s.readState(ctx, id)
	return st, err
}

func (s *Store) readState(ctx context.Context, id string) (PingState, uint64, error) {
	e, err := s.state.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return PingState{}, 0, nil
	}
	if err != nil {
		return PingState{}, 0, fmt.Errorf("read ping state %s: %w", id, err)
	}
	st, err := ParseState(e.Value())
	if err != nil {
		return PingState{}, 0, fmt.Errorf("decode ping state %s: %w", id, err)
	}
	return st, e.Revision(), nil
}

// LeaderState reads a subscription's state and its revision through the
// bucket's leader, for a reader that must not act on a state a moment
// old: on a replicated bucket a plain read may be answered by a follower
// that does not have the last write yet. A state deleted with its
// subscription is ErrNotFound.
func (s *Store) LeaderState(ctx context.Context, id string) (PingState, uint64, error) {
	m, err := jet.LeaderGet(ctx, s.js.Conn(), bus.KVStream(bus.BucketNotifyState), jet.LeaderQuery{LastBySubject: bus.KVSubject(bus.BucketNotifyState, id)})
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return PingState{}, 0, nil
	case err != nil:
		return PingState{}, 0, fmt.Errorf("read ping state %s: %w", id, err)
	case m.Header.Get("KV-Operation") != "":
		return PingState{}, 0, ErrNotFound
	}
	st, err := ParseState(m.Data)
	if err != nil {
		return PingState{}, 0, fmt.Errorf("decode ping state %s: %w", id, err)
	}
	return st, m.Sequence, nil
}

// ErrSkip, returned by an UpdateState function, leaves the state as it is.
var ErrSkip = errors.New("no change")

// UpdateState applies fn to the current state and stores the result if
// nothing changed it meanwhile, else reads again and reapplies fn. It
// answers the stored state and its revision.
func (s *Store) UpdateState(ctx context.Context, id string, fn func(*PingState) error) (PingState, uint64, error) {
	st, rev, err := s.readState(ctx, id)
	if err != nil {
		return PingState{}, 0, err
	}
	return s.UpdateStateFrom(ctx, id, st, rev, fn)
}

// UpdateStateFrom is UpdateState starting from a state believed current,
// with its revision (0: none stored yet), such as a watcher's copy: when
// the belief holds, the change costs one write and no read. The state of
// a deleted subscription is not written again: that is ErrNotFound.
func (s *Store) UpdateStateFrom(ctx context.Context, id string, st PingState, rev uint64, fn func(*PingState) error) (PingState, uint64, error) {
	for {
		if err := fn(&st); err != nil {
			return st, rev, err
		}
		b, _ := json.Marshal(st)
		// Revision 0 expects no entry at all, not even the marker the
		// subscription's delete left (which Create would write over).
		next, err := s.state.Update(ctx, id, b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			if st, rev, err = s.LeaderState(ctx, id); err != nil {
				return PingState{}, 0, err
			}
			continue
		}
		if err != nil {
			return PingState{}, 0, fmt.Errorf("write ping state %s: %w", id, err)
		}
		return st, next, nil
	}
}

// ResetUnacked sets the unacknowledged ping count to zero, as reading the
// change feed or switching the subscription on again does, and answers
// the state after it.
func (s *Store) ResetUnacked(ctx context.Context, id string) (PingState, error) {
	st, _, err := s.UpdateState(ctx, id, func(st *PingState) error {
		if st.Unacked == 0 {
			return ErrSkip
		}
		st.Unacked = 0
		return nil
	})
	if errors.Is(err, ErrSkip) {
		return st, nil
	}
	return st, err
}

// AckPings resets a ping subscription's unacknowledged pings and, when
// its newest change of types (in org) stored after sequence after is
// covered by no ping, starts its timer to fire delay from now. A
// dispatcher that still saw the count at its cap routed such a change
// without setting a timer, and nothing else would ping for it. The change feed passes the sequence it
// answered through; switching a subscription on, the last one before.
// A subscription deleted meanwhile is no error.
func (s *Store) AckPings(ctx context.Context, nc *nats.Conn, id, org string, types []string, after uint64, delay time.Duration) error {
	st, err := s.ResetUnacked(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reset unacked of %s: %w", id, err)
	}
	// Read through the leader: a replica behind it could miss the change
	// that was stored a moment ago.
	var newest *jetstream.RawStreamMsg
	for _, t := range catalog.Expand(types) {
		m, err := jet.LeaderGet(ctx, nc, bus.StreamEvents, jet.LeaderQuery{LastBySubject: bus.EventsSubject(org, t)})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("newest change: %w", err)
		}
		if newest == nil || m.Sequence > newest.Sequence {
			newest = m
		}
	}
	if newest == nil || newest.Sequence <= after || st.Covers(newest.Time) {
		return nil
	}
	err = jet.StartTimer(ctx, s.js, bus.NotifySched(id), bus.NotifyDue(id), time.Now().Add(delay), nil)
	if err != nil && !errors.Is(err, jet.ErrTimerRunning) {
		return fmt.Errorf("ping of %s: %w", id, err)
	}
	return nil
}

// clockSlack allows for the clocks of Kurier's processes differing from
// the NATS server's, which time-stamps events, when comparing the two.
const clockSlack = time.Second

// Covers tells whether a ping began after a change stored at stored: the
// system reads the feed after that ping and finds the change, so the
// change needs no ping of its own. A ping being made counts from its
// claim.
func (st PingState) Covers(stored time.Time) bool {
	began := st.Started
	if st.Claim != 0 && st.ClaimAt.After(began) {
		began = st.ClaimAt
	}
	return !stored.IsZero() && began.After(stored.Add(clockSlack))
}
