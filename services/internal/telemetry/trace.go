package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagation is W3C Trace Context alone, fixed rather than read from the
// global propagator, so that a producer's traceparent is carried through
// the streams to the webhook even in a process that exports no spans.
var propagator = propagation.TraceContext{}

// TracingOn tells whether the standard OTEL_* variables ask for spans to
// be exported: an OTLP endpoint is named, or OTLP is asked for by name,
// and neither the exporter nor the SDK is switched off.
func TracingOn(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch strings.ToLower(getenv("OTEL_TRACES_EXPORTER")) {
	case "none":
		return false
	case "otlp":
		return true
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Tracing sets the process's tracer provider: one that exports over OTLP
// (HTTP/protobuf; endpoint, headers, sampler and batching from the OTEL_*
// variables) when TracingOn, else the no-op one, whose spans cost nothing
// and pass on the context they were started in. The service is named
// kurier-<role> unless OTEL_SERVICE_NAME says otherwise. shutdown flushes
// the spans still buffered.
func Tracing(ctx context.Context, role string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagator)
	if !TracingOn(os.Getenv) {
		otel.SetTracerProvider(noop.NewTracerProvider())
		return func(context.Context) error { return nil }, nil
	}
	if p := otlpProtocol(); p != "http/protobuf" {
		return nil, fmt.Errorf("tracing: OTLP protocol %q is not supported: Kurier exports http/protobuf", p)
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// over the default name.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "kurier-"+role)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

func otlpProtocol() string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "http/protobuf"
}

// Tracer is the named tracer of the provider in effect. It is looked up on
// each use, not kept, so that a provider set later (as tests do) applies.
func Tracer(name string) trace.Tracer { return otel.GetTracerProvider().Tracer(name) }

// FromHTTP answers ctx with the trace context of a request's traceparent
// and tracestate headers, if it has a valid one.
func FromHTTP(ctx context.Context, h http.Header) context.Context {
	return propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// ToHTTP sets a request's traceparent and tracestate to ctx's span.
func ToHTTP(ctx context.Context, h http.Header) {
	propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// FromNATS answers ctx with the trace context of a NATS message's
// traceparent and tracestate headers (lower-case, as NATS headers are
// case-sensitive), if it has a valid one.
func FromNATS(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return propagator.Extract(ctx, natsCarrier(h))
}

// ToNATS sets a NATS message's traceparent and tracestate to ctx's span;
// without one it sets nothing.
func ToNATS(ctx context.Context, h nats.Header) {
	propagator.Inject(ctx, natsCarrier(h))
}

type natsCarrier nats.Header

func (c natsCarrier) Get(k string) string { return nats.Header(c).Get(k) }
func (c natsCarrier) Set(k, v string)     { nats.Header(c).Set(k, v) }
func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// FromExtensions answers ctx with the trace context of a CloudEvent's
// distributed-tracing extension (its traceparent and tracestate
// attributes), if it has a valid one.
func FromExtensions(ctx context.Context, ext map[string]json.RawMessage) context.Context {
	if _, ok := ext["traceparent"]; !ok {
		return ctx
	}
	return propagator.Extract(ctx, extCarrier(ext))
}

type extCarrier map[string]json.RawMessage

func (c extCarrier) Get(k string) string {
	var s string
	if json.Unmarshal(c[k], &s) != nil {
		return ""
	}
	return s
}
func (c extCarrier) Set(string, string) {}
func (c extCarrier) Keys() []string     { return []string{"traceparent", "tracestate"} }

// traceHandler adds the trace_id and span_id of the record's context, when
// it has a span, so that a log line can be found from its trace.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}
func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
