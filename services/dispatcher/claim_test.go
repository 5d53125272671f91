package dispatcher

import (
	"errors"
	"testing"
	"time"

	"kurier.dev/services/internal/subs"
)

func TestClaim(t *testing.T) {
	s := &pinger{cfg: Config{NotifyDelay: time.Minute, MaxUnacked: 3, PingTimeout: 10 * time.Second}}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	stale := now.Add(-s.cfg.PingTimeout - claimGrace - time.Second)
	cases := []struct {
		name string
		st   subs.PingState
		seq  uint64
		err  error         // nil, errCovered or errCapped
		wait time.Duration // > 0: a waitError until now+wait
		want subs.PingState
	}{
		{name: "first ping", seq: 5,
			want: subs.PingState{Unacked: 1, Claim: 5, ClaimAt: now}},
		{name: "older due than one pinged", st: subs.PingState{Done: 7}, seq: 5, err: errCovered},
		{name: "the same due again", st: subs.PingState{Done: 7}, seq: 7, err: errCovered},
		{name: "capped", st: subs.PingState{Unacked: 3}, seq: 9, err: errCapped},
		{name: "too soon after the last ping", st: subs.PingState{Unacked: 1, Last: now.Add(-20 * time.Second), Done: 4}, seq: 9,
			wait: 40 * time.Second},
		{name: "a delay after the last ping", st: subs.PingState{Unacked: 1, Last: now.Add(-time.Minute), Done: 4}, seq: 9,
			want: subs.PingState{Unacked: 2, Last: now.Add(-time.Minute), Done: 4, Claim: 9, ClaimAt: now}},
		{name: "another replica is pinging", st: subs.PingState{Claim: 8, ClaimAt: now.Add(-time.Second)}, seq: 9,
			wait: s.cfg.PingTimeout + claimGrace - time.Second},
		{name: "a silent replica's claim is taken over, its ping counted as ended at its timeout",
			st: subs.PingState{Unacked: 1, Claim: 8, ClaimAt: stale}, seq: 9,
			wait: stale.Add(s.cfg.PingTimeout).Add(time.Minute).Sub(now)},
		{name: "a silent replica's ping is made again under its id, not counted again, even at the cap",
			st: subs.PingState{Unacked: 3, Claim: 8, ClaimAt: stale.Add(-2 * time.Minute)}, seq: 9,
			want: subs.PingState{Unacked: 3, Last: stale.Add(-2 * time.Minute).Add(s.cfg.PingTimeout), Claim: 9, ClaimAt: now, ClaimID: 8}},
		{name: "a ping taken over twice keeps the first id",
			st: subs.PingState{Unacked: 2, Claim: 9, ClaimID: 8, ClaimAt: stale.Add(-2 * time.Minute)}, seq: 10,
			want: subs.PingState{Unacked: 2, Last: stale.Add(-2 * time.Minute).Add(s.cfg.PingTimeout), Claim: 10, ClaimAt: now, ClaimID: 8}},
		{name: "our own crashed attempt is not counted twice",
			st: subs.PingState{Unacked: 3, Claim: 9, ClaimAt: stale.Add(-2 * time.Minute)}, seq: 9,
			want: subs.PingState{Unacked: 3, Last: stale.Add(-2 * time.Minute).Add(s.cfg.PingTimeout), Claim: 9, ClaimAt: now}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := c.st
			err := s.claim(&st, c.seq, now)
			var w *waitError
			switch {
			case c.wait > 0:
				if !errors.As(err, &w) || !w.until.Equal(now.Add(c.wait)) {
					t.Fatalf("got %v, want a wait until %v", err, now.Add(c.wait))
				}
			case c.err != nil:
				if !errors.Is(err, c.err) {
					t.Fatalf("got %v, want %v", err, c.err)
				}
			default:
				if err != nil || st != c.want {
					t.Fatalf("got %+v, %v\nwant %+v", st, err, c.want)
				}
			}
		})
	}
}
