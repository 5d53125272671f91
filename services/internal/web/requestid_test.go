package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"kurier.dev/services/internal/telemetry"
)

// lockedBuffer is a log written by the server's goroutines and read by
// the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines are the log lines that name id, by message.
func (l *lockedBuffer) lines(t *testing.T, id string) map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	for line := range strings.Lines(l.b.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["request_id"] == id {
			out[rec["msg"].(string)] = true
		}
	}
	return out
}

var newID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// TestRequestIDs serves a handler that logs and fails, and follows each
// request's id into the answer's header, the error body and the log.
func TestRequestIDs(t *testing.T) {
	var logs lockedBuffer
	log := telemetry.Logger(&logs, "debug")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		log.WarnContext(r.Context(), "handler failed")
		WriteError(w, r, ErrForbidden)
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, lis, Routes(mux), time.Second, log) }()
	defer func() { cancel(); <-done }()

	for _, c := range []struct {
		name, given string
		kept        bool
	}{
		{"given", "req-4711.abc_DEF:1", true},
		{"longest", strings.Repeat("x", 128), true},
		{"missing", "", false},
		{"too long", strings.Repeat("x", 129), false},
		{"with a tab", "a\tb", false},
		{"with a space", "a b", false},
		{"not ASCII", "grüße", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+lis.Addr().String()+"/fail", nil)
			if c.given != "" {
				req.Header.Set("X-Request-Id", c.given)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			id := resp.Header.Values("X-Request-Id")
			if len(id) != 1 {
				t.Fatalf("X-Request-Id %q", id)
			}
			if c.kept && id[0] != c.given || !c.kept && !newID.MatchString(id[0]) {
				t.Fatalf("sent %q, answered %q", c.given, id[0])
			}
			var body struct {
				Error map[string]any `json:"error"`
			}
			if err := json.Unmarshal(b, &body); err != nil || body.Error["request_id"] != id[0] || body.Error["code"] != "forbidden" {
				t.Fatalf("error body %s: %v", b, err)
			}
			// The request's line is logged once the answer has gone.
			deadline := time.Now().Add(5 * time.Second)
			for got := logs.lines(t, id[0]); !got["handler failed"] || !got["http request"]; got = logs.lines(t, id[0]) {
				if time.Now().After(deadline) {
					t.Fatalf("log lines with request_id %q: %v", id[0], got)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}

	// The router's own errors carry it too.
	req, _ := http.NewRequest(http.MethodPost, "http://"+lis.Addr().String()+"/fail", nil)
	req.Header.Set("X-Request-Id", "routed-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if e := errorForm(t, resp); resp.StatusCode != http.StatusMethodNotAllowed || e.RequestID != "routed-1" || resp.Header.Get("X-Request-Id") != "routed-1" {
		t.Fatalf("405: %d %+v %q", resp.StatusCode, e, resp.Header.Get("X-Request-Id"))
	}
}
