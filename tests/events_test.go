package tests

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// The same id from two sources is two events, both delivered; an event
// sent again within the dedupe window is a duplicate, and after it is
// delivered again under the webhook-id it had, so the receiver recognises
// it.
func TestEventIdentityAndResend(t *testing.T) {
	t.Parallel()
	const window = time.Second
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_DEDUPE_WINDOW=" + window.String()}})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	payloadSub(t, adm, &adminv1.Subscription{EventTypes: []string{"invoice.changed"}, Url: rcv.URL + "/hook"})
	send := func(source string) answer {
		t.Helper()
		e := ev("42", "invoice.changed", "RE-42", map[string]any{"from": source})
		e["source"] = source
		return post(t, k, secret, "application/cloudevents+json", mustJSON(t, e), nil)
	}
	for _, source := range []string{"/erp-a", "/erp-b"} {
		if a := send(source); a.Status != 202 || len(a.Accepted) != 1 {
			t.Fatalf("42 from %s: %+v", source, a)
		}
	}
	webhookID := map[string]string{} // by source
	for range 2 {
		h := rcv.next(t, 10*time.Second)
		var b struct{ Data struct{ From string } }
		_ = json.Unmarshal(h.Body, &b)
		webhookID[b.Data.From] = h.Header.Get("webhook-id")
	}
	if a, b := webhookID["/erp-a"], webhookID["/erp-b"]; a == "" || b == "" || a == b {
		t.Fatalf("webhook-ids of 42 from /erp-a and /erp-b: %v", webhookID)
	}
	if a := send("/erp-a"); a.Status != 202 || len(a.Duplicates) != 1 {
		t.Fatalf("42 from /erp-a again at once: %+v", a)
	}

	// After the window, the same event is taken again.
	natstest.WaitForErr(t, window+10*time.Second, "42 from /erp-a taken after the dedupe window", func() error {
		a := send("/erp-a")
		if a.Status != 202 {
			t.Fatalf("42 from /erp-a after the dedupe window: %+v", a)
		}
		if len(a.Accepted) != 1 {
			return fmt.Errorf("%+v", a)
		}
		return nil
	})
	h := rcv.next(t, 10*time.Second)
	if got := h.Header.Get("webhook-id"); got != webhookID["/erp-a"] {
		t.Fatalf("resent after the dedupe window under webhook-id %q, first under %q", got, webhookID["/erp-a"])
	}
	rcv.none(t, 500*time.Millisecond)
}
