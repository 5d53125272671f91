package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/catalog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
)

// The change feed (Collmex "Änderungs-Datenabfrage"): what changed of one
// event type since the system's last query, the latest version per
// document. Its position per (org, system, type) is kept in the feeds
// bucket.
const (
	defaultChanges = 1000
	maxSystem      = 20
	// scanFactor bounds the events one query reads, per change answered,
	// so a query over a long backlog of one hot document stays short.
	scanFactor = 10
	minScan    = 10000
	// feedAttempts and feedBackoff bound the reads of a query that keeps
	// losing the position to queries at the same time (see serveChanges).
	feedAttempts = 10
	feedBackoff  = 10 * time.Millisecond
)

// Change is one changed document in a feed answer.
type Change struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Subject string `json:"subject"`
	Time    string `json:"time"`
	event.DataMembers
}

// Changes is the feed's answer.
type Changes struct {
	Changes []Change `json:"changes"`
	Cursor  string   `json:"cursor"`
	More    bool     `json:"more"`
}

// feedPos is a stored feed position: the last stream sequence the system
// has been given (without cursors) or has acknowledged (with them).
type feedPos struct {
	Seq uint64 `json:"seq"`
}

// Cursors are "c" and a stream sequence: opaque to receivers, cheap to check.
func encodeCursor(seq uint64) string { return "c" + strconv.FormatUint(seq, 10) }

func decodeCursor(c string) (uint64, bool) {
	digits, ok := strings.CutPrefix(c, "c")
	if !ok || digits == "" || len(digits) > 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

type feedQuery struct {
	org, system, typ string
	limit            int
	withCursor       bool
	cursor           uint64
}

func parseFeedQuery(r *http.Request, org string) (feedQuery, error) {
	q := r.URL.Query()
	fq := feedQuery{org: org, system: q.Get("system"), typ: q.Get("type"), limit: defaultChanges}
	if n := utf8.RuneCountInString(fq.system); n == 0 || n > maxSystem || !utf8.ValidString(fq.system) {
		return fq, web.Errf(http.StatusBadRequest, "invalid_parameter", "system", "must be the system's name, 1-%d characters", maxSystem)
	}
	for _, c := range fq.system {
		if c < 0x20 || c == 0x7f {
			return fq, web.Errf(http.StatusBadRequest, "invalid_parameter", "system", "must not contain control characters")
		}
	}
	if name, ok := catalog.ByCode(fq.typ); ok {
		fq.typ = name
	}
	if !catalog.ValidType(fq.typ) {
		return fq, web.Errf(http.StatusBadRequest, "invalid_parameter", "type", "must be an event type name such as invoice.changed or a Collmex event code 1-9")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > defaultChanges {
			return fq, web.Errf(http.StatusBadRequest, "invalid_parameter", "limit", "must be a whole number from 1 to %d", defaultChanges)
		}
		fq.limit = n
	}
	if q.Has("cursor") {
		fq.withCursor = true
		if c := q.Get("cursor"); c != "" {
			seq, ok := decodeCursor(c)
			if !ok {
				return fq, web.Errf(http.StatusBadRequest, "invalid_parameter", "cursor", "is not a cursor from a previous answer")
			}
			fq.cursor = seq
		}
	}
	return fq, nil
}

func (s *Service) getChanges(w http.ResponseWriter, r *http.Request) {
	res, err := s.serveChanges(r)
	if err != nil {
		var we *web.Error
		if !errors.As(err, &we) || we.Status >= 500 {
			s.log.WarnContext(r.Context(), "change feed failed", "err", err)
		}
		web.WriteError(w, r, err)
		return
	}
	web.WriteJSON(w, r, http.StatusOK, res)
}

func (s *Service) serveChanges(r *http.Request) (Changes, error) {
	ctx := r.Context()
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return Changes{}, web.KeyError(tenant.ErrUnauthenticated, "Authorization")
	}
	key, err := s.authenticate(ctx, secret, tenant.ScopeChanges, "Authorization")
	if err != nil {
		return Changes{}, err
	}
	fq, err := parseFeedQuery(r, key.Org)
	if err != nil {
		return Changes{}, err
	}
	// Without a cursor, two queries at once must not both be given the
	// same changes: the position moves by compare-and-set, and the loser
	// reads again from where the winner left off. Racing, readers that
	// keep querying one feed would make one query lose again and again
	// until it gave up; so the queries of this process take turns, and
	// only those of other replicas race, which a random pause, longer
	// after each loss, puts out of step.
	unlock, err := s.feedsMu.lock(ctx, bus.FeedKey(fq.org, fq.system, fq.typ))
	if err != nil {
		return Changes{}, unavailable(err)
	}
	defer unlock()
	var res Changes
	for attempt := range feedAttempts {
		if attempt > 0 {
			pause := time.NewTimer(rand.N(time.Duration(attempt) * feedBackoff))
			select {
			case <-pause.C:
			case <-ctx.Done():
				pause.Stop()
				return Changes{}, unavailable(ctx.Err())
			}
		}
		res, err = s.queryFeed(ctx, fq)
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			break
		}
	}
	if err != nil {
		return Changes{}, unavailable(err)
	}
	if err := s.ackPings(ctx, fq, res); err != nil {
		s.log.WarnContext(ctx, "unacked pings not acknowledged", "system", fq.system, "type", fq.typ, "err", err)
	}
	return res, nil
}

// feedLocks lets one query at a time of this process read a feed and
// move its position.
type feedLocks struct {
	mu   sync.Mutex // guards held
	held map[string]*feedLock
}

type feedLock struct {
	turn  chan struct{} // holds a value while a query has the feed
	users int           // queries holding or waiting for it
}

// lock waits for the feed's turn, or for ctx to end, and answers the
// function that ends the turn.
func (f *feedLocks) lock(ctx context.Context, key string) (func(), error) {
	f.mu.Lock()
	if f.held == nil {
		f.held = map[string]*feedLock{}
	}
	l := f.held[key]
	if l == nil {
		l = &feedLock{turn: make(chan struct{}, 1)}
		f.held[key] = l
	}
	l.users++
	f.mu.Unlock()
	release := func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if l.users--; l.users == 0 {
			delete(f.held, key)
		}
	}
	select {
	case l.turn <- struct{}{}:
		return func() { <-l.turn; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// ackPings resets the unacked counter of the system's ping subscription
// for the type, as reading the feed does in Collmex, and then makes sure
// that a ping follows the changes the answer did not hold. One stored
// after the feed was read but before the reset may have found the
// subscription at its cap, and then no ping was set for it; without this
// the system would not hear of it until some later change.
func (s *Service) ackPings(ctx context.Context, fq feedQuery, answered Changes) error {
	id, ok, err := s.subs.PingSubscription(ctx, fq.org, fq.system, fq.typ)
	if err != nil || !ok {
		return err
	}
	through, _ := decodeCursor(answered.Cursor)
	return s.subs.AckPings(ctx, s.conn.NC, id, fq.org, []string{fq.typ}, through, s.cfg.NotifyDelay)
}

func unavailable(err error) error {
	var we *web.Error
	if errors.As(err, &we) {
		return err
	}
	return fmt.Errorf("%w (%w)", &web.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the change feed cannot be read right now, retry later", RetryAfter: 1}, err)
}

func (s *Service) queryFeed(ctx context.Context, fq feedQuery) (Changes, error) {
	key := bus.FeedKey(fq.org, fq.system, fq.typ)
	var pos feedPos
	var rev uint64
	e, err := s.feeds.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return Changes{}, err
	default:
		rev = e.Revision()
		if err := json.Unmarshal(e.Value(), &pos); err != nil {
			return Changes{}, fmt.Errorf("decode feed position %s: %w", key, err)
		}
	}
	start := pos.Seq
	if fq.withCursor && fq.cursor > start {
		info, err := s.events.Info(ctx)
		if err != nil {
			return Changes{}, err
		}
		if fq.cursor > info.State.LastSeq {
			return Changes{}, web.Errf(http.StatusBadRequest, "invalid_parameter", "cursor", "is not a cursor from a previous answer")
		}
		start = fq.cursor // acknowledged up to here
	}
	res, last, err := s.readFeed(ctx, fq, start)
	if err != nil {
		return Changes{}, err
	}
	// Without a cursor the feed moves past what it answered; with one, only
	// to what the receiver acknowledged.
	next := start
	if !fq.withCursor {
		next = last
	}
	if next != pos.Seq {
		b, _ := json.Marshal(feedPos{Seq: next})
		if rev == 0 {
			_, err = s.feeds.Create(ctx, key, b)
		} else {
			_, err = s.feeds.Update(ctx, key, b, rev)
		}
		if err != nil {
			return Changes{}, err
		}
	}
	return res, nil
}

// readFeed reads the type's events after seq and keeps the latest per
// document, oldest first, stopping before a document beyond the limit.
// It answers the last sequence the answer covers.
func (s *Service) readFeed(ctx context.Context, fq feedQuery, after uint64) (Changes, uint64, error) {
	res := Changes{Changes: []Change{}}
	last := after
	at := map[string]int{} // document -> index in list
	var list []*Change
	full := false
	var filters []string
	for _, t := range catalog.Expand([]string{fq.typ}) {
		filters = append(filters, bus.EventsSubject(fq.org, t))
	}
	pending, read, err := jet.Read(ctx, s.conn.JS, bus.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
	}, max(scanFactor*fq.limit, minScan), func(m jetstream.Msg) (bool, error) {
		md, err := m.Metadata()
		if err != nil {
			return true, err
		}
		var ev event.Event
		if err := ev.UnmarshalJSON(m.Data()); err != nil {
			s.log.ErrorContext(ctx, "undecodable stored event skipped", "seq", md.Sequence.Stream, "err", err)
			last = md.Sequence.Stream
			return false, nil
		}
		i, seen := at[ev.Subject]
		if !seen && len(at) == fq.limit {
			full = true // this one and the rest stay for the next query
			return true, nil
		}
		ch := &Change{ID: ev.ID, Type: ev.Type, Subject: ev.Subject, Time: ev.Time, DataMembers: ev.Members()}
		if ch.Time == "" {
			ch.Time = md.Timestamp.UTC().Format(time.RFC3339Nano)
		}
		if seen {
			list[i] = nil // an older version: only the latest is answered
		}
		at[ev.Subject] = len(list)
		list = append(list, ch)
		last = md.Sequence.Stream
		return false, nil
	})
	if err != nil {
		return res, after, err
	}
	for _, ch := range list {
		if ch != nil {
			res.Changes = append(res.Changes, *ch)
		}
	}
	res.More = full || read < pending
	res.Cursor = encodeCursor(last)
	return res, last, nil
}
