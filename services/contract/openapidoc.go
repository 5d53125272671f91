package contract

import (
	"bytes"
	"net/http"
	"testing"

	"kurier.dev/services/openapi"
)

// OpenAPI is the suite of what every process serves besides its APIs:
// the OpenAPI document of this build at GET /openapi.json, health and
// metrics, each answer checked against the document by Do.
func OpenAPI(t *testing.T, tg Target) {
	a := Do(t, Request{Method: http.MethodGet, URL: tg.HTTP + "/openapi.json"})
	if a.Status != http.StatusOK || a.Header.Get("Content-Type") != "application/json" || !bytes.Equal(a.Body, openapi.Document) {
		t.Errorf("GET /openapi.json: %d %q, %d bytes, not the document of this build", a.Status, a.Header.Get("Content-Type"), len(a.Body))
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if a := Do(t, Request{Method: http.MethodGet, URL: tg.HTTP + path}); a.Status != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, a.Status, a.Body)
		}
	}
}
