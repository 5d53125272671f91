package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/webhook"
)

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

// handleDue makes the ping a due message asks for. Ping state changes by
// compare-and-set, in two steps around the request: claim (count the ping,
// note who makes it), then finish (note when it ended). Between them no
// other replica pings the subscription, and the next ping starts no sooner
// than NotifyDelay after this one ended: so the receiver never sees two
// pings closer than that.
func (s *Service) handleDue(ctx context.Context, m jetstream.Msg) {
	id := strings.TrimPrefix(m.Subject(), "kurier.notify.due.")
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	seq := md.Sequence.Stream
	e := s.index.get(id)
	if e == nil || !e.sub.Active || e.sub.Mode != subs.ModePing {
		s.m.skipped.WithLabelValues("inactive").Inc()
		_ = m.Ack()
		return
	}
	sub := e.sub
	known, rev := s.index.state(id)
	st, rev, err := s.subs.UpdateStateFrom(ctx, id, known, rev, func(st *subs.PingState) error {
		return s.claim(st, seq, time.Now())
	})
	var wait *waitError
	switch {
	case errors.Is(err, errCovered):
		s.m.skipped.WithLabelValues("covered").Inc()
		_ = m.Ack()
		return
	case errors.Is(err, errCapped):
		s.m.skipped.WithLabelValues("capped").Inc()
		_ = m.Ack()
		return
	case errors.As(err, &wait):
		_ = m.NakWithDelay(time.Until(wait.until))
		return
	case err != nil:
		s.log.Warn("ping not claimed, it comes again", "subscription", id, "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}

	s.index.setState(id, knownState{st: st, rev: rev})
	rec := s.ping(ctx, sub, fmt.Sprintf("ping_%s_%d", id, seq))
	rec.Unacked = st.Unacked
	started := st.ClaimAt
	st, rev, err = s.subs.UpdateStateFrom(ctx, id, st, rev, func(st *subs.PingState) error {
		st.Last = time.Now()
		if started.After(st.Started) {
			st.Started = started
		}
		st.Done = max(st.Done, seq)
		if st.Claim == seq {
			st.Claim, st.ClaimAt = 0, time.Time{}
		}
		return nil
	})
	if err != nil {
		// The claim stays and goes stale; whoever takes it over counts this
		// ping as ended at the latest possible time.
		s.log.Warn("ping made but not recorded", "subscription", id, "err", err)
	} else {
		s.index.setState(id, knownState{st: st, rev: rev})
	}
	_ = m.Ack()
	// The log record is written beside the next pings, not before them.
	s.logs.Go(func() {
		if err := dlog.Append(ctx, s.conn.JS, rec); err != nil {
			s.log.Warn("delivery not logged", "subscription", id, "err", err)
		}
	})
}

// claim decides whether the due message seq may ping now, and if so
// records the claim in st.
func (s *Service) claim(st *subs.PingState, seq uint64, now time.Time) error {
	if seq <= st.Done {
		return errCovered
	}
	own := false
	if st.Claim != 0 {
		stale := st.ClaimAt.Add(s.cfg.PingTimeout + claimGrace)
		if now.Before(stale) {
			return &waitError{until: stale}
		}
		// That ping's replica went silent. It may have reached the
		// receiver as late as its timeout: count it as ending then.
		own = st.Claim == seq
		if end := st.ClaimAt.Add(s.cfg.PingTimeout); end.After(st.Last) {
			st.Last = end
		}
		st.Claim, st.ClaimAt = 0, time.Time{}
	}
	if !own && st.Unacked >= s.cfg.MaxUnacked {
		return errCapped
	}
	if next := st.Last.Add(s.cfg.NotifyDelay); now.Before(next) {
		return &waitError{until: next}
	}
	if !own {
		st.Unacked++ // every ping made counts, whatever its answer
	}
	st.Claim, st.ClaimAt = seq, now
	return nil
}

// ping makes the GET, signed over the empty body, and describes it for the
// delivery log.
func (s *Service) ping(ctx context.Context, sub subs.Subscription, msgID string) dlog.Record {
	start := time.Now()
	rec := dlog.Record{Time: start.UTC(), Org: sub.Org, Subscription: sub.ID, System: sub.System,
		EventTypes: sub.EventTypes, Mode: string(sub.Mode), URL: sub.URL}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PingTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sub.URL, nil)
	if err == nil {
		req.Header.Set("User-Agent", s.cfg.UserAgent)
		err = webhook.Sign(req.Header, msgID, start, nil, sub.Secrets(start)...)
	}
	var resp *http.Response
	if err == nil {
		resp, err = s.client.Do(req)
	}
	rec.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	s.m.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		rec.Error = describe(err)
		s.m.pings.WithLabelValues("error").Inc()
		return rec
	}
	// Read a little of the answer so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	rec.Status = resp.StatusCode
	s.m.pings.WithLabelValues(strconv.Itoa(resp.StatusCode/100) + "xx").Inc()
	return rec
}

// describe says why a request failed without quoting the URL, which the
// record holds already.
func describe(err error) string {
	if errors.Is(err, webhook.ErrForbiddenTarget) {
		return "target address is not allowed (loopback, private or link-local; KURIER_ALLOW_PRIVATE_TARGETS=true allows it)"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
