package contract

import (
	"encoding/json"
	"maps"
	"net/http"
	"testing"
)

// Event is a CloudEvent in structured form, as upstream applications send
// it; data may be nil.
func Event(id, typ, subject string, data any) map[string]any {
	e := map[string]any{"specversion": "1.0", "id": id, "source": "/erp", "type": typ, "subject": subject}
	if data != nil {
		e["data"] = data
	}
	return e
}

// Posted is the answer of POST /v1/events.
type Posted struct {
	Answer
	Accepted   []string `json:"accepted"`
	Duplicates []string `json:"duplicates"`
}

// Post sends body to POST /v1/events with key as bearer token (none if
// empty), the content type and any further headers, and decodes the
// answer, which must be JSON.
func (tg Target) Post(t testing.TB, key, contentType string, body []byte, header map[string]string) Posted {
	t.Helper()
	h := map[string]string{}
	if contentType != "" {
		h["Content-Type"] = contentType
	}
	if key != "" {
		h["Authorization"] = "Bearer " + key
	}
	maps.Copy(h, header)
	a := Do(t, Request{Method: http.MethodPost, URL: tg.HTTP + "/v1/events", Header: h, Body: body})
	p := Posted{Answer: a}
	if ct := a.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("POST /v1/events: answer %d of content type %q: %s", a.Status, ct, a.Body)
	}
	if err := json.Unmarshal(a.Body, &p); err != nil {
		t.Fatalf("POST /v1/events: answer %d is not JSON: %s", a.Status, a.Body)
	}
	return p
}

// Publish posts events as one batch and fails the test unless they are
// all taken (accepted or known duplicates).
func (tg Target) Publish(t testing.TB, key string, events ...map[string]any) Posted {
	t.Helper()
	p := tg.Post(t, key, "application/cloudevents-batch+json", JSON(t, events), nil)
	if p.Status != http.StatusAccepted || len(p.Accepted)+len(p.Duplicates) != len(events) {
		t.Fatalf("POST /v1/events: %d %s", p.Status, p.Body)
	}
	return p
}

// JSON encodes v, failing the test if it cannot be.
func JSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
