package contract

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// Tracing checks that a producer's W3C trace context reaches the receiver:
// the webhook of an event sent with a traceparent header, or with the
// CloudEvents distributed-tracing extension, carries a traceparent of the
// producer's trace. Whether Kurier exports spans or not, the trace id is
// the producer's; the span id is the attempt's when it does, else the
// producer's.
func Tracing(t *testing.T, tg Target) {
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
	adminSub(t, tg, &adminv1.Subscription{OrgId: org, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, System: "traced",
		EventTypes: []string{"trace.checked"}, Url: tg.Hooks.URL + "/" + org + "/hook"})
	const (
		viaHeader    = "4bf92f3577b34da6a3ce929d0e0e4736"
		viaExtension = "0af7651916cd43dd8448eb211c80319c"
	)
	ev := Event("header-1", "trace.checked", "T-1", map[string]any{})
	p := tg.Post(t, key, "application/cloudevents+json", JSON(t, ev), map[string]string{"traceparent": "00-" + viaHeader + "-00f067aa0ba902b7-01"})
	if p.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/events with traceparent: %d %s", p.Status, p.Body)
	}
	ev = Event("extension-1", "trace.checked", "T-2", map[string]any{})
	ev["traceparent"] = "00-" + viaExtension + "-b7ad6b7169203331-01"
	if p := tg.Post(t, key, "application/cloudevents+json", JSON(t, ev), nil); p.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/events with the traceparent extension: %d %s", p.Status, p.Body)
	}
	got := map[string]string{}
	for _, h := range tg.Hooks.WaitUnder(t, 30*time.Second, "/"+org+"/", 2) {
		var body struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal([]byte(h.Body), &body)
		got[body.ID] = h.Header.Get("traceparent")
	}
	for id, want := range map[string]string{"header-1": viaHeader, "extension-1": viaExtension} {
		parts := strings.Split(got[id], "-")
		if len(parts) != 4 || parts[1] != want || parts[2] == "0000000000000000" {
			t.Errorf("webhook of %s carries traceparent %q, want one of trace %s", id, got[id], want)
		}
	}
}
