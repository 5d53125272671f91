package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/natstest"
)

// eventCount answers how many events EVENTS holds.
func eventCount(t *testing.T, svc *Service) uint64 {
	t.Helper()
	info, err := svc.events.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// A batch within the body limit may still hold an event that, stored, is
// larger than a message of the stream may be: extension values and
// dataschema have no length limit of their own. Such a batch is refused as
// too large before any of its events is stored, naming the event, rather
// than storing the events before it and answering 503, which a sender
// would retry for ever.
func TestBatchWithEventTooLargeToStoreStoresNone(t *testing.T) {
	url, svc, _, secret := start(t, DefaultConfig())
	ev := func(id, extra string) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"/s","type":"invoice.changed","subject":"I-1"` + extra + `}`
	}
	huge := strings.Repeat("x", 1<<20)
	for name, bad := range map[string]string{
		"extension":  ev("e3", `,"big":"`+huge+`"`),
		"dataschema": ev("e3", `,"dataschema":"https://example.com/`+huge+`"`),
	} {
		t.Run(name, func(t *testing.T) {
			before := eventCount(t, svc)
			batch := "[" + ev(name+"-1", "") + "," + ev(name+"-2", "") + "," + bad + "]"
			status, h, b := post(t, url, secret, map[string]string{"Content-Type": event.MediaBatch}, batch)
			var body struct {
				Error struct {
					Code  string `json:"code"`
					Field string `json:"field"`
					Index *int   `json:"index"`
				} `json:"error"`
			}
			_ = json.Unmarshal(b, &body)
			if n := eventCount(t, svc) - before; n != 0 {
				t.Errorf("%d events of the refused batch stored (answer %d %s)", n, status, b)
			}
			if status != http.StatusRequestEntityTooLarge || body.Error.Code != "too_large" || body.Error.Index == nil || *body.Error.Index != 2 ||
				!strings.HasPrefix(body.Error.Field, "[2].") {
				t.Errorf("answer %d (Retry-After %q) %.300s, want 413 too_large naming event 2", status, h.Get("Retry-After"), b)
			}
		})
	}
}

// One event id used by two orgs, and by two sources of one org, is a
// separate event each time; a retry of the same request stores nothing
// again.
func TestEventIdentityPerOrgAndSource(t *testing.T) {
	url, svc, conn, acme := start(t, DefaultConfig())
	globex := newOrg(t, conn, "globex")
	ev := func(source string) string {
		return `{"specversion":"1.0","id":"same","source":"` + source + `","type":"invoice.changed","subject":"I-1"}`
	}
	send := func(secret, body string) string {
		t.Helper()
		status, _, b := post(t, url, secret, map[string]string{"Content-Type": event.MediaStructured}, body)
		return fmt.Sprintf("%d %s", status, strings.TrimSpace(string(b)))
	}
	accepted, dup := `202 {"accepted":["same"],"duplicates":[]}`, `202 {"accepted":[],"duplicates":["same"]}`
	for _, c := range []struct{ name, secret, body, want string }{
		{"acme /a", acme, ev("/a"), accepted},
		{"globex /a", globex, ev("/a"), accepted},
		{"acme /b", acme, ev("/b"), accepted},
		{"acme /a again", acme, ev("/a"), dup},
		{"globex /a again", globex, ev("/a"), dup},
	} {
		if got := send(c.secret, c.body); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	if n := eventCount(t, svc); n != 3 {
		t.Errorf("%d events stored, want 3", n)
	}
	for _, org := range []string{"acme", "globex"} {
		m, err := svc.events.GetLastMsgForSubject(context.Background(), bus.EventsSubject(org, "invoice.changed"))
		if err != nil || !strings.HasPrefix(m.Header.Get("Nats-Msg-Id"), org+":") {
			t.Errorf("%s's event: %v %v", org, m, err)
		}
	}
}

// Publications that a stream leader took with it when it died are never
// answered. The store sends them again under their ids and answers, but
// the publications it gave up on must not stay pending: each holds its
// message and one place of the connection's bounded budget of pending
// publications, and once a few leader losses had filled it every request
// would be refused 503 overloaded until the process restarted. The
// service is connected to a server that survives, as two of three
// replicas are in a three-node cluster.
func TestStoreGivesUpPublicationsLostWithLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	ctx := context.Background()
	limits := bus.DefaultLimits()
	limits.Replicas = 3
	cluster := natstest.StartCluster(t, 3)
	cluster.Connect(t, limits)
	leader := cluster.StreamLeader(t, bus.StreamEvents)
	conn, err := jet.Connect(cluster.Servers[(leader+1)%3].ClientURL(), "test", natstest.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.NC.Close)
	svc, err := New(ctx, DefaultConfig(), conn, natstest.Log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var events []event.Event
	for i := range 2000 {
		events = append(events, event.Event{ID: fmt.Sprint("e", i), Source: "/s", Type: "invoice.changed", Subject: "I-1"})
	}
	go func() {
		time.Sleep(10 * time.Millisecond) // while the events are on their way
		cluster.Kill(leader)
	}()
	res, err := svc.store(ctx, "acme", events, false)
	if err != nil || len(res.Accepted)+len(res.Duplicates) != len(events) {
		t.Fatalf("store across a leader loss: %d accepted, %d duplicates, %v", len(res.Accepted), len(res.Duplicates), err)
	}
	if !conn.NC.IsConnected() || conn.NC.ConnectedUrl() != cluster.Servers[(leader+1)%3].ClientURL() {
		t.Fatalf("the service's connection moved to %q: the test needs it on a server that survives", conn.NC.ConnectedUrl())
	}
	var pending int
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if pending = svc.conn.JS.PublishAsyncPending(); pending == 0 {
			return
		}
	}
	t.Fatalf("%d publications still pending 10s after the store answered", pending)
}

// Readers of one system's feed at once, without cursors, are never given
// the same change, between them miss none, and none is refused for
// reading at the same time as another.
func TestFeedReadersAtOnceShareNothing(t *testing.T) {
	ctx := context.Background()
	url, _, conn, ingestKey := start(t, DefaultConfig())
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	id, feedKey := tenant.NewSecret()
	if err := tenants.CreateKey(ctx, tenant.Key{ID: id, Org: "acme", Scopes: []tenant.Scope{tenant.ScopeChanges}, Hash: tenant.HashSecret(feedKey)}); err != nil {
		t.Fatal(err)
	}
	const n, readers = 500, 3
	var batch []string
	for i := range n {
		batch = append(batch, fmt.Sprintf(`{"specversion":"1.0","id":"e%d","source":"/s","type":"invoice.changed","subject":"I-%d"}`, i, i))
	}
	if status, _, b := post(t, url, ingestKey, map[string]string{"Content-Type": event.MediaBatch}, "["+strings.Join(batch, ",")+"]"); status != http.StatusAccepted {
		t.Fatalf("post: %d %s", status, b)
	}
	read := func() (Changes, int) {
		req, _ := http.NewRequest(http.MethodGet, url+"/v1/changes?system=shop&type=invoice.changed&limit=7", nil)
		req.Header.Set("Authorization", "Bearer "+feedKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return Changes{}, 0
		}
		defer resp.Body.Close()
		var c Changes
		_ = json.NewDecoder(resp.Body).Decode(&c)
		return c, resp.StatusCode
	}
	seen := make(chan string, readers*n)
	done := make(chan struct{})
	for range readers {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				c, status := read()
				if status != http.StatusOK {
					t.Errorf("feed read: %d", status)
					return
				}
				for _, ch := range c.Changes {
					seen <- ch.ID
				}
				if len(c.Changes) == 0 && !c.More {
					return
				}
			}
		}()
	}
	for range readers {
		<-done
	}
	close(seen)
	got := map[string]int{}
	for id := range seen {
		got[id]++
	}
	for i := range n {
		if id := fmt.Sprint("e", i); got[id] != 1 {
			t.Errorf("%s given %d times", id, got[id])
		}
	}
}
