package tests

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// carried is what a receiver gets of an event's data, in any of Kurier's
// JSON forms.
type carried struct {
	ID              string          `json:"id"`
	Timestamp       string          `json:"timestamp"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      []byte          `json:"data_base64"`
}

func decodeCarried(t *testing.T, b []byte) carried {
	t.Helper()
	var c carried
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return c
}

// An ERP's XML in binary mode and a PDF in data_base64 reach every kind of
// receiver as they were sent: payload bodies (standard and flat), queue
// messages and the change feed carry the XML as a string and the PDF
// base64-encoded, each with its content type; the standard body's
// timestamp is the event's time.
func TestNonJSONEventsDelivered(t *testing.T) {
	k := pingKurier(t)
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_PARTNER, adminv1.KeyScope_KEY_SCOPE_CHANGES)
	rcv := newReceiver(t)
	std := payloadSub(t, adm, &adminv1.Subscription{System: "std", EventTypes: []string{"invoice.changed"}, Url: rcv.URL + "/std"})
	payloadSub(t, adm, &adminv1.Subscription{System: "flat", EventTypes: []string{"invoice.changed"}, Url: rcv.URL + "/flat",
		PayloadFormat: adminv1.PayloadFormat_PAYLOAD_FORMAT_FLAT, Attributes: []*adminv1.Attribute{{Name: "mandant", Value: "7"}}})
	q := qCreate(t, k.HTTP, secret)
	if _, err := adm.CreateSubscription(t.Context(), &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "hub", EventTypes: []string{"invoice.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: q.QueueID, Active: true}}); err != nil {
		t.Fatal(err)
	}

	xml := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<Rechnung Nr="4711"><Kunde>Müller &amp; Söhne</Kunde><Betrag>119.00</Betrag></Rechnung>`
	if a := post(t, k, secret, "application/xml", []byte(xml), map[string]string{"ce-specversion": "1.0", "ce-id": "xml-1", "ce-source": "/erp",
		"ce-type": "invoice.changed", "ce-subject": "RE-4711", "ce-time": "2026-03-02T09:30:00+01:00"}); a.Status != 202 {
		t.Fatalf("XML in binary mode: %+v", a)
	}
	pdf := []byte("%PDF-1.4\n\xe2\xe3\xcf\xd3\n")
	e := ev("pdf-1", "invoice.changed", "RE-4712", nil)
	e["datacontenttype"], e["data_base64"] = "application/pdf", base64.StdEncoding.EncodeToString(pdf)
	if a := post(t, k, secret, "application/cloudevents+json", mustJSON(t, e), nil); a.Status != 202 {
		t.Fatalf("data_base64: %+v", a)
	}

	check := func(where string, c carried) {
		t.Helper()
		switch c.ID {
		case "xml-1":
			var text string
			if c.DataContentType != "application/xml" || json.Unmarshal(c.Data, &text) != nil || text != xml || c.DataBase64 != nil {
				t.Errorf("%s: the XML event came as %+v", where, c)
			}
			if where == "standard body" && c.Timestamp != "2026-03-02T08:30:00Z" {
				t.Errorf("%s: timestamp %q, not the event's time", where, c.Timestamp)
			}
		case "pdf-1":
			if c.DataContentType != "application/pdf" || !bytes.Equal(c.DataBase64, pdf) || c.Data != nil {
				t.Errorf("%s: the PDF event came as %+v", where, c)
			}
		default:
			t.Errorf("%s: an event %q", where, c.ID)
		}
	}
	wh, err := standardwebhooks.NewWebhook(std.GetSigningSecret())
	if err != nil {
		t.Fatal(err)
	}
	flats := 0
	for range 4 {
		h := rcv.next(t, 10*time.Second)
		if strings.HasPrefix(h.Path, "/flat") {
			// A flat body has no id: tell the events apart by their data.
			c := decodeCarried(t, h.Body)
			c.ID = map[bool]string{true: "xml-1", false: "pdf-1"}[c.Data != nil]
			check("flat body", c)
			if !strings.HasSuffix(string(h.Body), `,"mandant":"7"}`) {
				t.Errorf("flat body without the attribute: %s", h.Body)
			}
			flats++
			continue
		}
		if err := wh.Verify(h.Body, h.Header); err != nil {
			t.Errorf("signature: %v", err)
		}
		check("standard body", decodeCarried(t, h.Body))
	}
	if flats != 2 {
		t.Fatalf("%d flat bodies of 4 requests", flats)
	}

	msgs := waitPeek(t, k.HTTP, secret, q.QueueID, "?count=10", 2)
	for _, m := range msgs {
		check("queue message", decodeCarried(t, m.Content))
	}

	r := harness.Do(t, harness.Request{Method: http.MethodGet, URL: k.HTTP + "/v1/changes?system=shop&type=invoice.changed",
		Header: map[string]string{"Authorization": "Bearer " + secret}})
	var fd struct{ Changes []json.RawMessage }
	if err := json.Unmarshal(r.Body, &fd); err != nil || r.Status != 200 || len(fd.Changes) != 2 {
		t.Fatalf("change feed: %d %s", r.Status, r.Body)
	}
	for _, c := range fd.Changes {
		check("change feed", decodeCarried(t, c))
	}
}

// The same id from two sources is two events, both delivered; an event
// sent again within the dedupe window is a duplicate, and after it is
// delivered again under the webhook-id it had, so the receiver recognises
// it.
func TestEventIdentityAndResend(t *testing.T) {
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
