package ingest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/telemetry"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
)

// Routes adds the ingest API to mux.
func (s *Service) Routes(mux web.Router) {
	mux.HandleFunc("POST /v1/events", s.postEvents)
	mux.HandleFunc("GET /v1/changes", s.getChanges)
}

// inflightWait is how long a request waits for room among the bodies in
// flight before it is turned away.
const inflightWait = 2 * time.Second

func (s *Service) postEvents(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx, span, traced := startSpan(telemetry.FromHTTP(r.Context(), r.Header), "POST /v1/events", "http")
	defer span.End()
	status, err := s.serveEvents(w, r.WithContext(ctx), traced)
	if err != nil {
		var we *web.Error
		if !errors.As(err, &we) || we.Status >= 500 {
			s.log.WarnContext(ctx, "ingest failed", "err", err)
		}
		web.WriteError(w, r, err)
		status = http.StatusInternalServerError
		if we != nil {
			status = we.Status
		}
	}
	endSpan(span, status, err)
	s.m.requests.WithLabelValues("http", strconv.Itoa(status)).Inc()
	s.m.latency.WithLabelValues("http").Observe(time.Since(start).Seconds())
}

func (s *Service) serveEvents(w http.ResponseWriter, r *http.Request, traced bool) (int, error) {
	ctx := r.Context()
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return 0, web.KeyError(tenant.ErrUnauthenticated, "Authorization")
	}
	key, err := s.authenticate(ctx, secret, tenant.ScopeIngest, "Authorization")
	if err != nil {
		return 0, err
	}

	mode, err := modeOf(r.Header)
	if err != nil {
		return 0, err
	}
	limit := s.cfg.MaxStructured()
	switch mode {
	case event.MediaBatch:
		limit = s.cfg.MaxBatchBytes
	case "binary":
		limit = s.cfg.MaxData
	}
	field := "body"
	if mode == "binary" {
		field = "data" // the body is the event's data
	}
	if r.ContentLength > int64(limit) {
		return 0, tooLarge(field, limit)
	}
	body, taken, err := s.readBody(ctx, http.MaxBytesReader(w, r.Body, int64(limit)))
	defer s.inflight.Release(taken)
	if errors.Is(err, errNoRoom) {
		return 0, web.ErrOverloaded
	}
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return 0, tooLarge(field, limit)
		}
		return 0, web.Errf(http.StatusBadRequest, "invalid_body", "body", "the body could not be read: %v", err)
	}

	lim := event.Limits{MaxData: s.cfg.MaxData}
	var events []event.Event
	switch mode {
	case event.MediaStructured:
		var e event.Event
		e, err = event.Decode(body, lim)
		events = []event.Event{e}
	case event.MediaBatch:
		events, err = event.DecodeBatch(body, s.cfg.MaxBatchEvents, lim)
	default:
		var e event.Event
		e, err = event.FromBinary(r.Header, body, lim)
		events = []event.Event{e}
	}
	if err != nil {
		return 0, invalid(err)
	}
	if err := s.conform(key.Org, events, mode == event.MediaBatch); err != nil {
		return 0, err
	}
	res, err := s.store(ctx, key.Org, events, traced)
	if err != nil {
		return 0, storeErr(err, mode == event.MediaBatch)
	}
	web.WriteJSON(w, r, http.StatusAccepted, res)
	return http.StatusAccepted, nil
}

// bodyChunk is the room a body takes among those in flight at a time.
const bodyChunk = 32 << 10

// errNoRoom: the bodies in flight left no room.
var errNoRoom = errors.New("no room among the bodies in flight")

// readBody reads a body, taking room for it among the bodies in flight
// as its bytes arrive rather than for the most it may hold at once: a
// client that sends slowly holds only what it has sent, so a few slow
// senders cannot take the room every other request needs. A request waits
// up to inflightWait for room to begin; once reading, it is refused when
// room runs out rather than wait holding some, as requests that all wait
// for each other's room would get none. It answers the room taken, which
// the caller gives back.
func (s *Service) readBody(ctx context.Context, body io.Reader) ([]byte, int64, error) {
	var buf bytes.Buffer
	var taken int64
	for {
		ok := s.inflight.TryAcquire(bodyChunk)
		if !ok && taken == 0 {
			wctx, cancel := context.WithTimeout(ctx, inflightWait)
			ok = s.inflight.Acquire(wctx, bodyChunk) == nil
			cancel()
		}
		if !ok {
			return nil, taken, errNoRoom
		}
		taken += bodyChunk
		n, err := buf.ReadFrom(io.LimitReader(body, bodyChunk))
		if err != nil {
			return nil, taken, err
		}
		if n < bodyChunk {
			return buf.Bytes(), taken, nil
		}
	}
}

// authenticate checks a key and takes one request of its rate. field
// names where the key was sent.
func (s *Service) authenticate(ctx context.Context, secret string, scope tenant.Scope, field string) (tenant.Key, error) {
	key, err := s.tenants.Authenticate(ctx, secret, scope)
	return key, s.admit(key, err, field)
}

// admit turns the outcome of a key check into the answer, taking one
// request of the key's rate if it passed.
func (s *Service) admit(key tenant.Key, err error, field string) error {
	if err := web.KeyError(err, field); err != nil {
		return err
	}
	return web.Limit(s.limit, key.ID, field)
}

// modeOf picks the CloudEvents HTTP mode: the structured and batched media
// types name themselves; binary mode is a body of any type with
// ce-specversion.
func modeOf(h http.Header) (string, error) {
	ct := h.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err == nil && (mt == event.MediaStructured || mt == event.MediaBatch):
		return mt, nil
	case h.Get("Ce-Specversion") != "":
		if ct != "" && !event.IsMediaType(ct) {
			return "", web.Errf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type",
				"%q is not a media type", ct)
		}
		return "binary", nil
	}
	return "", web.Errf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type",
		"send %s, %s, or the data with ce-* headers (binary mode)", event.MediaStructured, event.MediaBatch)
}

func tooLarge(field string, limit int) error {
	return web.Errf(http.StatusRequestEntityTooLarge, "too_large", field, "is larger than %d bytes", limit)
}

// invalid turns a rejected event into a 400 naming the field and, in a
// batch, the index.
func invalid(err error) error {
	var ee *event.Error
	if !errors.As(err, &ee) {
		return err
	}
	we := &web.Error{Status: http.StatusBadRequest, Code: "invalid_event", Field: ee.Field, Message: ee.Message}
	if ee.TooLarge {
		we.Status, we.Code = http.StatusRequestEntityTooLarge, "too_large"
	}
	if ee.Index >= 0 {
		i := ee.Index
		we.Index = &i
		we.Field = "[" + strconv.Itoa(i) + "]." + ee.Field
	}
	return we
}
