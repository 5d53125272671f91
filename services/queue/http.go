package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/telemetry"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
)

// The headers of ComNorm's API.
const (
	PartnerKeyHeader = "X-PARTNER-KEY"
	SecretHeader     = "X-COMNORM-NOTIFICATION-SECRET"
)

// Routes adds the queue API to mux.
func (s *Service) Routes(mux web.Router) {
	mux.HandleFunc("POST /api/queues", s.handle("create_queue", s.createQueue))
	mux.HandleFunc("DELETE /api/queues/{queueId}", s.handle("delete_queue", s.deleteQueue))
	mux.HandleFunc("POST /api/queues/{queueId}/messages", s.handle("post", s.postMessage))
	mux.HandleFunc("GET /api/queues/{queueId}/messages", s.handle("peek", s.peek))
	mux.HandleFunc("DELETE /api/queues/{queueId}/messages/{messageId}", s.handle("delete_message", s.deleteMessage))
}

// handle answers what fn returns as an error in the error form; fn writes
// its own successful answer.
func (s *Service) handle(op string, fn func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, span := telemetry.Tracer("kurier.dev/services/queue").Start(telemetry.FromHTTP(r.Context(), r.Header),
			"queue "+op, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		r = r.WithContext(ctx)
		status := "200"
		err := fn(w, r)
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
			status = "canceled" // the client went away: no one to answer
		default:
			var we *web.Error
			if !errors.As(err, &we) || we.Status >= 500 {
				s.log.WarnContext(r.Context(), "queue request failed", "op", op, "err", err)
				span.SetStatus(codes.Error, err.Error())
			}
			web.WriteError(w, r, err)
			status = "500"
			if we != nil {
				status = strconv.Itoa(we.Status)
			}
		}
		span.SetAttributes(attribute.String("kurier.queue.status", status))
		s.m.requests.WithLabelValues(op, status).Inc()
	}
}

// Errors of the queue API.
var (
	errQueueNotFound   = &web.Error{Status: http.StatusNotFound, Code: "not_found", Field: "queueId", Message: "no such queue"}
	errMessageNotFound = &web.Error{Status: http.StatusNotFound, Code: "not_found", Field: "messageId", Message: "no such message in this queue"}
	errWrongSecret     = &web.Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Field: SecretHeader, Message: "missing or wrong notification secret"}
	errQueueFull       = &web.Error{Status: http.StatusTooManyRequests, Code: "queue_full", Field: "queueId", Message: "the queue holds as many messages as it may; they must be deleted first", RetryAfter: 1}
	errStopping        = &web.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the service is stopping, retry", RetryAfter: 1}
)

// unavailable answers a failure of the store: retry shortly. err is kept
// for the log.
func unavailable(err error) error {
	return fmt.Errorf("%w (%w)", &web.Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Message: "the queue store did not answer, retry later", RetryAfter: 1}, err)
}

// partner checks the partner key, answering its org.
func (s *Service) partner(r *http.Request) (string, error) {
	secret := r.Header.Get(PartnerKeyHeader)
	if secret == "" {
		return "", web.KeyError(tenant.ErrUnauthenticated, PartnerKeyHeader)
	}
	key, err := s.tenants.Authenticate(r.Context(), secret, tenant.ScopePartner)
	if err := web.KeyError(err, PartnerKeyHeader); err != nil {
		return "", err
	}
	return key.Org, web.Limit(s.limit, key.ID, PartnerKeyHeader)
}

// storeErr turns the store's answers into the API's.
func storeErr(err error) error {
	switch {
	case errors.Is(err, queues.ErrNotFound):
		return errQueueNotFound
	case errors.Is(err, queues.ErrFull):
		return errQueueFull
	case errors.Is(err, queues.ErrStoreFull):
		return web.ErrStoreFull
	}
	return unavailable(err)
}

type created struct {
	QueueID            string `json:"queueId"`
	NotificationURL    string `json:"notificationURL"`
	NotificationSecret string `json:"notificationSecret"`
}

func (s *Service) createQueue(w http.ResponseWriter, r *http.Request) error {
	org, err := s.partner(r)
	if err != nil {
		return err
	}
	id, secret := queues.NewID(), queues.NewSecret()
	q := queues.Queue{ID: id, Org: org, Hash: tenant.HashSecret(secret), Created: time.Now().UTC()}
	err = s.queues.Create(r.Context(), q, s.cfg.MaxPerOrg)
	if errors.Is(err, queues.ErrTooMany) {
		return web.Errf(http.StatusTooManyRequests, "too_many_queues", "", "the org has %d queues, as many as it may; delete one first", s.cfg.MaxPerOrg)
	}
	if err != nil {
		return unavailable(err)
	}
	s.log.InfoContext(r.Context(), "queue created", "org", org, "queue", id)
	web.WriteJSON(w, r, http.StatusOK, created{QueueID: id, NotificationURL: s.cfg.PublicURL + "/api/queues/" + id + "/messages", NotificationSecret: secret})
	return nil
}

func (s *Service) deleteQueue(w http.ResponseWriter, r *http.Request) error {
	org, err := s.partner(r)
	if err != nil {
		return err
	}
	id := r.PathValue("queueId")
	if err := s.queues.Delete(r.Context(), org, id); err != nil {
		return storeErr(err)
	}
	s.log.InfoContext(r.Context(), "queue deleted", "org", org, "queue", id)
	// Peeks waiting here on the queue learn at once that it is gone; those
	// on other replicas at their next look.
	s.waiters.wake(id)
	w.WriteHeader(http.StatusOK)
	return nil
}

// postMessage takes a sender's message: no partner key, the queue's
// notification secret instead.
func (s *Service) postMessage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	// An unknown queue is 404, as ComNorm answers; its id is 128 random
	// bits, so the answer tells a guesser nothing useful.
	q, err := s.queues.Get(ctx, r.PathValue("queueId"))
	switch {
	case err != nil:
		return storeErr(err)
	case !q.Verify(r.Header.Get(SecretHeader)):
		return errWrongSecret
	}
	if err := web.Limit(s.limit, "queue:"+q.ID, SecretHeader); err != nil {
		return err
	}
	tooLong := web.Errf(http.StatusRequestEntityTooLarge, "too_large", "body", "the message has more than %d characters", queues.MaxContent)
	if r.ContentLength > queues.MaxContentBytes {
		return tooLong
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, queues.MaxContentBytes))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return tooLong
	}
	if err != nil {
		return web.Errf(http.StatusBadRequest, "invalid_message", "body", "the body could not be read: %v", err)
	}
	var ce *queues.ContentError
	if err := queues.CheckContent(body); errors.As(err, &ce) {
		if ce.TooLong {
			return tooLong
		}
		return web.Errf(http.StatusBadRequest, "invalid_message", "body", "%s", ce.Message)
	}
	if _, err := s.queues.Post(ctx, q.ID, body, ""); err != nil {
		return storeErr(err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// peekParams reads count (default 1) and timeout (seconds, default 0).
func (s *Service) peekParams(r *http.Request) (count int, timeout time.Duration, err error) {
	q := r.URL.Query()
	count = 1
	if v := q.Get("count"); q.Has("count") {
		if count, err = strconv.Atoi(v); err != nil || count < 1 || count > maxCount {
			return 0, 0, web.Errf(http.StatusBadRequest, "invalid_parameter", "count", "must be a whole number from 1 to %d", maxCount)
		}
	}
	if v := q.Get("timeout"); q.Has("timeout") {
		limit := int(s.cfg.MaxTimeout / time.Second)
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > limit {
			return 0, 0, web.Errf(http.StatusBadRequest, "invalid_parameter", "timeout", "must be a whole number of seconds from 0 to %d", limit)
		}
		timeout = time.Duration(n) * time.Second
	}
	return count, timeout, nil
}

// entry is one message as a peek answers it.
type entry struct {
	MessageID string          `json:"messageId"`
	Content   json.RawMessage `json:"content"`
}

// peek answers the messages at the head of a queue, without removing
// them. With none there and a timeout, it waits until one arrives, woken
// by the stream's republished headers, or answers 408 once the time is up.
func (s *Service) peek(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	org, err := s.partner(r)
	if err != nil {
		return err
	}
	count, timeout, err := s.peekParams(r)
	if err != nil {
		return err
	}
	q, err := s.queues.OfOrg(ctx, org, r.PathValue("queueId"))
	if err != nil {
		return storeErr(err)
	}
	var woken chan struct{}
	if timeout > 0 {
		woken = s.waiters.add(q.ID)
		defer s.waiters.remove(q.ID, woken)
		s.m.waiting.Inc()
		defer s.m.waiting.Dec()
	}
	deadline := time.Now().Add(timeout)
	for looked := false; ; looked = true {
		msgs, err := s.queues.Peek(ctx, q.ID, count)
		if err != nil {
			return unavailable(err)
		}
		if len(msgs) > 0 || timeout == 0 {
			return writePeek(w, msgs)
		}
		// A deleted queue reads as empty: without looking at its record
		// the peek would wait out its timeout and answer 408, as if the
		// queue were still there.
		if looked {
			if _, err := s.queues.OfOrg(ctx, org, q.ID); err != nil {
				return storeErr(err)
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return web.Errf(http.StatusRequestTimeout, "timeout", "timeout", "no message arrived within %d seconds", int(timeout/time.Second))
		}
		t := time.NewTimer(min(recheck, left))
		select {
		case <-woken:
		case <-t.C:
		case <-s.stopping:
			t.Stop()
			return errStopping
		case <-ctx.Done():
			t.Stop()
			return ctx.Err() // the client went away
		}
		t.Stop()
	}
}

func writePeek(w http.ResponseWriter, msgs []queues.Message) error {
	out := make([]entry, len(msgs))
	for i, m := range msgs {
		out[i] = entry{MessageID: strconv.FormatUint(m.Seq, 10), Content: m.Content}
	}
	b, err := queues.Marshal(out)
	if err != nil {
		return fmt.Errorf("encode messages: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

func (s *Service) deleteMessage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	org, err := s.partner(r)
	if err != nil {
		return err
	}
	q, err := s.queues.OfOrg(ctx, org, r.PathValue("queueId"))
	if err != nil {
		return storeErr(err)
	}
	seq, err := strconv.ParseUint(r.PathValue("messageId"), 10, 64)
	if err != nil || seq == 0 {
		return errMessageNotFound
	}
	err = s.queues.DeleteMessage(ctx, q.ID, seq)
	if errors.Is(err, queues.ErrNotFound) {
		return errMessageNotFound
	}
	if err != nil {
		return unavailable(err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
