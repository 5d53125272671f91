package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/natstest"
)

// keys are the secrets of the test keys: partner keys of two orgs and an
// ingest key without the partner scope.
type keys struct{ acme, other, ingestOnly string }

func makeKeys(t *testing.T, conn *jet.Conn) keys {
	t.Helper()
	ctx := context.Background()
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	key := func(org string, scope tenant.Scope) string {
		id, secret := tenant.NewSecret()
		if err := tenants.CreateKey(ctx, tenant.Key{ID: id, Org: org, Scopes: []tenant.Scope{scope}, Hash: tenant.HashSecret(secret)}); err != nil {
			t.Fatal(err)
		}
		return secret
	}
	return keys{acme: key("acme", tenant.ScopePartner), other: key("other", tenant.ScopePartner), ingestOnly: key("acme", tenant.ScopeIngest)}
}

// serve runs a queue service on conn behind a real listener, stopped when
// the test ends, and answers its base URL.
func serve(t *testing.T, conn *jet.Conn, cfg Config) string {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
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
	return srv.URL
}

func start(t *testing.T, cfg Config) (string, keys, *jet.Conn) {
	t.Helper()
	conn := natstest.Start(t, bus.DefaultLimits())
	return serve(t, conn, cfg), makeKeys(t, conn), conn
}

// answer is a response with its body read.
type answer struct {
	status int
	body   []byte
	header http.Header
}

func (a answer) errField() (code, field string) {
	var e struct {
		Error struct{ Code, Field string } `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Error.Code, e.Error.Field
}

func do(t *testing.T, method, url string, header map[string]string, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: b, header: resp.Header}
}

func partner(key string) map[string]string { return map[string]string{PartnerKeyHeader: key} }

type createdQueue struct {
	QueueID            string `json:"queueId"`
	NotificationURL    string `json:"notificationURL"`
	NotificationSecret string `json:"notificationSecret"`
}

func createQueue(t *testing.T, base, key string) createdQueue {
	t.Helper()
	a := do(t, http.MethodPost, base+"/api/queues", partner(key), "")
	var q createdQueue
	if a.status != http.StatusOK || json.Unmarshal(a.body, &q) != nil {
		t.Fatalf("create queue: %d %s", a.status, a.body)
	}
	return q
}

func post(t *testing.T, q createdQueue, body string) answer {
	t.Helper()
	return do(t, http.MethodPost, q.NotificationURL, map[string]string{SecretHeader: q.NotificationSecret}, body)
}

type peeked struct {
	MessageID string          `json:"messageId"`
	Content   json.RawMessage `json:"content"`
}

func peek(t *testing.T, base, key, id, query string) (int, []peeked) {
	t.Helper()
	a := do(t, http.MethodGet, base+"/api/queues/"+id+"/messages"+query, partner(key), "")
	var msgs []peeked
	if a.status == http.StatusOK {
		if err := json.Unmarshal(a.body, &msgs); err != nil || msgs == nil {
			t.Fatalf("peek answer %s: %v", a.body, err)
		}
	}
	return a.status, msgs
}

// A ComNorm receiver's whole round: create, hand URL and secret to a
// sender, peek (oldest first, nothing removed), delete what was processed,
// delete the queue.
func TestQueueRound(t *testing.T) {
	base, k, _ := start(t, DefaultConfig())
	q := createQueue(t, base, k.acme)
	if !queues.ValidID(q.QueueID) || q.NotificationURL != base+"/api/queues/"+q.QueueID+"/messages" || len(q.NotificationSecret) < 43 {
		t.Fatalf("created %+v", q)
	}
	if status, msgs := peek(t, base, k.acme, q.QueueID, ""); status != http.StatusOK || len(msgs) != 0 {
		t.Fatalf("empty queue: %d %v", status, msgs)
	}
	contents := []string{`{"n":1,"text":"<Müller & Söhne>"}`, "{\n  \"n\": 2\n}", `{"n":3,"nested":{"a":[1,2.50,"x"]}}`}
	for _, c := range contents {
		if a := post(t, q, c); a.status != http.StatusOK {
			t.Fatalf("post %s: %d %s", c, a.status, a.body)
		}
	}
	status, one := peek(t, base, k.acme, q.QueueID, "")
	if status != http.StatusOK || len(one) != 1 || string(one[0].Content) != contents[0] {
		t.Fatalf("peek without count: %d %s", status, one)
	}
	_, all := peek(t, base, k.acme, q.QueueID, "?count=100")
	if len(all) != 3 || string(all[1].Content) != `{"n":2}` || string(all[2].Content) != contents[2] || all[0].MessageID != one[0].MessageID {
		t.Fatalf("peek count=100: %s", all)
	}
	if _, again := peek(t, base, k.acme, q.QueueID, "?count=2"); len(again) != 2 || again[0].MessageID != all[0].MessageID {
		t.Fatalf("peeking removed something: %s", again)
	}

	del := func(id string) int {
		return do(t, http.MethodDelete, base+"/api/queues/"+q.QueueID+"/messages/"+id, partner(k.acme), "").status
	}
	if s := del(all[0].MessageID); s != http.StatusOK {
		t.Fatalf("delete message: %d", s)
	}
	if s := del(all[0].MessageID); s != http.StatusNotFound {
		t.Fatalf("delete it again: %d", s)
	}
	for _, bad := range []string{"0", "x", "-1", "99999999", "18446744073709551616"} {
		if s := del(bad); s != http.StatusNotFound {
			t.Fatalf("delete message %q: %d", bad, s)
		}
	}
	if _, rest := peek(t, base, k.acme, q.QueueID, "?count=5"); len(rest) != 2 || rest[0].MessageID != all[1].MessageID || rest[1].MessageID != all[2].MessageID {
		t.Fatalf("after delete: %s", rest)
	}

	if a := do(t, http.MethodDelete, base+"/api/queues/"+q.QueueID, partner(k.acme), ""); a.status != http.StatusOK {
		t.Fatalf("delete queue: %d %s", a.status, a.body)
	}
	if a := post(t, q, `{}`); a.status != http.StatusNotFound {
		t.Fatalf("post to deleted queue: %d", a.status)
	}
	if s, _ := peek(t, base, k.acme, q.QueueID, ""); s != http.StatusNotFound {
		t.Fatalf("peek deleted queue: %d", s)
	}
	if s := del(all[1].MessageID); s != http.StatusNotFound {
		t.Fatalf("delete message of deleted queue: %d", s)
	}
	if a := do(t, http.MethodDelete, base+"/api/queues/"+q.QueueID, partner(k.acme), ""); a.status != http.StatusNotFound {
		t.Fatalf("delete deleted queue: %d", a.status)
	}
}

// Keys reach only their own org's queues; the others' look absent. A
// sender needs the queue's secret and nothing else.
func TestQueueAuth(t *testing.T) {
	base, k, _ := start(t, DefaultConfig())
	q := createQueue(t, base, k.acme)
	theirs := createQueue(t, base, k.other)
	if a := post(t, q, `{"a":1}`); a.status != http.StatusOK {
		t.Fatal(a.status)
	}
	_, msgs := peek(t, base, k.acme, q.QueueID, "")

	for name, h := range map[string]map[string]string{
		"no key":      nil,
		"unknown key": partner("kur_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
		"garbage":     partner("secret"),
	} {
		a := do(t, http.MethodPost, base+"/api/queues", h, "")
		if code, field := a.errField(); a.status != http.StatusUnauthorized || code != "unauthenticated" || field != PartnerKeyHeader {
			t.Errorf("%s: create %d %s", name, a.status, a.body)
		}
		if a := do(t, http.MethodGet, base+"/api/queues/"+q.QueueID+"/messages", h, ""); a.status != http.StatusUnauthorized {
			t.Errorf("%s: peek %d", name, a.status)
		}
	}
	if a := do(t, http.MethodPost, base+"/api/queues", partner(k.ingestOnly), ""); a.status != http.StatusForbidden {
		t.Errorf("ingest key: %d %s", a.status, a.body)
	}

	// The other org's partner key: every call on acme's queue is 404, as
	// for a queue that does not exist, and changes nothing.
	absent := "/api/queues/" + strings.Repeat("ab", 16)
	for _, path := range []string{"/api/queues/" + q.QueueID, absent} {
		for _, c := range []struct{ method, suffix string }{
			{http.MethodGet, "/messages"}, {http.MethodDelete, "/messages/" + msgs[0].MessageID}, {http.MethodDelete, ""},
		} {
			a := do(t, c.method, base+path+c.suffix, partner(k.other), "")
			if code, _ := a.errField(); a.status != http.StatusNotFound || code != "not_found" {
				t.Errorf("other org %s %s%s: %d %s", c.method, path, c.suffix, a.status, a.body)
			}
		}
	}
	if _, still := peek(t, base, k.acme, q.QueueID, ""); len(still) != 1 {
		t.Fatalf("the other org changed acme's queue: %s", still)
	}

	// A message of one queue cannot be deleted through another, even by
	// the same org.
	mine2 := createQueue(t, base, k.acme)
	if a := do(t, http.MethodDelete, base+"/api/queues/"+mine2.QueueID+"/messages/"+msgs[0].MessageID, partner(k.acme), ""); a.status != http.StatusNotFound {
		t.Fatalf("delete across queues: %d", a.status)
	}
	if _, still := peek(t, base, k.acme, q.QueueID, ""); len(still) != 1 {
		t.Fatalf("deleted across queues: %s", still)
	}

	// Posting: the queue's secret, not another queue's, not none.
	for name, h := range map[string]map[string]string{
		"no secret":            nil,
		"wrong secret":         {SecretHeader: "x" + q.NotificationSecret[1:]},
		"other queue's secret": {SecretHeader: theirs.NotificationSecret},
		"partner key only":     partner(k.acme),
	} {
		a := do(t, http.MethodPost, q.NotificationURL, h, `{"a":2}`)
		if code, field := a.errField(); a.status != http.StatusUnauthorized || code != "unauthenticated" || field != SecretHeader {
			t.Errorf("%s: %d %s", name, a.status, a.body)
		}
	}
	if a := do(t, http.MethodPost, base+absent+"/messages", map[string]string{SecretHeader: q.NotificationSecret}, `{}`); a.status != http.StatusNotFound {
		t.Errorf("post to an unknown queue: %d", a.status)
	}
	if _, still := peek(t, base, k.acme, q.QueueID, "?count=10"); len(still) != 1 {
		t.Fatalf("refused posts stored something: %s", still)
	}
}

// The 16384-character rule counts characters, not bytes, and takes only
// JSON objects.
func TestMessageContentRule(t *testing.T) {
	base, k, _ := start(t, DefaultConfig())
	q := createQueue(t, base, k.acme)
	// object makes {"t":"…"} of exactly n characters from fill.
	object := func(n int, fill string) string {
		return `{"t":"` + strings.Repeat(fill, n-len(`{"t":""}`)) + `"}`
	}
	for _, c := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"16384 ASCII", object(16384, "a"), 200, ""},
		{"16385 ASCII", object(16385, "a"), 413, "too_large"},
		{"16384 two-byte (32760 bytes)", object(16384, "ä"), 200, ""},
		{"16385 two-byte", object(16385, "ä"), 413, "too_large"},
		{"16384 with four-byte (65512 bytes)", object(16384, "😀"), 200, ""},
		{"16385 with four-byte", object(16385, "😀"), 413, "too_large"},
		{"16384 with three-byte", object(16384, "€"), 200, ""},
		{"over 65536 bytes", object(20000, "😀"), 413, "too_large"},
		{"array", `[{"a":1}]`, 400, "invalid_message"},
		{"string", `"x"`, 400, "invalid_message"},
		{"number", `42`, 400, "invalid_message"},
		{"null", `null`, 400, "invalid_message"},
		{"true", `true`, 400, "invalid_message"},
		{"not JSON", `{"a":`, 400, "invalid_message"},
		{"two objects", `{}{}`, 400, "invalid_message"},
		{"empty", ``, 400, "invalid_message"},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", 400, "invalid_message"},
		{"empty object", `{}`, 200, ""},
		{"object with white space", " \n{ } \n", 200, ""},
	} {
		a := post(t, q, c.body)
		code, field := a.errField()
		if a.status != c.status || code != c.code || (c.code != "" && field != "body") {
			t.Errorf("%s: %d %s", c.name, a.status, a.body)
		}
	}
	_, msgs := peek(t, base, k.acme, q.QueueID, "?count=100")
	if len(msgs) != 6 {
		t.Fatalf("%d messages stored, want the 6 accepted", len(msgs))
	}
	if string(msgs[1].Content) != object(16384, "ä") {
		t.Fatal("a two-byte message came back changed")
	}
}

func TestPeekParameters(t *testing.T) {
	base, k, _ := start(t, DefaultConfig())
	q := createQueue(t, base, k.acme)
	for i := range 101 {
		if a := post(t, q, fmt.Sprintf(`{"i":%d}`, i)); a.status != http.StatusOK {
			t.Fatal(a.status)
		}
	}
	for _, c := range []struct {
		query  string
		status int
		n      int
		field  string
	}{
		{"", 200, 1, ""},
		{"?count=1", 200, 1, ""},
		{"?count=100", 200, 100, ""},
		{"?count=101", 400, 0, "count"},
		{"?count=0", 400, 0, "count"},
		{"?count=-1", 400, 0, "count"},
		{"?count=1.5", 400, 0, "count"},
		{"?count=", 400, 0, "count"},
		{"?count=x", 400, 0, "count"},
		{"?timeout=0", 200, 1, ""},
		{"?timeout=60&count=3", 200, 3, ""}, // messages are there: no wait
		{"?timeout=61", 400, 0, "timeout"},
		{"?timeout=-1", 400, 0, "timeout"},
		{"?timeout=1.5", 400, 0, "timeout"},
		{"?timeout=x", 400, 0, "timeout"},
	} {
		a := do(t, http.MethodGet, base+"/api/queues/"+q.QueueID+"/messages"+c.query, partner(k.acme), "")
		var msgs []peeked
		_ = json.Unmarshal(a.body, &msgs)
		if _, field := a.errField(); a.status != c.status || len(msgs) != c.n || field != c.field {
			t.Errorf("%q: %d, %d messages, %s", c.query, a.status, len(msgs), a.body)
		}
	}
	var order []string
	_, msgs := peek(t, base, k.acme, q.QueueID, "?count=100")
	for _, m := range msgs {
		order = append(order, string(m.Content))
	}
	for i, c := range order {
		if c != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("not in order at %d: %s", i, c)
		}
	}
}

// With a longer limit configured, a peek may wait longer.
func TestMaxTimeoutConfigured(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxTimeout = 90 * time.Second
	base, k, _ := start(t, cfg)
	q := createQueue(t, base, k.acme)
	post(t, q, `{}`)
	if s, _ := peek(t, base, k.acme, q.QueueID, "?timeout=90"); s != http.StatusOK {
		t.Fatalf("timeout=90 with a 90s limit: %d", s)
	}
	if s, _ := peek(t, base, k.acme, q.QueueID, "?timeout=91"); s != http.StatusBadRequest {
		t.Fatalf("timeout=91 with a 90s limit: %d", s)
	}
}

// An empty queue answers [] at once without timeout, 408 when the timeout
// passes, and a message as soon as it arrives.
func TestPeekWaits(t *testing.T) {
	base, k, _ := start(t, DefaultConfig())
	q := createQueue(t, base, k.acme)
	t0 := time.Now()
	if s, msgs := peek(t, base, k.acme, q.QueueID, "?timeout=0"); s != http.StatusOK || len(msgs) != 0 || time.Since(t0) > time.Second {
		t.Fatalf("timeout=0: %d %v after %v", s, msgs, time.Since(t0))
	}
	t0 = time.Now()
	a := do(t, http.MethodGet, base+"/api/queues/"+q.QueueID+"/messages?timeout=1", partner(k.acme), "")
	if code, _ := a.errField(); a.status != http.StatusRequestTimeout || code != "timeout" || time.Since(t0) < time.Second || time.Since(t0) > 3*time.Second {
		t.Fatalf("timeout=1 on an empty queue: %d %s after %v", a.status, a.body, time.Since(t0))
	}

	got := make(chan time.Time, 1)
	go func() {
		_, msgs := peek(t, base, k.acme, q.QueueID, "?timeout=10&count=5")
		if len(msgs) != 1 || string(msgs[0].Content) != `{"late":true}` {
			t.Errorf("woken peek: %s", msgs)
		}
		got <- time.Now()
	}()
	time.Sleep(300 * time.Millisecond) // the peek is waiting
	posted := time.Now()
	post(t, q, `{"late":true}`)
	select {
	case at := <-got:
		if d := at.Sub(posted); d > time.Second {
			t.Fatalf("the waiting peek answered %v after the post", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting peek did not answer")
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
	q := createQueue(t, a, k.acme)
	// The sender got the URL from replica a; it posts to replica b.
	q.NotificationURL = strings.Replace(q.NotificationURL, a, b, 1)
	var worst time.Duration
	for i := range 5 {
		got := make(chan []peeked, 1)
		go func() {
			_, msgs := peek(t, a, k.acme, q.QueueID, "?timeout=20")
			got <- msgs
		}()
		time.Sleep(200 * time.Millisecond)
		posted := time.Now()
		if r := post(t, q, fmt.Sprintf(`{"i":%d}`, i)); r.status != http.StatusOK {
			t.Fatalf("post to b: %d %s", r.status, r.body)
		}
		select {
		case msgs := <-got:
			worst = max(worst, time.Since(posted))
			if len(msgs) != 1 || string(msgs[0].Content) != fmt.Sprintf(`{"i":%d}`, i) {
				t.Fatalf("round %d: %s", i, msgs)
			}
			if r := do(t, http.MethodDelete, b+"/api/queues/"+q.QueueID+"/messages/"+msgs[0].MessageID, partner(k.acme), ""); r.status != http.StatusOK {
				t.Fatalf("delete through b: %d", r.status)
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
	srv := httptest.NewServer(mux)
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
	q := createQueue(t, srv.URL, k.acme)
	got := make(chan answer, 1)
	go func() {
		got <- do(t, http.MethodGet, srv.URL+"/api/queues/"+q.QueueID+"/messages?timeout=30", partner(k.acme), "")
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	select {
	case a := <-got:
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
			t.Fatalf("waiting peek at stop: %d %s", a.status, a.body)
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
	q := createQueue(t, base, k.acme)
	for i := range 3 {
		if a := post(t, q, `{}`); a.status != http.StatusOK {
			t.Fatalf("post %d: %d", i, a.status)
		}
	}
	a := post(t, q, `{}`)
	if code, _ := a.errField(); a.status != http.StatusTooManyRequests || code != "queue_full" {
		t.Fatalf("post to a full queue: %d %s", a.status, a.body)
	}
	_, msgs := peek(t, base, k.acme, q.QueueID, "")
	do(t, http.MethodDelete, base+"/api/queues/"+q.QueueID+"/messages/"+msgs[0].MessageID, partner(k.acme), "")
	if a := post(t, q, `{}`); a.status != http.StatusOK {
		t.Fatalf("post after a delete: %d", a.status)
	}

	second := createQueue(t, base, k.acme)
	a = do(t, http.MethodPost, base+"/api/queues", partner(k.acme), "")
	if code, _ := a.errField(); a.status != http.StatusTooManyRequests || code != "too_many_queues" {
		t.Fatalf("third queue: %d %s", a.status, a.body)
	}
	createQueue(t, base, k.other) // another org's count is its own
	do(t, http.MethodDelete, base+"/api/queues/"+second.QueueID, partner(k.acme), "")
	createQueue(t, base, k.acme)
}
