package ingest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/telemetry"
	"kurier.dev/services/internal/telemetry/spantest"
	"kurier.dev/services/natstest"
)

const (
	producerTrace  = "0af7651916cd43dd8448eb211c80319c"
	producerParent = "00-" + producerTrace + "-b7ad6b7169203331-01"
)

// storedParent answers the traceparent the last stored invoice.changed
// event of acme carries.
func storedParent(t *testing.T, conn *jet.Conn) string {
	t.Helper()
	s, err := conn.JS.Stream(context.Background(), bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), bus.EventsSubject("acme", "invoice.changed"))
	if err != nil {
		t.Fatal(err)
	}
	return m.Header.Get(bus.HeaderTraceParent)
}

// spanOf parses a traceparent.
func spanOf(t *testing.T, parent string) trace.SpanContext {
	t.Helper()
	h := nats.Header{}
	h.Set(bus.HeaderTraceParent, parent)
	sc := trace.SpanContextFromContext(telemetry.FromNATS(context.Background(), h))
	if !sc.IsValid() {
		t.Fatalf("traceparent %q is not valid", parent)
	}
	return sc
}

// The ingest span continues the trace of the request's traceparent
// header, and the stored event carries the ingest span's context.
func TestTraceFromHTTPHeader(t *testing.T) {
	spans := spantest.Record(t)
	url, _, conn, secret := start(t, DefaultConfig())
	status, _, body := post(t, url, secret, map[string]string{"Content-Type": event.MediaStructured, "traceparent": producerParent}, oneEvent)
	if status != http.StatusAccepted {
		t.Fatalf("post: %d %s", status, body)
	}
	stored := spanOf(t, storedParent(t, conn))
	ingest, ok := spantest.Of(spans, stored.TraceID())["POST /v1/events"]
	if stored.TraceID().String() != producerTrace || !ok {
		t.Fatalf("stored event's trace %s, ingest span found %v; want the producer's %s", stored.TraceID(), ok, producerTrace)
	}
	if ingest.SpanContext.SpanID() != stored.SpanID() || ingest.Parent.SpanID().String() != "b7ad6b7169203331" || ingest.SpanKind != trace.SpanKindServer {
		t.Fatalf("ingest span %s (kind %v) with parent %s; the stored event names span %s",
			ingest.SpanContext.SpanID(), ingest.SpanKind, ingest.Parent.SpanID(), stored.SpanID())
	}
}

// Without a traceparent header, an event's CloudEvents distributed-tracing
// extension names its trace: the event is stored in a span of its own,
// a child of the producer's and linked to the request's.
func TestTraceFromCloudEventsExtension(t *testing.T) {
	spans := spantest.Record(t)
	url, _, conn, secret := start(t, DefaultConfig())
	ev := `{"specversion":"1.0","id":"e1","source":"/s","type":"invoice.changed","subject":"I-1","traceparent":"` + producerParent + `"}`
	if status, _, body := post(t, url, secret, map[string]string{"Content-Type": event.MediaStructured}, ev); status != http.StatusAccepted {
		t.Fatalf("post: %d %s", status, body)
	}
	stored := spanOf(t, storedParent(t, conn))
	own, ok := spantest.Of(spans, stored.TraceID())["ingest event"]
	if stored.TraceID().String() != producerTrace || !ok || own.SpanContext.SpanID() != stored.SpanID() {
		t.Fatalf("stored event's context %s/%s, event span found %v; want a span of the producer's trace %s", stored.TraceID(), stored.SpanID(), ok, producerTrace)
	}
	if own.Parent.SpanID().String() != "b7ad6b7169203331" || len(own.Links) != 1 {
		t.Fatalf("event span's parent %s and %d links; want the producer's span and the request's", own.Parent.SpanID(), len(own.Links))
	}
	if req := spantest.Of(spans, own.Links[0].SpanContext.TraceID())["POST /v1/events"]; req.SpanContext.SpanID() != own.Links[0].SpanContext.SpanID() {
		t.Fatalf("event span links to %s, not to the request's span", own.Links[0].SpanContext.SpanID())
	}
}

// Over NATS, the request message's traceparent header names the trace.
func TestTraceFromNATSHeader(t *testing.T) {
	spans := spantest.Record(t)
	_, svc, conn, secret := start(t, DefaultConfig())
	run(t, svc)
	m := newRequest(secret, oneEvent)
	m.Header.Set(bus.HeaderTraceParent, producerParent)
	var resp *nats.Msg
	natstest.WaitForErr(t, 5*time.Second, "an answer", func() (err error) {
		resp, err = conn.NC.RequestMsg(m, time.Second)
		return err
	})
	if resp.Header.Get(StatusHeader) != "202" {
		t.Fatalf("nats ingest did not accept: %v", resp)
	}
	stored := spanOf(t, storedParent(t, conn))
	ingest, ok := spantest.Of(spans, stored.TraceID())["kurier.ingest process"]
	if stored.TraceID().String() != producerTrace || !ok || ingest.SpanContext.SpanID() != stored.SpanID() {
		t.Fatalf("stored event's context %s/%s, ingest span found %v; want the ingest span in the producer's trace %s", stored.TraceID(), stored.SpanID(), ok, producerTrace)
	}
}

// With tracing off (the no-op provider) no span is made, and the stored
// event carries the producer's traceparent unchanged.
func TestTraceOffPassesTheProducersOn(t *testing.T) {
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(noop.NewTracerProvider())
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	url, _, conn, secret := start(t, DefaultConfig())
	if status, _, body := post(t, url, secret, map[string]string{"Content-Type": event.MediaStructured, "traceparent": producerParent}, oneEvent); status != http.StatusAccepted {
		t.Fatalf("post: %d %s", status, body)
	}
	if got := storedParent(t, conn); got != producerParent {
		t.Fatalf("stored traceparent %q, want the producer's %q", got, producerParent)
	}
}

// What tracing adds to an ingest request when it is off (the no-op
// provider): taking the context from the headers, the request's span, and
// for each of its events the extension check and the stored context. The
// rest of a request costs tens of microseconds.
func BenchmarkTracingOff(b *testing.B) {
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(noop.NewTracerProvider())
	b.Cleanup(func() { otel.SetTracerProvider(prev) })
	for _, c := range []struct {
		name string
		h    http.Header
	}{{"no traceparent", http.Header{}}, {"traceparent", http.Header{"Traceparent": {producerParent}}}} {
		b.Run(c.name, func(b *testing.B) {
			ev := event.Event{ID: "e1", Source: "/s", Type: "invoice.changed"}
			msg := nats.NewMsg("x")
			b.ReportAllocs()
			for b.Loop() {
				ctx, span, traced := startSpan(telemetry.FromHTTP(context.Background(), c.h), "POST /v1/events", "http")
				if own := telemetry.FromExtensions(ctx, ev.Extensions); !traced && own != ctx {
					b.Fatal("no extension, yet a context of its own")
				}
				telemetry.ToNATS(ctx, msg.Header)
				endSpan(span, http.StatusAccepted, nil)
				span.End()
			}
		})
	}
}
