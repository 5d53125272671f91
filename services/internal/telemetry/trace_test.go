package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

func TestTracingOn(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, false},
	} {
		if got := TracingOn(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("%v: tracing on %v, want %v", c.env, got, c.want)
		}
	}
}

// Off, spans record nothing, and the context a request brought is passed
// on unchanged.
func TestTracingOffPassesContextOn(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	if _, err := Tracing(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx, span := Tracer("test").Start(FromHTTP(context.Background(), http.Header{"Traceparent": {parent}}), "x")
	defer span.End()
	out := http.Header{}
	ToHTTP(ctx, out)
	if span.IsRecording() || out.Get("traceparent") != parent {
		t.Fatalf("recording %v, passed on %q; want not recording and %q", span.IsRecording(), out.Get("traceparent"), parent)
	}
}

// A log line written with a span's context names its trace and span.
func TestLogsCarryTraceAndSpan(t *testing.T) {
	var buf bytes.Buffer
	log := Logger(&buf, "info").With("role", "test")
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	log.InfoContext(ctx, "traced")
	log.Info("untraced")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	var traced, untraced map[string]any
	if len(lines) != 2 || json.Unmarshal(lines[0], &traced) != nil || json.Unmarshal(lines[1], &untraced) != nil {
		t.Fatalf("log: %s", buf.Bytes())
	}
	if traced["trace_id"] != tid.String() || traced["span_id"] != sid.String() || traced["role"] != "test" {
		t.Errorf("traced line %v", traced)
	}
	if _, ok := untraced["trace_id"]; ok {
		t.Errorf("untraced line %v names a trace", untraced)
	}
}
