package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
)

// RequestIDHeader carries a request's id: the HTTP header, and in lower
// case the gRPC metadata key. A caller may send its own; every answer
// names the one its request was logged under.
const RequestIDHeader = "X-Request-Id"

// maxRequestID bounds a caller's id: it is copied into every log line and
// error of the request.
const maxRequestID = 128

type requestIDKey struct{}

// WithRequestID returns ctx carrying id, which the logger of Logger adds
// to every line logged with ctx.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// RequestIDOf is the id a request goes by: the caller's, when it is 1 to
// 128 printable ASCII characters without spaces, else a new random one, so
// that no caller can put line breaks or control characters into the logs.
func RequestIDOf(given string) string {
	if sane(given) {
		return given
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail
	return hex.EncodeToString(b[:])
}

func sane(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := range len(id) {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// requestIDHandler adds the request id of the record's context, so that
// code deep in a request needs no logger of its own to be found by it.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
