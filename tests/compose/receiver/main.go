// Command receiver is the webhook receiver of the compose end-to-end test.
// It runs in a container of its own on the deployment's network, where
// dispatchers reach it by name, answers every request 200 and keeps it;
// the test, outside that network, reads what arrived from
// GET /_received?from=<n> on the published port.
package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Hit is one request received.
type Hit struct {
	At     time.Time   `json:"at"`
	Method string      `json:"method"`
	Path   string      `json:"path"` // with the query
	Header http.Header `json:"header"`
	Body   string      `json:"body"`
}

func main() {
	var mu sync.Mutex
	var hits []Hit
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_received", func(w http.ResponseWriter, r *http.Request) {
		from, _ := strconv.Atoi(r.URL.Query().Get("from"))
		mu.Lock()
		page := hits[min(max(from, 0), len(hits)):]
		b, err := json.Marshal(page)
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := Hit{At: time.Now(), Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header, Body: string(b)}
		mu.Lock()
		hits = append(hits, h)
		mu.Unlock()
	})
	log.Fatal(http.ListenAndServe(":8080", mux))
}
