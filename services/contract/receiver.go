package contract

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kurier.dev/services/natstest"
)

// Hit is one request a Recorder received.
type Hit struct {
	At     time.Time   `json:"at"`
	Method string      `json:"method"`
	Path   string      `json:"path"` // with the query
	Header http.Header `json:"header"`
	Body   string      `json:"body"`
}

// Recorder is a webhook receiver that keeps every request. It answers 200,
// or the status a path starting /status/<code>/ names, so one receiver
// serves both healthy and failing subscriptions; GET /_received?from=<n>
// answers the requests kept from the n-th on, as JSON.
type Recorder struct {
	mu   sync.Mutex
	hits []Hit
}

func (rc *Recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/_received" {
		from, _ := strconv.Atoi(r.URL.Query().Get("from"))
		rc.mu.Lock()
		b, err := json.Marshal(rc.hits[min(max(from, 0), len(rc.hits)):])
		rc.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
		return
	}
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.hits = append(rc.hits, Hit{At: time.Now(), Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header, Body: string(b)})
	rc.mu.Unlock()
	if rest, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
		code, _, _ := strings.Cut(rest, "/")
		if c, err := strconv.Atoi(code); err == nil && c >= 200 && c <= 599 {
			w.WriteHeader(c)
		}
	}
}

// Receiver reads back what a Recorder was sent.
type Receiver struct {
	URL string // the Recorder as Kurier reaches it, for subscriptions
	API string // the Recorder as the test reaches it

	mu   sync.Mutex
	hits []Hit
}

// Hits fetches what arrived since the last call and answers everything
// received so far.
func (r *Receiver) Hits(t testing.TB) []Hit {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	resp, err := http.Get(fmt.Sprintf("%s/_received?from=%d", r.API, len(r.hits)))
	if err != nil {
		t.Fatalf("receiver: %v", err)
	}
	defer resp.Body.Close()
	var more []Hit
	if err := json.NewDecoder(resp.Body).Decode(&more); err != nil {
		t.Fatalf("receiver: %v", err)
	}
	r.hits = append(r.hits, more...)
	return slices.Clone(r.hits)
}

// Under answers the hits whose path begins with prefix.
func (r *Receiver) Under(t testing.TB, prefix string) []Hit {
	t.Helper()
	var out []Hit
	for _, h := range r.Hits(t) {
		if strings.HasPrefix(h.Path, prefix) {
			out = append(out, h)
		}
	}
	return out
}

// WaitUnder waits until at least n hits under prefix have arrived and
// answers them all.
func (r *Receiver) WaitUnder(t testing.TB, within time.Duration, prefix string, n int) []Hit {
	t.Helper()
	var got []Hit
	natstest.WaitForErr(t, within, fmt.Sprintf("%d requests under %s", n, prefix), func() error {
		if got = r.Under(t, prefix); len(got) < n {
			return fmt.Errorf("%d arrived", len(got))
		}
		return nil
	})
	return got
}
