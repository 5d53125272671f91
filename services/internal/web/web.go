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

	"kurier.dev/services/internal/telemetry"
)

// Error is an API error. It is answered as
// {"error":{"code":…,"message":…,"field":…,"index":…,"request_id":…}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// Index is the position of the offending item in a batch.
	Index *int `json:"index,omitempty"`
	// RetryAfter, when set, is sent as the Retry-After header (seconds).
	RetryAfter int `json:"-"`
	// RequestID names the request in the logs; WriteError sets it.
	RequestID string `json:"request_id,omitempty"`
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
func WriteJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, r, fmt.Errorf("encode answer: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// WriteError answers err in the error form, with the id of r (see
// RequestIDs). Errors that are not *Error are internal: their text is not
// shown, as it may name internals.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if errors.As(err, &e) {
		c := *e // shared errors such as ErrForbidden stay as they are
		e = &c
	} else {
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	e.RequestID = telemetry.RequestID(r.Context())
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(e.Body(), '\n'))
}

// Health adds /healthz (the process is alive) and /readyz (ready reports
// nil) to mux.
func Health(mux Router, ready func(context.Context) error) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			WriteJSON(w, r, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
		WriteJSON(w, r, http.StatusOK, map[string]string{"status": "ready"})
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
// grace for the requests in flight. Every request goes by an id (see
// RequestIDs).
func Serve(ctx context.Context, lis net.Listener, h http.Handler, grace time.Duration, log *slog.Logger, opts ...Option) error {
	srv := &http.Server{
		Handler:           RequestIDs(h, log),
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

// RequestIDs gives every request an id: the caller's X-Request-Id when it
// is sane, else a new one. The id is in the request's context, so that
// every line logged with it and every error answered carries it; in the
// request's header, so that a proxy (the gateway) hands it on and the
// service behind keeps it; and in the answer's header. Each request is
// logged at debug level.
func RequestIDs(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := telemetry.RequestIDOf(r.Header.Get(telemetry.RequestIDHeader))
		r.Header.Set(telemetry.RequestIDHeader, id)
		ctx := telemetry.WithRequestID(r.Context(), id)
		iw := &idWriter{ResponseWriter: w, id: id}
		h.ServeHTTP(iw, r.WithContext(ctx))
		log.DebugContext(ctx, "http request", "method", r.Method, "path", r.URL.Path, "status", iw.status,
			"seconds", time.Since(start).Seconds())
	})
}

// idWriter names the request id in the answer's header, unless the handler
// has: a proxied answer already names the id it was sent, and once more
// would make it a list.
type idWriter struct {
	http.ResponseWriter
	id     string
	status int
}

// sent notes the status of the answer's header, naming the id in it.
func (w *idWriter) sent(status int) {
	if w.status != 0 {
		return
	}
	w.status = status
	if w.Header().Get(telemetry.RequestIDHeader) == "" {
		w.Header().Set(telemetry.RequestIDHeader, w.id)
	}
}

func (w *idWriter) WriteHeader(status int) {
	if status >= 200 { // not an informational answer, which another follows
		w.sent(status)
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *idWriter) Write(b []byte) (int, error) {
	w.sent(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

// FlushError is what http.ResponseController calls to flush; a flush
// sends the header when nothing has yet.
func (w *idWriter) FlushError() error {
	w.sent(http.StatusOK)
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is for handlers that ask for an http.Flusher.
func (w *idWriter) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach the connection's writer for
// everything else (deadlines, full duplex).
func (w *idWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
