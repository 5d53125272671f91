package main

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
)

// collector is an OTLP/HTTP trace receiver that keeps the spans sent to
// it, with the service name they were sent under.
type collector struct {
	mu      sync.Mutex
	spans   []*tracev1.Span
	service string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if r.URL.Path != "/v1/traces" || proto.Unmarshal(b, &req) != nil {
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				c.service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			c.spans = append(c.spans, ss.Spans...)
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(nil)
}

// named answers the spans of a trace by name.
func (c *collector) named(trace string) map[string]*tracev1.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*tracev1.Span{}
	for _, s := range c.spans {
		if hex.EncodeToString(s.TraceId) == trace {
			out[s.Name] = s
		}
	}
	return out
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, an event's way is one trace,
// exported over OTLP: the producer's span, ingest, the route, the
// attempt; and the webhook carries the attempt span's context.
func TestTracingExportsOneTrace(t *testing.T) {
	spans := &collector{}
	otlp := httptest.NewServer(spans)
	t.Cleanup(otlp.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_SERVICE_NAME", "")

	const token = "trace-admin-token-0123456789"
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	base := start(t, "all", httpAddr, "--data-dir", t.TempDir(), "--nats-listen", "off", "--log-level", "error",
		"--http-listen", httpAddr, "--grpc-listen", grpcAddr, "--admin-token", token, "--allow-private-targets")
	hooks := &contract.Recorder{}
	receiver := httptest.NewServer(hooks)
	t.Cleanup(receiver.Close)
	tg := contract.Target{HTTP: base, GRPC: grpcAddr, Admin: contract.Dial(t, grpcAddr, token), Hooks: &contract.Receiver{URL: receiver.URL, API: receiver.URL}}
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
	if _, err := tg.Admin.CreateSubscription(t.Context(), &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: org, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, System: "traced", EventTypes: []string{"trace.checked"},
		Url: receiver.URL + "/hook"}}); err != nil {
		t.Fatal(err)
	}

	const trace, producer = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	p := tg.Post(t, key, "application/cloudevents+json", contract.JSON(t, contract.Event("e1", "trace.checked", "T-1", map[string]any{})),
		map[string]string{"traceparent": "00-" + trace + "-" + producer + "-01"})
	if p.Status != http.StatusAccepted {
		t.Fatalf("post: %d %s", p.Status, p.Body)
	}
	hit := tg.Hooks.WaitUnder(t, 30*time.Second, "/hook", 1)[0]
	parent := strings.Split(hit.Header.Get("traceparent"), "-")

	var got map[string]*tracev1.Span
	natstest.WaitFor(t, 10*time.Second, "the spans of ingest, route and attempt", func() bool {
		got = spans.named(trace)
		return got["POST /v1/events"] != nil && got["route"] != nil && got["webhook payload"] != nil
	})
	ingest, route, attempt := got["POST /v1/events"], got["route"], got["webhook payload"]
	for _, link := range []struct {
		child  *tracev1.Span
		parent string
	}{{ingest, producer}, {route, hex.EncodeToString(ingest.SpanId)}, {attempt, hex.EncodeToString(route.SpanId)}} {
		if got := hex.EncodeToString(link.child.ParentSpanId); got != link.parent {
			t.Errorf("span %q has parent %s, want %s", link.child.Name, got, link.parent)
		}
	}
	if ingest.Kind != tracev1.Span_SPAN_KIND_SERVER || route.Kind != tracev1.Span_SPAN_KIND_CONSUMER || attempt.Kind != tracev1.Span_SPAN_KIND_CLIENT {
		t.Errorf("kinds: ingest %v, route %v, attempt %v", ingest.Kind, route.Kind, attempt.Kind)
	}
	if len(parent) != 4 || parent[1] != trace || parent[2] != hex.EncodeToString(attempt.SpanId) {
		t.Errorf("webhook traceparent %q, want trace %s and the attempt's span %x", hit.Header.Get("traceparent"), trace, attempt.SpanId)
	}
	attrs := map[string]string{}
	for _, a := range attempt.Attributes {
		attrs[a.Key] = a.GetValue().String()
	}
	if !strings.Contains(attrs["http.response.status_code"], "200") || !strings.Contains(attrs["kurier.delivery.attempt"], "1") || attrs["kurier.subscription.id"] == "" {
		t.Errorf("attempt span attributes %v", attrs)
	}
	if spans.service != "kurier-all" {
		t.Errorf("spans exported as service %q, want kurier-all", spans.service)
	}
}
