package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestEventStreamThroughGateway: the console's live tail passes the
// gateway event by event, and ends upstream when its client goes away.
func TestEventStreamThroughGateway(t *testing.T) {
	ended := make(chan struct{}, 2)
	port := replicas(t, func(lis net.Listener) {
		_ = http.Serve(lis, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			ended <- struct{}{}
		}))
	})
	g := newGateway(t, Config{Console: "http://console:" + port})
	mux := http.NewServeMux()
	if err := g.Routes(mux); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/console/orgs/acme/deliveries/tail")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if strings.TrimSpace(line) != "data: first" {
			t.Fatalf("first line %q", line)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the event was held back by the gateway")
	}
	resp.Body.Close()
	select {
	case <-ended:
	case <-time.After(3 * time.Second):
		t.Fatal("the upstream stream outlived its client by 3 s")
	}
}
