package queue

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/contract"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
	"kurier.dev/services/natstest"
)

// keys are the secrets of the test keys: partner keys of two orgs.
type keys struct{ acme, other string }

func makeKeys(t *testing.T, conn *jet.Conn) keys {
	t.Helper()
	ctx := context.Background()
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	key := func(org string) string {
		id, secret := tenant.NewSecret()
		if err := tenants.CreateKey(ctx, tenant.Key{ID: id, Org: org, Scopes: []tenant.Scope{tenant.ScopePartner}, Hash: tenant.HashSecret(secret)}); err != nil {
			t.Fatal(err)
		}
		return secret
	}
	return keys{acme: key("acme"), other: key("other")}
}

// serve runs a queue service on conn behind a real listener, stopped when
// the test ends, and answers its base URL.
func serve(t *testing.T, conn *jet.Conn, cfg Config) string {
	t.Helper()
	url, _ := serveSvc(t, conn, cfg)
	return url
}

// serveSvc is serve, answering the service too.
func serveSvc(t *testing.T, conn *jet.Conn, cfg Config) (string, *Service) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(web.RequestIDs(mux, natstest.Log)) // as web.Serve serves it
	t.Cleanup(srv.Close)
	cfg.PublicURL = srv.URL
	svc, err := New(context.Background(), cfg, conn, natstest.Log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	svc.Routes(mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.URL, svc
}

func start(t *testing.T, cfg Config) (string, keys) {
	t.Helper()
	conn := natstest.Start(t, bus.DefaultLimits())
	return serve(t, conn, cfg), makeKeys(t, conn)
}

// The API's contract is contract.QueueAPI's; the tests here need settings,
// replicas or a stop of their own.

// With a longer limit configured, a peek may wait longer.
func TestMaxTimeoutConfigured(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxTimeout = 90 * time.Second
	base, k := start(t, cfg)
	q := contract.CreateQueue(t, base, k.acme)
	if a := q.Send(t, `{}`); a.Status != http.StatusOK {
		t.Fatalf("post: %d %s", a.Status, a.Body)
	}
	if a, _ := q.Peek(t, "?timeout=90"); a.Status != http.StatusOK {
		t.Fatalf("timeout=90 with a 90s limit: %d %s", a.Status, a.Body)
	}
	if a, _ := q.Peek(t, "?timeout=91"); a.Status != http.StatusBadRequest {
		t.Fatalf("timeout=91 with a 90s limit: %d %s", a.Status, a.Body)
	}
}

// Two replicas of the queue service on a three-node cluster with
// replicated streams: a peek waiting on one answers within milliseconds
// of a post to the other, again and again.
func TestLongPollAcrossReplicas(t *testing.T) {
	l := bus.DefaultLimits()
	l.Replicas = 3
	c := natstest.StartCluster(t, 3)
	connA, connB := c.Connect(t, l), c.Connect(t, l)
	a, b := serve(t, connA, DefaultConfig()), serve(t, connB, DefaultConfig())
	k := makeKeys(t, connA)
	q := contract.CreateQueue(t, a, k.acme)
	// The sender got the URL from replica a; it posts to replica b.
	toB := *q
	toB.Base = b
	var worst time.Duration
	for i := range 5 {
		got := make(chan []contract.QueueMessage, 1)
		go func() {
			_, msgs := q.Peek(t, "?timeout=20")
			got <- msgs
		}()
		time.Sleep(200 * time.Millisecond)
		posted := time.Now()
		if r := toB.Send(t, fmt.Sprintf(`{"i":%d}`, i)); r.Status != http.StatusOK {
			t.Fatalf("post to b: %d %s", r.Status, r.Body)
		}
		select {
		case msgs := <-got:
			worst = max(worst, time.Since(posted))
			if len(msgs) != 1 || string(msgs[0].Content) != fmt.Sprintf(`{"i":%d}`, i) {
				t.Fatalf("round %d: %v", i, msgs)
			}
			if r := toB.DeleteMessage(t, msgs[0].MessageID); r.Status != http.StatusOK {
				t.Fatalf("delete through b: %d %s", r.Status, r.Body)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: the peek on a did not answer", i)
		}
	}
	if worst > time.Second {
		t.Fatalf("slowest wake-up across replicas: %v", worst)
	}
	t.Logf("slowest wake-up across replicas: %v", worst)
}

// A stopping service answers its waiting peeks at once rather than
// holding the stop open.
func TestStopAnswersWaitingPeeks(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	k := makeKeys(t, conn)
	cfg := DefaultConfig()
	mux := http.NewServeMux()
	srv := httptest.NewServer(web.RequestIDs(mux, natstest.Log)) // as web.Serve serves it
	t.Cleanup(srv.Close)
	cfg.PublicURL = srv.URL
	svc, err := New(context.Background(), cfg, conn, natstest.Log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	svc.Routes(mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	q := contract.CreateQueue(t, srv.URL, k.acme)
	got := make(chan contract.Answer, 1)
	go func() {
		a, _ := q.Peek(t, "?timeout=30")
		got <- a
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	select {
	case a := <-got:
		if e, ok := a.ErrorForm(); a.Status != http.StatusServiceUnavailable || !ok || e.Code != "unavailable" || a.Header.Get("Retry-After") == "" {
			t.Fatalf("waiting peek at stop: %d %s", a.Status, a.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting peek was not answered at stop")
	}
}

// A full queue refuses posts with 429 until messages are deleted; an org
// may have only so many queues.
func TestLimits(t *testing.T) {
	l := bus.DefaultLimits()
	l.QueueMaxMsgs = 3
	conn := natstest.Start(t, l)
	cfg := DefaultConfig()
	cfg.MaxPerOrg = 2
	base, k := serve(t, conn, cfg), makeKeys(t, conn)
	q := contract.CreateQueue(t, base, k.acme)
	for i := range 3 {
		if a := q.Send(t, `{}`); a.Status != http.StatusOK {
			t.Fatalf("post %d: %d %s", i, a.Status, a.Body)
		}
	}
	a := q.Send(t, `{}`)
	if e, ok := a.ErrorForm(); a.Status != http.StatusTooManyRequests || !ok || e.Code != "queue_full" {
		t.Fatalf("post to a full queue: %d %s", a.Status, a.Body)
	}
	msgs := q.Messages(t, "")
	if a := q.DeleteMessage(t, msgs[0].MessageID); a.Status != http.StatusOK {
		t.Fatalf("delete: %d %s", a.Status, a.Body)
	}
	if a := q.Send(t, `{}`); a.Status != http.StatusOK {
		t.Fatalf("post after a delete: %d %s", a.Status, a.Body)
	}

	second := contract.CreateQueue(t, base, k.acme)
	a = contract.Do(t, contract.Request{Method: http.MethodPost, URL: base + "/api/queues", Header: map[string]string{PartnerKeyHeader: k.acme}})
	if e, ok := a.ErrorForm(); a.Status != http.StatusTooManyRequests || !ok || e.Code != "too_many_queues" {
		t.Fatalf("third queue: %d %s", a.Status, a.Body)
	}
	contract.CreateQueue(t, base, k.other) // another org's count is its own
	if a := second.Delete(t); a.Status != http.StatusOK {
		t.Fatalf("delete queue: %d %s", a.Status, a.Body)
	}
	contract.CreateQueue(t, base, k.acme)
}
