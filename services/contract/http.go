package contract

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// Request is an HTTP request as a test sends it, hostile ones included:
// any bytes as body, sent with its length or, when Chunked, without.
type Request struct {
	Method, URL string
	Header      map[string]string
	Body        []byte
	Chunked     bool
}

// Answer is an HTTP answer.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// client follows no redirects: a redirect is an answer to check, not a
// way on.
var client = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Do sends r and reads the whole answer, checking the exchange against
// the OpenAPI document (see apiDoc.check).
func Do(t testing.TB, r Request) Answer {
	t.Helper()
	var body io.Reader = bytes.NewReader(r.Body)
	if r.Chunked {
		body = struct{ io.Reader }{body} // hides the length, so it is sent chunked
	}
	req, err := http.NewRequest(r.Method, r.URL, body)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the answer: %v", r.Method, r.URL, err)
	}
	a := Answer{Status: resp.StatusCode, Header: resp.Header, Body: b}
	doc, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.check(r, a); err != nil {
		t.Errorf("%s %s: openapi.json: %v", r.Method, r.URL, err)
	}
	return a
}

// APIError is the error form of Kurier's HTTP APIs:
// {"error":{"code","message","field","index","request_id"}}.
type APIError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Field     string `json:"field"`
	Index     *int   `json:"index"`
	RequestID string `json:"request_id"`
}

// ErrorForm decodes an answer in the error form. ok is false unless the
// answer is application/json holding exactly {"error":{…}} with a code, a
// message and the request id its X-Request-Id header names, and no other
// member.
func (a Answer) ErrorForm() (e APIError, ok bool) {
	if a.Header.Get("Content-Type") != "application/json" {
		return e, false
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(a.Body, &doc) != nil || len(doc) != 1 || doc["error"] == nil {
		return e, false
	}
	dec := json.NewDecoder(bytes.NewReader(doc["error"]))
	dec.DisallowUnknownFields()
	if dec.Decode(&e) != nil {
		return e, false
	}
	return e, e.Code != "" && e.Message != "" && e.RequestID != "" && e.RequestID == a.Header.Get("X-Request-Id")
}
