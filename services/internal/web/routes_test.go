package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"kurier.dev/services/internal/ratelimit"
)

// errorForm decodes an answer in the error form, failing the test when it
// is not one.
func errorForm(t *testing.T, resp *http.Response) Error {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Error *Error }
	if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &e) != nil || e.Error == nil || e.Error.Code == "" {
		t.Fatalf("%d %q is not in the error form", resp.StatusCode, b)
	}
	return *e.Error
}

func TestRoutesAnswerInTheErrorForm(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("DELETE /api/queues/{queueId}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "deleted "+r.PathValue("queueId"))
	})
	srv := httptest.NewServer(Routes(mux))
	defer srv.Close()

	for _, c := range []struct {
		method, path string
		status       int
		field, allow string
	}{
		{http.MethodGet, "/nothing", 404, "path", ""},
		{http.MethodGet, "/api/queues/q1", 405, "method", "DELETE"},
		{http.MethodDelete, "/api/queues/q1/../q2", 404, "path", ""},
		{http.MethodDelete, "/api/queues/%2E%2E", 404, "path", ""},
		{http.MethodDelete, "/api/queues/a%2F..%2Fb", 404, "path", ""},
		{http.MethodDelete, "/api//queues/q1", 404, "path", ""},
		{http.MethodDelete, "/api/queues/./q1", 404, "path", ""},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		e := errorForm(t, resp)
		resp.Body.Close()
		if resp.StatusCode != c.status || e.Field != c.field || resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d %+v Allow %q", c.method, c.path, resp.StatusCode, e, resp.Header.Get("Allow"))
		}
	}

	// Routed paths reach their handler with their path values, an escaped
	// slash kept inside its segment.
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/api/queues/a%2Fb", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "deleted a/b" {
		t.Fatalf("routed: %d %q", resp.StatusCode, b)
	}
}

func TestLimit(t *testing.T) {
	l, err := ratelimit.New(ratelimit.Rate{PerSecond: 1, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := Limit(l, "k", "Authorization"); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	WriteError(rec, httptest.NewRequest(http.MethodGet, "/", nil), Limit(l, "k", "Authorization"))
	resp := rec.Result()
	if e := errorForm(t, resp); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || e.Code != "rate_limited" || e.Field != "Authorization" {
		t.Fatalf("over the limit: %d Retry-After %q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), e)
	}
	if err := Limit(nil, "k", ""); err != nil {
		t.Fatalf("no limiter: %v", err)
	}
}
