package dispatcher

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/testevent"
	"kurier.dev/services/natstest"
)

// TestTestEvents: a test event goes through each kind of subscription's
// real path (signed, in its format, within its timeout), active or not,
// and the answer is the receiver's, whatever it is; it leaves no state, no
// retry and a log record marked "test".
func TestTestEvents(t *testing.T) {
	conn, store, _, _, svcs := setup(t, 1)
	// Its partitions are taken after it listens for tests.
	natstest.WaitFor(t, 10*time.Second, "the dispatcher running", func() bool { return owned(svcs[0]) > 0 })
	ctx := context.Background()
	type got struct {
		method string
		header http.Header
		body   []byte
	}
	var mu sync.Mutex
	last := map[string]got{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		kind, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		mu.Lock()
		last[kind] = got{r.Method, r.Header.Clone(), b}
		mu.Unlock()
		switch kind {
		case "fail":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "broken")
		case "hang":
			<-r.Context().Done() // until the dispatcher gives up
		default:
			_, _ = io.WriteString(w, "thanks from "+kind)
		}
	}))
	t.Cleanup(srv.Close)
	sub := func(kind string, adjust ...func(*subs.Subscription)) subs.Subscription {
		id := payloadSub(t, store, srv.URL+"/"+kind, "doc.changed", 1, adjust...)
		s, err := store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ask := func(s subs.Subscription) testevent.Reply {
		t.Helper()
		r, err := testevent.Ask(ctx, conn.NC, s, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Switched off: a test is how a fix is checked before switching on.
	ok := sub("ok", func(s *subs.Subscription) { s.Active, s.DisabledReason = false, "the receiver answered 410 Gone" })
	r := ask(ok)
	mu.Lock()
	req := last["ok"]
	mu.Unlock()
	if r.Status != http.StatusOK || r.Method != http.MethodPost || r.Response != "thanks from ok" || r.Error != "" || r.EventID == "" || r.LatencyMS <= 0 {
		t.Errorf("payload test answered %+v", r)
	}
	wh, err := standardwebhooks.NewWebhook(ok.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(req.body, req.header); err != nil {
		t.Errorf("test event's signature: %v", err)
	}
	okID := r.EventID
	var ev struct{ ID, Type string }
	if err := json.Unmarshal(req.body, &ev); err != nil || ev.Type != testevent.Type || ev.ID != r.EventID {
		t.Errorf("test event body %s, answered id %s", req.body, r.EventID)
	}

	daily := sub("daily", func(s *subs.Subscription) { s.DailyAt, s.TimeZone = "08:00", "UTC" })
	if r := ask(daily); r.Status != http.StatusOK {
		t.Errorf("daily test answered %+v", r)
	}
	mu.Lock()
	req = last["daily"]
	mu.Unlock()
	var digest []struct{ Type string }
	if err := json.Unmarshal(req.body, &digest); err != nil || len(digest) != 1 || digest[0].Type != testevent.Type {
		t.Errorf("a daily subscription's test is not a digest of one event: %s", req.body)
	}

	// A failing receiver's answer is the answer; nothing follows it.
	fail := sub("fail", func(s *subs.Subscription) { s.RetrySchedule = []time.Duration{0} })
	if r := ask(fail); r.Status != http.StatusInternalServerError || r.Response != "broken" || r.Error != "" {
		t.Errorf("failing receiver's test answered %+v", r)
	}
	if st, err := store.State(ctx, fail.ID); err != nil || !st.FailingSince.IsZero() {
		t.Errorf("a failed test started a failing streak: %+v, %v", st, err)
	}
	if left, err := tasksLeft(ctx, conn); err != nil || left != 0 {
		t.Errorf("a failed test left %d tasks (%v)", left, err)
	}

	hang := sub("hang", func(s *subs.Subscription) { s.Timeout = time.Second })
	began := time.Now()
	r = ask(hang)
	if took := time.Since(began); r.Error != "timeout" || r.Status != 0 || took < time.Second || took > 3*time.Second {
		t.Errorf("hanging receiver's test answered %+v after %v", r, took)
	}

	ping := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "p", EventTypes: []string{"doc.changed"}, Mode: subs.ModePing,
		URL: srv.URL + "/ping", Active: true, Secret: subs.NewSecret(), Created: time.Now()}
	if err := store.Create(ctx, ping); err != nil {
		t.Fatal(err)
	}
	if r := ask(ping); r.Status != http.StatusOK || r.Method != http.MethodGet || r.Response != "thanks from ping" {
		t.Errorf("ping test answered %+v", r)
	}
	mu.Lock()
	req = last["ping"]
	mu.Unlock()
	pwh, _ := standardwebhooks.NewWebhook(ping.Secret)
	if err := pwh.Verify(req.body, req.header); err != nil {
		t.Errorf("test ping's signature: %v", err)
	}
	if st, err := store.State(ctx, ping.ID); err != nil || st.Unacked != 0 || !st.Last.IsZero() {
		t.Errorf("a test ping changed the ping state: %+v, %v", st, err)
	}

	queue := subs.Subscription{ID: subs.NewID(), Org: "acme", Mode: subs.ModeQueue}
	if r := ask(queue); r.Refused == "" || r.Status != 0 {
		t.Errorf("queue subscription's test answered %+v", r)
	}

	recs := waitLog(t, conn, ok.ID, func(r []dlog.Record) bool { return len(r) == 1 })
	if rec := recs[0]; rec.Outcome != "test" || rec.Status != http.StatusOK || rec.EventID != okID || len(rec.EventTypes) != 1 || rec.EventTypes[0] != testevent.Type {
		t.Errorf("test logged as %+v", rec)
	}
}
