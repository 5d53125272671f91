package contract

import (
	"net/http"
	"strings"
	"testing"
)

func TestOpenAPIDocumentLoads(t *testing.T) {
	d, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if d.doc.OpenAPI != "3.1.0" || !d.doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q, want 3.1.0", d.doc.OpenAPI)
	}
}

// TestOpenAPICheck shows that the check of Do fails the exchanges that
// break the document, and passes those that keep to it.
func TestOpenAPICheck(t *testing.T) {
	d, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	bearer := map[string]string{"Authorization": "Bearer k", "Content-Type": "application/cloudevents+json"}
	event := []byte(`{"specversion":"1.0","id":"e1","source":"/erp","type":"invoice.changed","subject":"INV-1","ext":7}`)
	errBody := []byte(`{"error":{"code":"invalid_event","message":"is required","field":"id","request_id":"r1"}}`)
	for _, c := range []struct {
		name string
		r    Request
		a    Answer
		bad  string // in the error, or "" for none
	}{
		{"accepted", Request{Method: "POST", URL: "http://h/v1/events", Header: bearer, Body: event},
			Answer{Status: 202, Header: jsonHeader, Body: []byte(`{"accepted":["e1"],"duplicates":[]}`)}, ""},
		{"refused bad request", Request{Method: "POST", URL: "http://h/v1/events", Header: bearer, Body: []byte(`{"id":1}`)},
			Answer{Status: 400, Header: jsonHeader, Body: errBody}, ""},
		{"bad request taken", Request{Method: "POST", URL: "http://h/v1/events", Header: bearer, Body: []byte(`{"id":1}`)},
			Answer{Status: 202, Header: jsonHeader, Body: []byte(`{"accepted":["e1"],"duplicates":[]}`)}, "the request"},
		{"no key taken", Request{Method: "POST", URL: "http://h/v1/events", Header: map[string]string{"Content-Type": "application/cloudevents+json"}, Body: event},
			Answer{Status: 202, Header: jsonHeader, Body: []byte(`{"accepted":["e1"],"duplicates":[]}`)}, "the request"},
		{"undocumented status", Request{Method: "POST", URL: "http://h/v1/events", Header: bearer, Body: event},
			Answer{Status: 409, Header: jsonHeader, Body: errBody}, "409"},
		{"answer of another shape", Request{Method: "POST", URL: "http://h/v1/events", Header: bearer, Body: event},
			Answer{Status: 202, Header: jsonHeader, Body: []byte(`{"accepted":["e1"]}`)}, "duplicates"},
		{"error not in the error form", Request{Method: "POST", URL: "http://h/v1/events", Header: bearer, Body: event},
			Answer{Status: 400, Header: jsonHeader, Body: []byte(`{"error":"bad"}`)}, "the answer"},
		{"error without its request id", Request{Method: "POST", URL: "http://h/v1/events", Header: bearer, Body: event},
			Answer{Status: 400, Header: jsonHeader, Body: []byte(`{"error":{"code":"invalid_event","message":"is required"}}`)}, "request_id"},
		{"429 without Retry-After", Request{Method: "POST", URL: "http://h/v1/events", Header: bearer, Body: event},
			Answer{Status: 429, Header: jsonHeader, Body: errBody}, "Retry-After"},
		{"405", Request{Method: "PUT", URL: "http://h/v1/events"},
			Answer{Status: 405, Header: http.Header{"Content-Type": {"application/json"}, "Allow": {"POST"}}, Body: errBody}, ""},
		{"other method served", Request{Method: "PUT", URL: "http://h/v1/events"},
			Answer{Status: 200, Header: jsonHeader, Body: []byte(`{}`)}, "not 405"},
		{"peek", Request{Method: "GET", URL: "http://h/api/queues/q1/messages?count=2&timeout=1", Header: map[string]string{"X-PARTNER-KEY": "k"}},
			Answer{Status: 200, Header: jsonHeader, Body: []byte(`[{"messageId":"3","content":{"a":1}}]`)}, ""},
		{"peek count out of range taken", Request{Method: "GET", URL: "http://h/api/queues/q1/messages?count=101", Header: map[string]string{"X-PARTNER-KEY": "k"}},
			Answer{Status: 200, Header: jsonHeader, Body: []byte(`[]`)}, "count"},
		{"undocumented path", Request{Method: "GET", URL: "http://h/console/"},
			Answer{Status: 200, Header: http.Header{"Content-Type": {"text/html"}}, Body: []byte(`<html>`)}, ""},
	} {
		err := d.check(c.r, c.a)
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.bad)
		}
	}
}
