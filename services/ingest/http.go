package ingest

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
)

// Routes adds the ingest API to mux.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/events", s.postEvents)
	mux.HandleFunc("GET /v1/changes", s.getChanges)
}

// inflightWait is how long a request waits for room among the bodies in
// flight before it is turned away.
const inflightWait = 2 * time.Second

func (s *Service) postEvents(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status, err := s.serveEvents(w, r)
	if err != nil {
		var we *web.Error
		if !errors.As(err, &we) || we.Status >= 500 {
			s.log.Warn("ingest failed", "err", err)
		}
		web.WriteError(w, err)
		status = http.StatusInternalServerError
		if we != nil {
			status = we.Status
		}
	}
	s.m.requests.WithLabelValues("http", strconv.Itoa(status)).Inc()
	s.m.latency.WithLabelValues("http").Observe(time.Since(start).Seconds())
}

func (s *Service) serveEvents(w http.ResponseWriter, r *http.Request) (int, error) {
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
	limit := s.cfg.MaxData + envelope
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
	wctx, cancel := context.WithTimeout(ctx, inflightWait)
	err = s.inflight.Acquire(wctx, int64(limit))
	cancel()
	if err != nil {
		return 0, web.ErrOverloaded
	}
	defer s.inflight.Release(int64(limit))

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
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
	res, err := s.store(ctx, key.Org, events)
	if err != nil {
		return 0, err
	}
	web.WriteJSON(w, http.StatusAccepted, res)
	return http.StatusAccepted, nil
}

// authenticate checks a key and takes one request of its rate. field
// names where the key was sent.
func (s *Service) authenticate(ctx context.Context, secret string, scope tenant.Scope, field string) (tenant.Key, error) {
	key, err := s.tenants.Authenticate(ctx, secret, scope)
	if err := web.KeyError(err, field); err != nil {
		return key, err
	}
	return key, web.Limit(s.limit, key.ID, field)
}

// modeOf picks the CloudEvents HTTP mode: the structured and batched media
// types name themselves; binary mode is any JSON body with ce-specversion.
func modeOf(h http.Header) (string, error) {
	ct := h.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err == nil && (mt == event.MediaStructured || mt == event.MediaBatch):
		return mt, nil
	case h.Get("Ce-Specversion") != "":
		if ct != "" && !event.IsJSON(ct) {
			return "", web.Errf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type",
				"binary mode takes JSON data (application/json), not %q", ct)
		}
		return "binary", nil
	}
	return "", web.Errf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type",
		"send %s, %s, or JSON data with ce-* headers (binary mode)", event.MediaStructured, event.MediaBatch)
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
