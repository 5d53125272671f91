package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/telemetry"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/natstest"
)

// start runs the ingest service on a real listener and answers its URL, the
// service and an ingest key.
func start(t *testing.T, cfg Config) (string, *Service, *jet.Conn, string) {
	t.Helper()
	conn := natstest.Start(t, bus.DefaultLimits())
	secret := newOrg(t, conn, "acme")
	url, svc := serve(t, conn, cfg)
	return url, svc, conn, secret
}

// newOrg stores an org with an ingest key and answers the key's secret.
func newOrg(t *testing.T, conn *jet.Conn, org string) string {
	t.Helper()
	ctx := context.Background()
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	if err := tenants.CreateOrg(ctx, tenant.Org{ID: org}); err != nil {
		t.Fatal(err)
	}
	id, secret := tenant.NewSecret()
	if err := tenants.CreateKey(ctx, tenant.Key{ID: id, Org: org, Scopes: []tenant.Scope{tenant.ScopeIngest}, Hash: tenant.HashSecret(secret)}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// serve runs an ingest service on conn on a real listener and answers its
// URL and the service.
func serve(t *testing.T, conn *jet.Conn, cfg Config) (string, *Service) {
	t.Helper()
	svc, err := New(context.Background(), cfg, conn, natstest.Log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, svc
}

// run runs svc's NATS side until the test ends, failing it if Run fails.
func run(t *testing.T, svc *Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// request sends body over NATS with the key secret until an answer comes
// (the service's subscription may not be live yet), and answers it.
func request(t *testing.T, conn *jet.Conn, secret, body string) *nats.Msg {
	t.Helper()
	var resp *nats.Msg
	natstest.WaitForErr(t, 5*time.Second, "an answer", func() (err error) {
		resp, err = conn.NC.RequestMsg(newRequest(secret, body), time.Second)
		return err
	})
	return resp
}

const oneEvent = `{"specversion":"1.0","id":"e1","source":"/s","type":"invoice.changed","subject":"I-1"}`

func postOne(t *testing.T, url, secret string) (int, string, map[string]map[string]any) {
	t.Helper()
	status, h, b := post(t, url, secret, map[string]string{"Content-Type": event.MediaStructured}, oneEvent)
	var body map[string]map[string]any
	_ = json.Unmarshal(b, &body)
	return status, h.Get("Retry-After"), body
}

// post sends body to the ingest API with the headers given and answers
// the status, headers and body of the answer.
func post(t *testing.T, url, secret string, h map[string]string, body string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// With every in-flight byte taken, a request is turned away with 503 and
// Retry-After instead of holding more memory, and stores nothing.
func TestOverloadAnswers503(t *testing.T) {
	url, svc, conn, secret := start(t, DefaultConfig())
	if !svc.inflight.TryAcquire(svc.cfg.MaxInflight) {
		t.Fatal("in-flight budget not free at start")
	}
	status, retry, body := postOne(t, url, secret)
	if status != http.StatusServiceUnavailable || retry != "1" || body["error"]["code"] != "overloaded" {
		t.Fatalf("got %d Retry-After %q %v", status, retry, body)
	}
	svc.inflight.Release(svc.cfg.MaxInflight)
	info, err := conn.JS.Stream(context.Background(), bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("%d events stored by a refused request", n)
	}
	if status, _, _ := postOne(t, url, secret); status != http.StatusAccepted {
		t.Fatalf("after the load is gone: %d", status)
	}
}

// When the stream does not answer, the sender is told to retry later.
func TestStoreUnavailableAnswers503(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PublishTimeout = time.Second
	url, _, conn, secret := start(t, cfg)
	if err := conn.JS.DeleteStream(context.Background(), bus.StreamEvents); err != nil {
		t.Fatal(err)
	}
	status, retry, body := postOne(t, url, secret)
	if status != http.StatusServiceUnavailable || retry == "" || body["error"]["code"] != "unavailable" {
		t.Fatalf("got %d Retry-After %q %v", status, retry, body)
	}
	if msg, _ := body["error"]["message"].(string); strings.Contains(msg, "no responders") {
		t.Fatalf("internal detail leaked: %q", msg)
	}
}

// A NATS request taken before shutdown is still answered.
func TestRunAnswersUntilStopped(t *testing.T) {
	_, svc, conn, secret := start(t, DefaultConfig())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	// Wait until the subscription is live.
	resp := request(t, conn, secret, oneEvent)
	if st := resp.Header.Get(StatusHeader); st != "202" {
		t.Fatalf("status %s: %s", st, resp.Data)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := conn.NC.RequestMsg(newRequest(secret, oneEvent), 200*time.Millisecond); err == nil {
		t.Fatal("answered after Run returned")
	}
}

func newRequest(secret, body string) *nats.Msg {
	m := nats.NewMsg(bus.IngestSubject("acme"))
	m.Header.Set(KeyHeader, secret)
	m.Data = []byte(body)
	return m
}

// A request that meets the death of the events stream's leader is
// answered once a new leader has the event, not failed after the whole
// publish timeout: the publication is sent again under its message id.
func TestStoreOutlivesStreamLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	ctx := context.Background()
	limits := bus.DefaultLimits()
	limits.Replicas = 3
	cluster := natstest.StartCluster(t, 3)
	conn := cluster.Connect(t, limits)
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	if err := tenants.CreateOrg(ctx, tenant.Org{ID: "acme"}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.PublishTimeout = 6 * time.Second
	svc, err := New(ctx, cfg, conn, natstest.Log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var events []event.Event
	for i := range 2000 {
		events = append(events, event.Event{ID: fmt.Sprint("e", i), Source: "/s", Type: "invoice.changed", Subject: "I-1"})
	}
	leader := cluster.StreamLeader(t, bus.StreamEvents)
	go func() {
		time.Sleep(10 * time.Millisecond) // while the events are on their way
		cluster.Kill(leader)
	}()
	res, err := svc.store(ctx, "acme", events, false)
	if err != nil {
		t.Fatalf("store across a leader loss: %v", err)
	}
	if len(res.Accepted)+len(res.Duplicates) != len(events) {
		t.Fatalf("%d accepted, %d duplicates of %d", len(res.Accepted), len(res.Duplicates), len(events))
	}
	info, err := conn.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != uint64(len(events)) {
		t.Fatalf("%d events stored, want %d", n, len(events))
	}
}

// stall opens a connection to url, sends a request's headers and the
// first bytes of a body of size bytes, and sends nothing more until the
// test ends.
func stall(t *testing.T, url, head string, size int) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "%sContent-Length: %d\r\n\r\n[{", head, size); err != nil {
		t.Fatal(err)
	}
}

// TestSlowUploadersStarveNoOne: clients that declare the largest batch
// and then send it slowly hold only the bytes they have sent, not room
// for the whole batch each: more of them than the in-flight budget has
// room for leave a normal request served at once.
func TestSlowUploadersStarveNoOne(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxInflight = 2 * int64(cfg.MaxBatchBytes)
	url, _, _, secret := start(t, cfg)
	for range 4 {
		stall(t, url, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents-batch+json\r\nAuthorization: Bearer "+secret+"\r\n", cfg.MaxBatchBytes)
	}
	time.Sleep(300 * time.Millisecond) // they are reading their bodies
	began := time.Now()
	if status, _, body := postOne(t, url, secret); status != http.StatusAccepted || time.Since(began) > time.Second {
		t.Fatalf("beside slow uploaders: %d %v after %v", status, body, time.Since(began))
	}
}

// Over NATS the subject names the org. A key of another org is answered
// as an unknown key is, whatever its scopes, so the answer does not tell
// that it exists; a key of the org without the scope is still 403.
func TestNATSKeyOfAnotherOrg(t *testing.T) {
	_, svc, conn, _ := start(t, DefaultConfig())
	run(t, svc)
	ctx := context.Background()
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	if err := tenants.CreateOrg(ctx, tenant.Org{ID: "globex"}); err != nil {
		t.Fatal(err)
	}
	key := func(org string, scopes ...tenant.Scope) string {
		id, secret := tenant.NewSecret()
		if err := tenants.CreateKey(ctx, tenant.Key{ID: id, Org: org, Scopes: scopes, Hash: tenant.HashSecret(secret)}); err != nil {
			t.Fatal(err)
		}
		return secret
	}
	// One request id for every ask, so that the answers compare whole.
	ask := func(secret string) string {
		t.Helper()
		var resp *nats.Msg
		natstest.WaitForErr(t, 5*time.Second, "an answer", func() (err error) {
			m := newRequest(secret, oneEvent)
			m.Header.Set(telemetry.RequestIDHeader, "nats-ask-1")
			resp, err = conn.NC.RequestMsg(m, time.Second)
			return err
		})
		if id := resp.Header.Get(telemetry.RequestIDHeader); id != "nats-ask-1" {
			t.Fatalf("the reply's %s: %q", telemetry.RequestIDHeader, id)
		}
		return resp.Header.Get(StatusHeader) + " " + string(resp.Data)
	}
	_, unknown := tenant.NewSecret()
	want := ask(unknown)
	if !strings.HasPrefix(want, `401 {"error":{"code":"unauthenticated"`) || !strings.Contains(want, `"field":"Kurier-Key"`) ||
		!strings.Contains(want, `"request_id":"nats-ask-1"`) {
		t.Fatalf("an unknown key: %s", want)
	}
	for name, secret := range map[string]string{
		"globex's ingest key":            key("globex", tenant.ScopeIngest),
		"globex's key without the scope": key("globex", tenant.ScopeChanges),
	} {
		if got := ask(secret); got != want {
			t.Errorf("%s on acme's subject: %s, want as an unknown key: %s", name, got, want)
		}
	}
	if got := ask(key("acme", tenant.ScopeChanges)); !strings.HasPrefix(got, `403 {"error":{"code":"forbidden"`) {
		t.Errorf("acme's key without the scope: %s", got)
	}
	if got := ask(key("acme", tenant.ScopeIngest)); !strings.HasPrefix(got, "202 ") {
		t.Errorf("acme's ingest key: %s", got)
	}
}
