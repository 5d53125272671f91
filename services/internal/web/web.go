// Package web holds the HTTP conventions every Kurier API follows: the JSON
// error form, JSON answers, health endpoints and a server that shuts down
// without dropping requests in flight.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Error is an API error. It is answered as
// {"error":{"code":…,"message":…,"field":…,"index":…}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// Index is the position of the offending item in a batch.
	Index *int `json:"index,omitempty"`
	// RetryAfter, when set, is sent as the Retry-After header (seconds).
	RetryAfter int `json:"-"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// Body is the JSON document an error is answered with.
func (e *Error) Body() []byte {
	b, _ := json.Marshal(struct {
		Error *Error `json:"error"`
	}{e})
	return b
}

// Errf makes an error with a formatted message.
func Errf(status int, code, field, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Common errors.
var (
	ErrUnauthenticated = &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "missing, unknown or revoked key"}
	ErrForbidden       = &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "the key lacks the scope for this call"}
	ErrOverloaded      = &Error{Status: http.StatusServiceUnavailable, Code: "overloaded", Message: "too much in flight, retry later", RetryAfter: 1}
	// ErrStoreFull: a stream that refuses new messages when full is; room
	// comes as old ones age out or are deleted, not within a second.
	ErrStoreFull = &Error{Status: http.StatusServiceUnavailable, Code: "store_full", Message: "the store is full, retry later", RetryAfter: 30}
)

// WriteJSON answers v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, fmt.Errorf("encode answer: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// WriteError answers err in the error form. Errors that are not *Error are
// internal: their text is not shown, as it may name internals.
func WriteError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(e.Body(), '\n'))
}

// Health adds /healthz (the process is alive) and /readyz (ready reports
// nil) to mux.
func Health(mux *http.ServeMux, ready func(context.Context) error) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

// DefaultHeaderTimeout is how long a client may take to send a request's
// headers unless HeaderTimeout says otherwise.
const DefaultHeaderTimeout = 10 * time.Second

// Option changes a setting of Serve's server.
type Option func(*http.Server)

// HeaderTimeout sets how long a client may take to send a request's
// headers before its connection is closed, so that clients that never
// finish them do not hold connections for good.
func HeaderTimeout(d time.Duration) Option {
	return func(s *http.Server) { s.ReadHeaderTimeout = d }
}

// Serve answers on lis until ctx ends, then stops accepting and waits up to
// grace for the requests in flight.
func Serve(ctx context.Context, lis net.Listener, h http.Handler, grace time.Duration, log *slog.Logger, opts ...Option) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: DefaultHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols),
	}
	// HTTP/2 without TLS besides HTTP/1: the gateway carries gRPC that way,
	// and HTTP/1 clients see no difference.
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	for _, o := range opts {
		o(srv)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err := <-done:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
