package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// replicas listens on the same port of 127.0.0.1 and 127.0.0.2, as
// replicas of one service listen on one port of different addresses.
func replicas(t *testing.T, serve func(lis net.Listener)) (port string) {
	t.Helper()
	for range 20 {
		a, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ = net.SplitHostPort(a.Addr().String())
		b, err := net.Listen("tcp", "127.0.0.2:"+port)
		if err != nil {
			a.Close()
			continue // taken on the second address: pick another port
		}
		go serve(a)
		go serve(b)
		return port
	}
	t.Fatal("no port free on both loopback addresses")
	return ""
}

// names resolves every host name to both loopback addresses.
func names(context.Context, string) ([]string, error) {
	return []string{"127.0.0.1", "127.0.0.2"}, nil
}

func newGateway(t *testing.T, cfg Config) *Gateway {
	t.Helper()
	cfg.DialTimeout, cfg.ResolveEvery = time.Second, time.Minute
	g, err := New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	g.resolver.lookupHost = names
	return g
}

// echo answers which replica and which path a request reached, and the
// body it carried.
func echo(lis net.Listener) {
	_ = http.Serve(lis, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		host, _, _ := net.SplitHostPort(lis.Addr().String())
		fmt.Fprintf(w, "%s %s %s %s %s", host, r.Host, r.Method, r.URL.RequestURI(), b)
	}))
}

func TestRoutesAndBalance(t *testing.T) {
	ingest := replicas(t, echo)
	queue := replicas(t, echo)
	console := replicas(t, echo)
	g := newGateway(t, Config{Ingest: "http://ingest:" + ingest, Queue: "http://queue:" + queue, Console: "http://console:" + console})
	mux := http.NewServeMux()
	if err := g.Routes(mux); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	seen := map[string]int{}
	for i := range 6 {
		resp, err := http.Post(srv.URL+"/v1/events?x=1", "application/json", strings.NewReader(fmt.Sprint("body-", i)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		f := strings.Fields(string(b))
		if resp.StatusCode != 200 || len(f) != 5 || f[1] != "ingest:"+ingest || f[2] != "POST" || f[3] != "/v1/events?x=1" || f[4] != fmt.Sprint("body-", i) {
			t.Fatalf("ingest answer %d %q", resp.StatusCode, b)
		}
		seen[f[0]]++
	}
	if seen["127.0.0.1"] != 3 || seen["127.0.0.2"] != 3 {
		t.Fatalf("requests per replica: %v", seen)
	}
	for _, path := range []string{"/api/queues", "/api/queues/q1/messages"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "queue:"+queue+" GET "+path) {
			t.Fatalf("%s reached %q", path, b)
		}
	}
	for _, path := range []string{"/console", "/console/login", "/console/orgs/acme/deliveries?outcome=dead"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "console:"+console+" GET "+path) {
			t.Fatalf("%s reached %q", path, b)
		}
	}
	// No address-book service configured: its paths are not routed.
	if _, pattern := mux.Handler(httptest.NewRequest(http.MethodPost, "/rest/addressbook/sync", nil)); pattern != "" {
		t.Fatalf("addressbook routed by %q", pattern)
	}
}

func TestReplicaDown(t *testing.T) {
	// One replica answers, the other address refuses connections.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go echo(lis)
	t.Cleanup(func() { lis.Close() })
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	g := newGateway(t, Config{Ingest: "http://ingest:" + port})
	mux := http.NewServeMux()
	if err := g.Routes(mux); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for i := range 4 {
		resp, err := http.Post(srv.URL+"/v1/events", "application/json", strings.NewReader(fmt.Sprint("body-", i)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "127.0.0.1 ") || !strings.HasSuffix(string(b), fmt.Sprint(" body-", i)) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}

	// None: a 502 in the API's error form.
	lis.Close()
	none := newGateway(t, Config{Ingest: "http://ingest:" + port})
	mux = http.NewServeMux()
	if err := none.Routes(mux); err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL+"/v1/events", "application/json", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(b), `"code":"unavailable"`) {
		t.Fatalf("no replica: %d %s", resp.StatusCode, b)
	}
}

func TestGRPC(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("kurier.admin.v1.AdminService", healthpb.HealthCheckResponse_SERVING)
	port := replicas(t, func(lis net.Listener) {
		s := grpc.NewServer()
		healthpb.RegisterHealthServer(s, hs)
		t.Cleanup(s.Stop)
		_ = s.Serve(lis)
	})
	g := newGateway(t, Config{Admin: "admin:" + port})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g.GRPC(), Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 4 { // both replicas
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "kurier.admin.v1.AdminService"})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("check: %v %v", resp, err)
		}
	}
	// A status without a message (trailers only) passes through as it is.
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: %v", err)
	}
	// A server stream sends its messages as they come.
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "kurier.admin.v1.AdminService"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", m, err)
	}
	hs.SetServingStatus("kurier.admin.v1.AdminService", healthpb.HealthCheckResponse_NOT_SERVING)
	if m, err := w.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch after a change: %v %v", m, err)
	}
}

func TestGRPCUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	lis.Close() // nothing listens on the admin port
	g := newGateway(t, Config{Admin: "admin:" + port})
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g.GRPC(), Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(front)
	t.Cleanup(func() { srv.Close() })
	cc, err := grpc.NewClient(front.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	_, err = healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("no admin replica: %v", err)
	}
}
