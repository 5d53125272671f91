package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/subs"
)

// pinger is ping mode (Collmex): a change starts a coalescing timer in
// NOTIFY unless one runs; when it fires, the due message comes here and
// the subscription's URL gets a GET, unless the subscription has too many
// unacknowledged pings.
type pinger struct {
	cfg    Config
	js     jetstream.JetStream
	notify jetstream.Stream
	subs   *subs.Store
	index  *index
	send   *sender
	log    *slog.Logger
	m      *metrics
}

// pingedSince tells whether a ping of the subscription began after the
// event was stored. Such a ping covers the event, so a backlog of old
// events, as after a burst or an outage, needs no new timers. The state is
// a watcher's copy: if it lags, fewer events count as covered, never more.
func (p *pinger) pingedSince(e *entry, stored time.Time) bool {
	st, _ := p.index.state(e.sub.ID)
	return st.Covers(stored)
}

// schedule makes sure a ping is pending for the subscription after a
// change stored at stored: either one already is (the change is coalesced
// into it), or a timer is started that fires NotifyDelay from now.
func (p *pinger) schedule(ctx context.Context, e *entry, stored time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := e.sub.ID
	for {
		now := time.Now()
		if now.Before(e.pendingUntil) {
			return nil
		}
		if p.index.unackedOf(id) >= p.cfg.MaxUnacked {
			e.passOver(stored)
			return nil // capped: no ping until the feed is read
		}
		at := now.Add(p.cfg.NotifyDelay)
		// The replica that makes the ping may not have seen a subscription
		// made a moment ago yet: the revision tells it to wait for it.
		h := nats.Header{}
		bus.SetSubRevision(h, e.rev)
		err := jet.StartTimer(ctx, p.js, bus.NotifySched(id), bus.NotifyDue(id), at, h)
		if err == nil {
			p.m.scheduled.Inc()
			e.pendingUntil = at
			return nil
		}
		if !errors.Is(err, jet.ErrTimerRunning) {
			return err
		}
		// A timer runs already, set by another replica: learn until when.
		msg, err := p.notify.GetLastMsgForSubject(ctx, bus.NotifySched(id))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue // it fired meanwhile: set the next one
		case err != nil:
			return fmt.Errorf("read ping timer: %w", err)
		}
		if e.pendingUntil = jet.TimerAt(msg.Header); e.pendingUntil.IsZero() {
			return fmt.Errorf("ping timer of %s has no readable time", id)
		}
		// The timer ran when this change was already stored, so it fires
		// after it, even when its time has passed: the server fires up to a
		// scheduler tick late, and asking again until then would loop.
		return nil
	}
}

// passOver notes a change that got no ping because the count stood at
// its cap. e.mu must be held.
func (e *entry) passOver(stored time.Time) {
	if stored.After(e.passed) {
		e.passed = stored
	}
}

// reopened is told of every ping state written. Who resets the count (the
// change feed, switching the subscription on) starts a timer for the
// changes stored until then; a change stored after, which this replica
// passed over because it had not yet seen the reset, is left to the
// replica, which starts the timer now.
func (p *pinger) reopened(ctx context.Context, id string, st subs.PingState, written time.Time) {
	if st.Unacked >= p.cfg.MaxUnacked {
		return
	}
	e := p.index.get(id)
	if e == nil || e.sub.Mode != subs.ModePing || !e.sub.Active {
		return
	}
	e.mu.Lock()
	passed := e.passed
	e.passed = time.Time{}
	e.mu.Unlock()
	if passed.IsZero() || passed.Before(written) || st.Covers(passed) {
		return
	}
	go func() {
		if err := p.schedule(ctx, e, passed); err != nil && ctx.Err() == nil {
			p.log.Warn("ping for a change passed over at the cap not set; the next change sets one", "subscription", id, "err", err)
		}
	}()
}

// claimGrace is added to the ping timeout before a claim whose replica
// went silent is taken over.
const claimGrace = 5 * time.Second

// Reasons a due ping is not made now.
var (
	errCovered = errors.New("a later ping went out")
	errCapped  = errors.New("too many unacknowledged pings")
)

// waitError: the ping may go out at until, not before.
type waitError struct{ until time.Time }

func (w *waitError) Error() string { return "not before " + w.until.Format(time.RFC3339Nano) }

// Handle makes the ping a due message asks for. Ping state changes by
// compare-and-set, in two steps around the request: claim (count the ping,
// note who makes it), then finish (note when it ended). Between them no
// other replica pings the subscription, and the next ping starts no sooner
// than NotifyDelay after this one ended: so the receiver never sees two
// pings closer than that.
func (p *pinger) Handle(ctx context.Context, m jetstream.Msg) error {
	id := bus.NotifyDueSub(m.Subject())
	md, err := m.Metadata()
	if err != nil {
		return errNoMetadata
	}
	seq := md.Sequence.Stream
	e, ok := p.index.current(id, m.Headers())
	if !ok {
		return again(unseenWait, nil)
	}
	if e == nil || !e.sub.Active || e.sub.Mode != subs.ModePing {
		p.m.skipped.WithLabelValues("inactive").Inc()
		return nil
	}
	sub := e.sub
	known, rev := p.index.state(id)
	st, rev, err := p.subs.UpdateStateFrom(ctx, id, known, rev, func(st *subs.PingState) error {
		return p.claim(st, seq, time.Now())
	})
	var wait *waitError
	switch {
	case errors.Is(err, subs.ErrNotFound):
		p.m.skipped.WithLabelValues("inactive").Inc()
		return nil // deleted meanwhile
	case errors.Is(err, errCovered):
		p.m.skipped.WithLabelValues("covered").Inc()
		return nil
	case errors.Is(err, errCapped):
		p.m.skipped.WithLabelValues("capped").Inc()
		return nil
	case errors.As(err, &wait):
		return again(time.Until(wait.until), nil)
	case err != nil:
		return again(time.Second, fmt.Errorf("ping not claimed: %w", err))
	}

	p.index.setState(id, knownState{st: st, rev: rev})
	// The timer was set NotifyDelay before it fired, by the change that
	// started it: the ping's lag starts there.
	o, rec := p.send.send(ctx, p.request(sub, fmt.Sprintf("ping_%s_%d", id, st.PingID()), md.Timestamp.Add(-p.cfg.NotifyDelay)))
	rec.Unacked = st.Unacked
	started := st.ClaimAt
	st, rev, err = p.subs.UpdateStateFrom(ctx, id, st, rev, func(st *subs.PingState) error {
		st.Last = time.Now()
		if started.After(st.Started) {
			st.Started = started
		}
		st.Done = max(st.Done, seq)
		if st.Claim == seq {
			st.Claim, st.ClaimAt, st.ClaimID = 0, time.Time{}, 0
		}
		return nil
	})
	switch {
	case errors.Is(err, subs.ErrNotFound): // deleted meanwhile
	case err != nil:
		// The claim stays and goes stale; whoever takes it over counts this
		// ping as ended at the latest possible time.
		p.log.Warn("ping made but not recorded", "subscription", id, "err", err)
	default:
		p.index.setState(id, knownState{st: st, rev: rev})
	}
	// A ping is made once: a failed one is not repeated, the next change
	// pings again.
	outcome := outSuccess
	if !o.ok() {
		outcome = outDropped
	}
	p.send.record(rec, outcome)
	return nil
}

// request is a ping of sub: a signed GET of its URL, its lag counted from
// since (none if zero).
func (p *pinger) request(sub subs.Subscription, msgID string, since time.Time) call {
	return call{sub: sub, mode: subs.ModePing, method: http.MethodGet, url: sub.URL,
		msgID: msgID, timeout: p.cfg.PingTimeout, since: since, rec: dlog.Record{EventTypes: sub.EventTypes}}
}

// claim decides whether the due message seq may ping now, and if so
// records the claim in st.
func (p *pinger) claim(st *subs.PingState, seq uint64, now time.Time) error {
	if seq <= st.Done {
		return errCovered
	}
	var id uint64 // the ping taken over, if any
	if st.Claim != 0 {
		stale := st.ClaimAt.Add(p.cfg.PingTimeout + claimGrace)
		if now.Before(stale) {
			return &waitError{until: stale}
		}
		// That ping's replica went silent. It may have reached the
		// receiver as late as its timeout: count it as ending then. It is
		// made again under its own id and not counted again, whichever due
		// message finds it: the receiver sees it once more at most, and the
		// count matches the ids it has seen.
		id = st.PingID()
		if end := st.ClaimAt.Add(p.cfg.PingTimeout); end.After(st.Last) {
			st.Last = end
		}
		st.Claim, st.ClaimAt, st.ClaimID = 0, time.Time{}, 0
	}
	if id == 0 && st.Unacked >= p.cfg.MaxUnacked {
		return errCapped
	}
	if next := st.Last.Add(p.cfg.NotifyDelay); now.Before(next) {
		return &waitError{until: next}
	}
	if id == 0 {
		st.Unacked++ // every ping made counts, whatever its answer
	} else if id != seq {
		st.ClaimID = id
	}
	st.Claim, st.ClaimAt = seq, now
	return nil
}
