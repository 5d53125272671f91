package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// The queue API as a ComNorm client uses it: a receiver with its partner
// key, senders with a queue's notification URL and secret.

// qAnswer is an answer of the queue API.
type qAnswer struct {
	status int
	body   []byte
	header http.Header
}

// code is the error code of an error answer, and the field it names.
func (a qAnswer) code() (string, string) {
	var e struct {
		Error struct{ Code, Field string } `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Error.Code, e.Error.Field
}

func qDo(t *testing.T, method, url string, hdr map[string]string, body string) qAnswer {
	t.Helper()
	a := harness.Do(t, harness.Request{Method: method, URL: url, Header: hdr, Body: []byte(body)})
	return qAnswer{status: a.Status, body: a.Body, header: a.Header}
}

func partnerKey(key string) map[string]string { return map[string]string{"X-PARTNER-KEY": key} }

type comnormQueue struct {
	QueueID            string `json:"queueId"`
	NotificationURL    string `json:"notificationURL"`
	NotificationSecret string `json:"notificationSecret"`
}

func qCreate(t *testing.T, base, key string) comnormQueue {
	t.Helper()
	a := qDo(t, http.MethodPost, base+"/api/queues", partnerKey(key), "")
	var q comnormQueue
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json" || json.Unmarshal(a.body, &q) != nil {
		t.Fatalf("create queue: %d %s", a.status, a.body)
	}
	return q
}

// qSend posts a message as a sender does: to the notification URL, with
// the secret and no partner key.
func qSend(t *testing.T, q comnormQueue, body string) qAnswer {
	t.Helper()
	return qDo(t, http.MethodPost, q.NotificationURL, map[string]string{"X-COMNORM-NOTIFICATION-SECRET": q.NotificationSecret}, body)
}

type qMessage struct {
	MessageID string          `json:"messageId"`
	Content   json.RawMessage `json:"content"`
}

// waitPeek peeks at a queue until it shows n messages, and fails the test
// if it shows more, or fewer for 10 s.
func waitPeek(t *testing.T, base, key, queue, query string, n int) []qMessage {
	t.Helper()
	var msgs []qMessage
	natstest.WaitForErr(t, 10*time.Second, fmt.Sprintf("%d queued messages", n), func() error {
		if _, msgs = qPeek(t, base, key, queue, query); len(msgs) < n {
			return fmt.Errorf("queued: %v", contents(msgs))
		}
		return nil
	})
	if len(msgs) != n {
		t.Fatalf("queued: %v, want %d", contents(msgs), n)
	}
	return msgs
}

func qPeek(t *testing.T, base, key, id, query string) (qAnswer, []qMessage) {
	t.Helper()
	a := qDo(t, http.MethodGet, base+"/api/queues/"+id+"/messages"+query, partnerKey(key), "")
	var msgs []qMessage
	if a.status == http.StatusOK {
		if err := json.Unmarshal(a.body, &msgs); err != nil || msgs == nil {
			t.Fatalf("peek answer %s: %v", a.body, err)
		}
	}
	return a, msgs
}

func qDeleteMsg(t *testing.T, base, key, id, msg string) int {
	t.Helper()
	return qDo(t, http.MethodDelete, base+"/api/queues/"+id+"/messages/"+msg, partnerKey(key), "").status
}

func contents(msgs []qMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Content)
	}
	return out
}

func TestQueueComNormAPI(t *testing.T) {
	k := harness.Start(t, harness.Options{})
	ctx := context.Background()
	adm, key := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_PARTNER)
	_, otherKey := setup(t, k, "other", adminv1.KeyScope_KEY_SCOPE_PARTNER)
	ingestKey, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}})
	if err != nil {
		t.Fatal(err)
	}

	// Create Queue Request.
	q := qCreate(t, k.HTTP, key)
	if len(q.QueueID) != 32 || q.NotificationURL != k.HTTP+"/api/queues/"+q.QueueID+"/messages" || len(q.NotificationSecret) < 43 {
		t.Fatalf("created %+v", q)
	}
	if a := qDo(t, http.MethodPost, k.HTTP+"/api/queues", nil, ""); a.status != http.StatusUnauthorized {
		t.Fatalf("create without X-PARTNER-KEY: %d", a.status)
	}
	if a := qDo(t, http.MethodPost, k.HTTP+"/api/queues", partnerKey(ingestKey.GetSecret()), ""); a.status != http.StatusForbidden {
		t.Fatalf("create with a key lacking the partner scope: %d", a.status)
	}

	// Post Message Request: secret, no partner key; the 16384 rule.
	fill := func(n int, r string) string { return `{"t":"` + strings.Repeat(r, n-8) + `"}` }
	for _, c := range []struct {
		name, body string
		status     int
	}{
		{"16384 characters of two bytes", fill(16384, "ü"), 200},
		{"16385 characters of two bytes", fill(16385, "ü"), 413},
		{"16384 characters of four bytes", fill(16384, "𝄞"), 200},
		{"16385 characters of four bytes", fill(16385, "𝄞"), 413},
		{"an array", `[1,2]`, 400},
		{"a string", `"text"`, 400},
		{"a number", `7`, 400},
		{"not JSON", `{"a"}`, 400},
	} {
		a := qSend(t, q, c.body)
		if _, field := a.code(); a.status != c.status || (c.status != 200 && field != "body") {
			t.Errorf("%s: %d %s", c.name, a.status, a.body)
		}
	}
	if _, msgs := qPeek(t, k.HTTP, key, q.QueueID, "?count=10"); len(msgs) != 2 || string(msgs[0].Content) != fill(16384, "ü") || string(msgs[1].Content) != fill(16384, "𝄞") {
		t.Fatalf("after the edge cases the queue holds %d messages", len(msgs))
	}
	for name, hdr := range map[string]map[string]string{
		"no secret":    nil,
		"wrong secret": {"X-COMNORM-NOTIFICATION-SECRET": strings.ToUpper(q.NotificationSecret)},
		"partner key":  partnerKey(key),
	} {
		if a := qDo(t, http.MethodPost, q.NotificationURL, hdr, `{}`); a.status != http.StatusUnauthorized {
			t.Errorf("post with %s: %d", name, a.status)
		}
	}
	unknown := k.HTTP + "/api/queues/" + strings.Repeat("0", 32) + "/messages"
	if a := qDo(t, http.MethodPost, unknown, map[string]string{"X-COMNORM-NOTIFICATION-SECRET": q.NotificationSecret}, `{}`); a.status != http.StatusNotFound {
		t.Errorf("post to an unknown queue: %d", a.status)
	}

	// Peek Messages Request: oldest first, count and timeout edges, peeking
	// removes nothing.
	for _, m := range []string{`{"n":1}`, `{"n":2}`, `{"n":3}`} {
		if a := qSend(t, q, m); a.status != 200 {
			t.Fatal(a.status)
		}
	}
	_, all := qPeek(t, k.HTTP, key, q.QueueID, "?count=100")
	if got := contents(all); len(got) != 5 || got[2] != `{"n":1}` || got[3] != `{"n":2}` || got[4] != `{"n":3}` {
		t.Fatalf("peek count=100: %d messages, last three %v", len(got), got[2:])
	}
	if _, one := qPeek(t, k.HTTP, key, q.QueueID, ""); len(one) != 1 || one[0].MessageID != all[0].MessageID {
		t.Fatalf("peek without count: %v", one)
	}
	for query, want := range map[string]int{"?count=1": 200, "?count=100": 200, "?count=0": 400, "?count=101": 400,
		"?timeout=0": 200, "?timeout=60": 200, "?timeout=61": 400, "?timeout=-1": 400, "?count=two": 400} {
		if a, _ := qPeek(t, k.HTTP, key, q.QueueID, query); a.status != want {
			t.Errorf("peek%s: %d %s", query, a.status, a.body)
		}
	}

	// Delete Message Request: processed messages go, one at a time.
	for _, m := range all[:3] {
		if s := qDeleteMsg(t, k.HTTP, key, q.QueueID, m.MessageID); s != http.StatusOK {
			t.Fatalf("delete %s: %d", m.MessageID, s)
		}
	}
	if s := qDeleteMsg(t, k.HTTP, key, q.QueueID, all[0].MessageID); s != http.StatusNotFound {
		t.Fatalf("delete a deleted message: %d", s)
	}
	if _, rest := qPeek(t, k.HTTP, key, q.QueueID, "?count=5"); fmt.Sprint(contents(rest)) != `[{"n":2} {"n":3}]` {
		t.Fatalf("after deletes: %v", contents(rest))
	}

	// An empty queue: [] at once, or 408 once the timeout passes.
	empty := qCreate(t, k.HTTP, key)
	if a, msgs := qPeek(t, k.HTTP, key, empty.QueueID, ""); a.status != 200 || len(msgs) != 0 || string(a.body) != "[]\n" {
		t.Fatalf("empty queue: %d %q", a.status, a.body)
	}
	start := time.Now()
	if a, _ := qPeek(t, k.HTTP, key, empty.QueueID, "?timeout=1"); a.status != http.StatusRequestTimeout || time.Since(start) < time.Second {
		t.Fatalf("timeout=1 on an empty queue: %d after %v", a.status, time.Since(start))
	}

	// A message of one queue cannot be deleted through another.
	if s := qDeleteMsg(t, k.HTTP, key, empty.QueueID, all[3].MessageID); s != http.StatusNotFound {
		t.Fatalf("delete across queues: %d", s)
	}
	// Another org's partner key sees nothing of acme's queues.
	if a, _ := qPeek(t, k.HTTP, otherKey, q.QueueID, ""); a.status != http.StatusNotFound {
		t.Fatalf("other org's peek: %d", a.status)
	}
	if s := qDeleteMsg(t, k.HTTP, otherKey, q.QueueID, all[3].MessageID); s != http.StatusNotFound {
		t.Fatalf("other org's delete: %d", s)
	}
	if a := qDo(t, http.MethodDelete, k.HTTP+"/api/queues/"+q.QueueID, partnerKey(otherKey), ""); a.status != http.StatusNotFound {
		t.Fatalf("other org's queue delete: %d", a.status)
	}
	if _, rest := qPeek(t, k.HTTP, key, q.QueueID, "?count=5"); len(rest) != 2 {
		t.Fatalf("refused deletes deleted something: %v", contents(rest))
	}

	// The admin API lists the org's queues with their depth.
	list, err := adm.ListQueues(ctx, &adminv1.ListQueuesRequest{OrgId: "acme"})
	if err != nil || len(list.GetQueues()) != 2 || list.GetQueues()[0].GetQueueId() != q.QueueID || list.GetQueues()[0].GetDepth() != 2 ||
		list.GetQueues()[0].GetOldestMessageAge() == nil || list.GetQueues()[1].GetDepth() != 0 {
		t.Fatalf("ListQueues: %v %v", list, err)
	}

	// Delete Queue Request: the queue and its messages are gone.
	if a := qDo(t, http.MethodDelete, k.HTTP+"/api/queues/"+q.QueueID, partnerKey(key), ""); a.status != http.StatusOK {
		t.Fatalf("delete queue: %d %s", a.status, a.body)
	}
	for name, a := range map[string]qAnswer{
		"post":           qSend(t, q, `{}`),
		"peek":           qDo(t, http.MethodGet, k.HTTP+"/api/queues/"+q.QueueID+"/messages", partnerKey(key), ""),
		"delete message": qDo(t, http.MethodDelete, k.HTTP+"/api/queues/"+q.QueueID+"/messages/"+all[3].MessageID, partnerKey(key), ""),
		"delete queue":   qDo(t, http.MethodDelete, k.HTTP+"/api/queues/"+q.QueueID, partnerKey(key), ""),
	} {
		if a.status != http.StatusNotFound {
			t.Errorf("%s after the queue's deletion: %d", name, a.status)
		}
	}
	if _, err := adm.DeleteQueue(ctx, &adminv1.DeleteQueueRequest{OrgId: "acme", QueueId: empty.QueueID}); err != nil {
		t.Fatal(err)
	}
	if a, _ := qPeek(t, k.HTTP, key, empty.QueueID, ""); a.status != http.StatusNotFound {
		t.Fatalf("peek a queue deleted through admin: %d", a.status)
	}
}

// Two queue service replicas on one NATS: a peek waiting on one answers
// within milliseconds of a post to the other.
func TestQueueLongPollAcrossReplicas(t *testing.T) {
	base := harness.Start(t, harness.Options{})
	a := harness.Start(t, harness.Options{Role: "queue", NATSURL: base.NATS})
	b := harness.Start(t, harness.Options{Role: "queue", NATSURL: base.NATS, Env: []string{"KURIER_PUBLIC_URL=https://queues.example/"}})
	_, key := setup(t, base, "acme", adminv1.KeyScope_KEY_SCOPE_PARTNER)
	q := qCreate(t, a.HTTP, key)
	if fromB := qCreate(t, b.HTTP, key); !strings.HasPrefix(fromB.NotificationURL, "https://queues.example/api/queues/") {
		t.Fatalf("KURIER_PUBLIC_URL not used: %s", fromB.NotificationURL)
	}
	toB := q
	toB.NotificationURL = strings.Replace(q.NotificationURL, a.HTTP, b.HTTP, 1)
	var worst time.Duration
	for i := range 5 {
		got := make(chan []qMessage, 1)
		go func() {
			_, msgs := qPeek(t, a.HTTP, key, q.QueueID, "?timeout=20&count=10")
			got <- msgs
		}()
		time.Sleep(300 * time.Millisecond) // the peek is waiting on a
		sent := time.Now()
		if r := qSend(t, toB, fmt.Sprintf(`{"round":%d}`, i)); r.status != http.StatusOK {
			t.Fatalf("post to b: %d %s", r.status, r.body)
		}
		select {
		case msgs := <-got:
			worst = max(worst, time.Since(sent))
			if len(msgs) != 1 || string(msgs[0].Content) != fmt.Sprintf(`{"round":%d}`, i) {
				t.Fatalf("round %d: %v", i, contents(msgs))
			}
			if s := qDeleteMsg(t, b.HTTP, key, q.QueueID, msgs[0].MessageID); s != http.StatusOK {
				t.Fatalf("delete through b: %d", s)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: the peek waiting on a did not answer", i)
		}
	}
	t.Logf("slowest wake-up across replicas: %v", worst)
	if worst > time.Second {
		t.Fatalf("a waiting peek answered %v after a post to the other replica", worst)
	}
	// A stopping replica answers its waiting peeks at once.
	got := make(chan qAnswer, 1)
	go func() {
		r, _ := qPeek(t, a.HTTP, key, q.QueueID, "?timeout=30")
		got <- r
	}()
	time.Sleep(300 * time.Millisecond)
	if code := a.Stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("queue replica exit %d", code)
	}
	select {
	case r := <-got:
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("waiting peek at stop: %d %s", r.status, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting peek was not answered at stop")
	}
}

// A queue subscription puts every matching event into its queue; too
// large an event goes thin; a restart keeps every message.
func TestQueueDeliveryAndRestart(t *testing.T) {
	dir := t.TempDir()
	k := harness.Start(t, harness.Options{DataDir: dir})
	ctx := context.Background()
	adm, key := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_PARTNER, adminv1.KeyScope_KEY_SCOPE_INGEST)
	q := qCreate(t, k.HTTP, key)
	sub, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "hub", EventTypes: []string{"invoice.changed", "6"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE,
		QueueId: q.QueueID, Active: true,
	}})
	if err != nil || sub.GetSubscription().GetQueueId() != q.QueueID {
		t.Fatalf("queue subscription: %v %v", sub, err)
	}
	first := change(t, k, key, "invoice.changed", "INV-1", map[string]any{"total": 1.5, "customer": "Müller"})
	change(t, k, key, "stock.changed", "SKU-1", nil) // not subscribed
	large := change(t, k, key, "quote.changed", "Q-1", map[string]string{"text": strings.Repeat("ß", 20000)})

	msgs := waitPeek(t, k.HTTP, key, q.QueueID, "?timeout=1&count=10", 2)
	// Events handled at the same moment may be queued in either order.
	var m1, m2 map[string]any
	_ = json.Unmarshal(msgs[0].Content, &m1)
	_ = json.Unmarshal(msgs[1].Content, &m2)
	if m1["id"] == large {
		m1, m2 = m2, m1
	}
	if m1["id"] != first || m1["type"] != "invoice.changed" || m1["subject"] != "INV-1" || m1["time"] == nil ||
		m1["data"].(map[string]any)["customer"] != "Müller" {
		t.Fatalf("event message: %v", m1)
	}
	if m2["id"] != large || m2["type"] != "quote.changed" || m2["subject"] != "Q-1" || m2["data"] != nil {
		t.Fatalf("message of a large event: %.300v", m2)
	}

	// Senders' messages beside them, then a restart.
	for i := range 3 {
		if a := qSend(t, q, fmt.Sprintf(`{"i":%d}`, i)); a.status != 200 {
			t.Fatal(a.status)
		}
	}
	_, before := qPeek(t, k.HTTP, key, q.QueueID, "?count=100")
	if len(before) != 5 {
		t.Fatalf("before the restart: %v", contents(before))
	}
	if code := k.Stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	k = harness.Start(t, harness.Options{DataDir: dir})
	_, after := qPeek(t, k.HTTP, key, q.QueueID, "?count=100")
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("after the restart:\n%v\nbefore:\n%v", contents(after), contents(before))
	}
	if s := qDeleteMsg(t, k.HTTP, key, q.QueueID, after[0].MessageID); s != http.StatusOK {
		t.Fatalf("delete after the restart: %d", s)
	}
	q.NotificationURL = k.HTTP + "/api/queues/" + q.QueueID + "/messages" // the new process listens elsewhere
	if a := qSend(t, q, `{"after":"restart"}`); a.status != http.StatusOK {
		t.Fatalf("the queue's URL and secret after the restart: %d", a.status)
	}
}
