package contract

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/natstest"
)

// The headers of ComNorm's queue API.
const (
	PartnerKeyHeader = "X-PARTNER-KEY"
	SecretHeader     = "X-COMNORM-NOTIFICATION-SECRET"
)

// Queue is a ComNorm pull queue of the queue API (/api/queues), as its
// receiver reads it with a partner key and its senders post to it with
// the notification secret.
type Queue struct {
	QueueID            string `json:"queueId"`
	NotificationURL    string `json:"notificationURL"`
	NotificationSecret string `json:"notificationSecret"`
	// Base is where the test reaches the queue API; Key is the partner
	// key the queue was created with.
	Base string `json:"-"`
	Key  string `json:"-"`
}

// QueueMessage is a message as a peek answers it.
type QueueMessage struct {
	MessageID string          `json:"messageId"`
	Content   json.RawMessage `json:"content"`
}

// QueuedEvent is the content of the message a queue subscription makes of
// an event; Data is absent when the event was too large for a message.
type QueuedEvent struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Subject string          `json:"subject"`
	Time    string          `json:"time"`
	Data    json.RawMessage `json:"data"`
}

// Event decodes the message as a queue subscription's; ok is false for a
// message that is not one (a sender's, say).
func (m QueueMessage) Event() (QueuedEvent, bool) {
	var e QueuedEvent
	err := json.Unmarshal(m.Content, &e)
	return e, err == nil && e.Type != "" && e.ID != ""
}

// EventKey names a message by its event's id, or, for a person event
// (whose id Kurier makes), by the person's externalDbId; a message that is
// not an event's is "", which Drain does not count.
func EventKey(m QueueMessage) string {
	e, ok := m.Event()
	switch {
	case !ok:
		return ""
	case strings.HasPrefix(e.Type, "person."):
		return e.Subject
	}
	return e.ID
}

// CreateQueue creates a queue with a partner key, failing the test unless
// it is created.
func CreateQueue(t testing.TB, base, key string) *Queue {
	t.Helper()
	a := Do(t, Request{Method: http.MethodPost, URL: base + "/api/queues", Header: map[string]string{PartnerKeyHeader: key}})
	q := &Queue{Base: base, Key: key}
	if a.Status != http.StatusOK || a.Header.Get("Content-Type") != "application/json" || json.Unmarshal(a.Body, q) != nil || q.QueueID == "" {
		t.Fatalf("create queue: %d %s", a.Status, a.Body)
	}
	return q
}

// SenderURL is the notificationURL's path at Base: a deployment names the
// address its senders reach it at, which need not be the test's.
func (q *Queue) SenderURL() string {
	u, err := url.Parse(q.NotificationURL)
	if err != nil {
		return q.NotificationURL
	}
	return q.Base + u.EscapedPath()
}

// Send posts content as a sender does: to the notification URL, with the
// secret and no partner key.
func (q *Queue) Send(t testing.TB, content string) Answer {
	t.Helper()
	return Do(t, Request{Method: http.MethodPost, URL: q.SenderURL(), Body: []byte(content),
		Header: map[string]string{SecretHeader: q.NotificationSecret, "Content-Type": "application/json"}})
}

// Peek asks for the messages at the head of the queue with query ("" or
// "?count=…&timeout=…") and answers the answer and, if it is 200, the
// messages, failing the test if a 200 is not a JSON array.
func (q *Queue) Peek(t testing.TB, query string) (Answer, []QueueMessage) {
	t.Helper()
	a := q.call(t, http.MethodGet, "/messages"+query)
	if a.Status != http.StatusOK {
		return a, nil
	}
	var msgs []QueueMessage
	if a.Header.Get("Content-Type") != "application/json" || json.Unmarshal(a.Body, &msgs) != nil || msgs == nil {
		t.Fatalf("peek%s: 200 of content type %q is no array of messages: %s", query, a.Header.Get("Content-Type"), a.Body)
	}
	return a, msgs
}

// Messages peeks with query, failing the test unless the answer is 200.
func (q *Queue) Messages(t testing.TB, query string) []QueueMessage {
	t.Helper()
	a, msgs := q.Peek(t, query)
	if a.Status != http.StatusOK {
		t.Fatalf("peek%s: %d %s", query, a.Status, a.Body)
	}
	return msgs
}

// DeleteMessage deletes a message, as the receiver does once it is
// processed.
func (q *Queue) DeleteMessage(t testing.TB, id string) Answer {
	t.Helper()
	return q.call(t, http.MethodDelete, "/messages/"+id)
}

// Delete deletes the queue.
func (q *Queue) Delete(t testing.TB) Answer {
	t.Helper()
	return q.call(t, http.MethodDelete, "")
}

func (q *Queue) call(t testing.TB, method, suffix string) Answer {
	t.Helper()
	h := map[string]string{}
	if q.Key != "" {
		h[PartnerKeyHeader] = q.Key
	}
	return Do(t, Request{Method: method, URL: q.Base + "/api/queues/" + q.QueueID + suffix, Header: h})
}

// head answers up to 100 messages at the head of the queue, waiting a
// second for one if there is none.
func (q *Queue) head(t testing.TB) []QueueMessage {
	t.Helper()
	a, msgs := q.Peek(t, "?count=100&timeout=1")
	switch a.Status {
	case http.StatusOK:
		return msgs
	case http.StatusRequestTimeout:
		return nil
	}
	t.Fatalf("peek: %d %s", a.Status, a.Body)
	return nil
}

// WaitFor waits until the messages at the head of the queue (the first
// 100) hold every key of want, key naming each message, and answers them.
func (q *Queue) WaitFor(t testing.TB, within time.Duration, want []string, key func(QueueMessage) string) []QueueMessage {
	t.Helper()
	var msgs []QueueMessage
	natstest.WaitForErr(t, within, fmt.Sprintf("queue %s to hold %v", q.QueueID, want), func() error {
		msgs = q.head(t)
		have := make([]string, len(msgs))
		for i, m := range msgs {
			have[i] = key(m)
		}
		if slices.ContainsFunc(want, func(k string) bool { return !slices.Contains(have, k) }) {
			return fmt.Errorf("it holds %v", have)
		}
		return nil
	})
	return msgs
}

// Drain reads and deletes messages until every key of want has come, and
// answers how many messages came of each key, so a caller sees duplicates
// and what it did not want. Messages whose key is "" are deleted
// uncounted.
func (q *Queue) Drain(t testing.TB, within time.Duration, want []string, key func(QueueMessage) string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	natstest.WaitForErr(t, within, fmt.Sprintf("%d keys from queue %s", len(want), q.QueueID), func() error {
		for _, m := range q.head(t) {
			if a := q.DeleteMessage(t, m.MessageID); a.Status != http.StatusOK {
				t.Fatalf("delete message %s: %d %s", m.MessageID, a.Status, a.Body)
			}
			if k := key(m); k != "" {
				seen[k]++
			}
		}
		var left []string
		for _, k := range want {
			if seen[k] == 0 {
				left = append(left, k)
			}
		}
		switch {
		case len(left) == 0:
			return nil
		case len(seen) > 20:
			return fmt.Errorf("%d not come: %v; %d came", len(left), left[:min(len(left), 20)], len(seen))
		}
		return fmt.Errorf("%d not come: %v; came: %v", len(left), left[:min(len(left), 20)], seen)
	})
	return seen
}

// QueueAPI is the contract of the ComNorm pull queues under /api/queues.
func QueueAPI(t *testing.T, tg Target) {
	t.Run("Create", func(t *testing.T) { queueCreate(t, tg) })
	t.Run("Round", func(t *testing.T) { queueRound(t, tg) })
	t.Run("Auth", func(t *testing.T) { queueAuth(t, tg) })
	t.Run("Content", func(t *testing.T) { queueContent(t, tg) })
	t.Run("PeekParameters", func(t *testing.T) { queuePeekParameters(t, tg) })
	t.Run("PeekWaits", func(t *testing.T) { queuePeekWaits(t, tg) })
	t.Run("Subscription", func(t *testing.T) { queueSubscription(t, tg) })
	t.Run("Admin", func(t *testing.T) { queueAdmin(t, tg) })
}

// queueError fails the test unless a is status in the error form with
// code and field.
func queueError(t *testing.T, what string, a Answer, status int, code, field string) {
	t.Helper()
	e, ok := a.ErrorForm()
	if a.Status != status || !ok || e.Code != code || e.Field != field {
		t.Errorf("%s: %d %s, want %d %s naming %q", what, a.Status, a.Body, status, code, field)
	}
}

// QueueContents is the content of each message, in order, as text: what
// a test shows of messages, or compares with what was sent.
func QueueContents(msgs []QueueMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Content)
	}
	return out
}

func queueIDs(msgs []QueueMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.MessageID
	}
	return out
}

// queueHolds fails the test unless the queue holds exactly contents, in
// that order.
func queueHolds(t *testing.T, q *Queue, what string, contents ...string) []QueueMessage {
	t.Helper()
	msgs := q.Messages(t, "?count=100")
	if got := QueueContents(msgs); !slices.Equal(got, contents) {
		t.Fatalf("%s: the queue holds %q, want %q", what, got, contents)
	}
	return msgs
}

// Create Queue Request: a queue id, the URL senders post to and their
// secret; a partner key is needed for it.
func queueCreate(t *testing.T, tg Target) {
	_, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	_, ingestKey := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
	a := Do(t, Request{Method: http.MethodPost, URL: tg.HTTP + "/api/queues", Header: map[string]string{PartnerKeyHeader: key}})
	var doc map[string]string
	if a.Status != http.StatusOK || a.Header.Get("Content-Type") != "application/json" || json.Unmarshal(a.Body, &doc) != nil || len(doc) != 3 {
		t.Fatalf("create: %d %s, want 200 with queueId, notificationURL and notificationSecret", a.Status, a.Body)
	}
	id := doc["queueId"]
	u, err := url.Parse(doc["notificationURL"])
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" || err != nil || u.Host == "" ||
		(u.Scheme != "http" && u.Scheme != "https") || u.Path != "/api/queues/"+id+"/messages" || len(doc["notificationSecret"]) < 43 {
		t.Fatalf("created %s: want 32 hex digits, <base>/api/queues/<queueId>/messages and a secret of 43 characters or more", a.Body)
	}
	if other := CreateQueue(t, tg.HTTP, key); other.QueueID == id || other.NotificationSecret == doc["notificationSecret"] {
		t.Fatalf("two queues share an id or a secret: %s and %+v", a.Body, other)
	}
	q := &Queue{QueueID: id, NotificationURL: doc["notificationURL"], NotificationSecret: doc["notificationSecret"], Base: tg.HTTP, Key: key}
	if a, msgs := q.Peek(t, ""); a.Status != http.StatusOK || len(msgs) != 0 || strings.TrimSpace(string(a.Body)) != "[]" {
		t.Fatalf("a new queue: %d %s, want 200 []", a.Status, a.Body)
	}

	for name, h := range map[string]map[string]string{
		"no key":      nil,
		"unknown key": {PartnerKeyHeader: "kur_0123456789abcdef_" + strings.Repeat("A", 43)},
		"garbage":     {PartnerKeyHeader: "secret"},
	} {
		queueError(t, "create with "+name, Do(t, Request{Method: http.MethodPost, URL: tg.HTTP + "/api/queues", Header: h}),
			http.StatusUnauthorized, "unauthenticated", PartnerKeyHeader)
	}
	queueError(t, "create with a key lacking the partner scope",
		Do(t, Request{Method: http.MethodPost, URL: tg.HTTP + "/api/queues", Header: map[string]string{PartnerKeyHeader: ingestKey}}),
		http.StatusForbidden, "forbidden", PartnerKeyHeader)
}

// A ComNorm receiver's whole round: create, hand URL and secret to a
// sender, peek (oldest first, nothing removed), delete what was processed,
// delete the queue.
func queueRound(t *testing.T, tg Target) {
	_, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	q := CreateQueue(t, tg.HTTP, key)
	sent := []string{`{"n":1,"text":"<Müller & Söhne>"}`, "{\n  \"n\": 2\n}", `{"n":3,"nested":{"a":[1,2.50,"x"]}}`}
	for _, c := range sent {
		if a := q.Send(t, c); a.Status != http.StatusOK {
			t.Fatalf("post %s: %d %s", c, a.Status, a.Body)
		}
	}
	// Content comes back as sent, but for the white space between tokens.
	stored := []string{sent[0], `{"n":2}`, sent[2]}
	one := q.Messages(t, "")
	if len(one) != 1 || string(one[0].Content) != stored[0] {
		t.Fatalf("peek without count: %q, want the oldest message alone", QueueContents(one))
	}
	all := queueHolds(t, q, "peek count=100", stored...)
	if all[0].MessageID != one[0].MessageID || len(slices.Compact(slices.Sorted(slices.Values(queueIDs(all))))) != 3 {
		t.Fatalf("message ids %v, first peeked %s: want three ids, the oldest's the same each time", queueIDs(all), one[0].MessageID)
	}
	if again := q.Messages(t, "?count=2"); !slices.Equal(queueIDs(again), queueIDs(all[:2])) {
		t.Fatalf("peek count=2 after peeking: %v, want %v: peeking removes nothing", queueIDs(again), queueIDs(all[:2]))
	}

	if a := q.DeleteMessage(t, all[0].MessageID); a.Status != http.StatusOK {
		t.Fatalf("delete message: %d %s", a.Status, a.Body)
	}
	queueError(t, "delete a deleted message", q.DeleteMessage(t, all[0].MessageID), http.StatusNotFound, "not_found", "messageId")
	for _, bad := range []string{"0", "x", "-1", "99999999", "18446744073709551616"} {
		queueError(t, "delete message "+bad, q.DeleteMessage(t, bad), http.StatusNotFound, "not_found", "messageId")
	}
	if rest := queueHolds(t, q, "after a delete", stored[1:]...); !slices.Equal(queueIDs(rest), queueIDs(all[1:])) {
		t.Fatalf("after a delete: ids %v, want %v", queueIDs(rest), queueIDs(all[1:]))
	}

	// Delete Queue Request: the queue goes with its messages.
	if a := q.Delete(t); a.Status != http.StatusOK {
		t.Fatalf("delete queue: %d %s", a.Status, a.Body)
	}
	queueError(t, "post to a deleted queue", q.Send(t, `{}`), http.StatusNotFound, "not_found", "queueId")
	a, _ := q.Peek(t, "")
	queueError(t, "peek a deleted queue", a, http.StatusNotFound, "not_found", "queueId")
	queueError(t, "delete a message of a deleted queue", q.DeleteMessage(t, all[1].MessageID), http.StatusNotFound, "not_found", "queueId")
	queueError(t, "delete a deleted queue", q.Delete(t), http.StatusNotFound, "not_found", "queueId")
}

// Partner keys reach only their own org's queues; the others' look
// absent. A sender needs the queue's secret and nothing else.
func queueAuth(t *testing.T, tg Target) {
	_, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	_, otherKey := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	q := CreateQueue(t, tg.HTTP, key)
	theirs := CreateQueue(t, tg.HTTP, otherKey)
	if a := q.Send(t, `{"a":1}`); a.Status != http.StatusOK {
		t.Fatalf("post: %d %s", a.Status, a.Body)
	}
	msg := queueHolds(t, q, "after a post", `{"a":1}`)[0]

	absent := strings.Repeat("ab", 16)
	for name, k := range map[string]string{
		"no key":      "",
		"unknown key": "kur_0123456789abcdef_" + strings.Repeat("A", 43),
		"garbage":     "secret",
	} {
		as := *q
		as.Key = k
		a, _ := as.Peek(t, "")
		queueError(t, name+": peek", a, http.StatusUnauthorized, "unauthenticated", PartnerKeyHeader)
		queueError(t, name+": delete message", as.DeleteMessage(t, msg.MessageID), http.StatusUnauthorized, "unauthenticated", PartnerKeyHeader)
		queueError(t, name+": delete queue", as.Delete(t), http.StatusUnauthorized, "unauthenticated", PartnerKeyHeader)
	}

	// The other org's partner key: every call on the queue is 404, as for
	// a queue that does not exist, and changes nothing.
	for _, id := range []string{q.QueueID, absent, "not-a-queue-id"} {
		as := Queue{QueueID: id, Base: tg.HTTP, Key: otherKey}
		a, _ := as.Peek(t, "")
		queueError(t, "other org: peek "+id, a, http.StatusNotFound, "not_found", "queueId")
		queueError(t, "other org: delete a message of "+id, as.DeleteMessage(t, msg.MessageID), http.StatusNotFound, "not_found", "queueId")
		queueError(t, "other org: delete "+id, as.Delete(t), http.StatusNotFound, "not_found", "queueId")
	}
	queueHolds(t, q, "after the other org's calls", `{"a":1}`)

	// A message of one queue cannot be deleted through another, even by
	// the same org.
	mine := CreateQueue(t, tg.HTTP, key)
	queueError(t, "delete across queues", mine.DeleteMessage(t, msg.MessageID), http.StatusNotFound, "not_found", "messageId")
	queueHolds(t, q, "after a delete across queues", `{"a":1}`)

	// Posting: the queue's secret, not another queue's, not none.
	for name, h := range map[string]map[string]string{
		"no secret":            nil,
		"wrong secret":         {SecretHeader: otherFirst(q.NotificationSecret)},
		"secret in upper case": {SecretHeader: strings.ToUpper(q.NotificationSecret)},
		"other queue's secret": {SecretHeader: theirs.NotificationSecret},
		"partner key only":     {PartnerKeyHeader: key},
	} {
		queueError(t, "post with "+name, Do(t, Request{Method: http.MethodPost, URL: q.SenderURL(), Header: h, Body: []byte(`{"a":2}`)}),
			http.StatusUnauthorized, "unauthenticated", SecretHeader)
	}
	unknown := Queue{QueueID: absent, NotificationURL: tg.HTTP + "/api/queues/" + absent + "/messages", NotificationSecret: q.NotificationSecret, Base: tg.HTTP}
	queueError(t, "post to an unknown queue", unknown.Send(t, `{}`), http.StatusNotFound, "not_found", "queueId")
	queueHolds(t, q, "after refused posts", `{"a":1}`)
}

// The 16384-character rule counts characters, not bytes, and takes only
// JSON objects.
func queueContent(t *testing.T, tg Target) {
	_, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	q := CreateQueue(t, tg.HTTP, key)
	// object makes {"t":"…"} of exactly n characters from fill.
	object := func(n int, fill string) string {
		return `{"t":"` + strings.Repeat(fill, n-len(`{"t":""}`)) + `"}`
	}
	var accepted []string
	for _, c := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"16384 ASCII", object(16384, "a"), 200, ""},
		{"16385 ASCII", object(16385, "a"), 413, "too_large"},
		{"16384 two-byte (32760 bytes)", object(16384, "ü"), 200, ""},
		{"16385 two-byte", object(16385, "ü"), 413, "too_large"},
		{"16384 with four-byte (65512 bytes)", object(16384, "𝄞"), 200, ""},
		{"16385 with four-byte", object(16385, "😀"), 413, "too_large"},
		{"16384 with three-byte", object(16384, "€"), 200, ""},
		{"over 65536 bytes", object(20000, "😀"), 413, "too_large"},
		{"array", `[{"a":1}]`, 400, "invalid_message"},
		{"string", `"x"`, 400, "invalid_message"},
		{"number", `42`, 400, "invalid_message"},
		{"null", `null`, 400, "invalid_message"},
		{"true", `true`, 400, "invalid_message"},
		{"not JSON", `{"a":`, 400, "invalid_message"},
		{"a member without value", `{"a"}`, 400, "invalid_message"},
		{"two objects", `{}{}`, 400, "invalid_message"},
		{"empty", ``, 400, "invalid_message"},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", 400, "invalid_message"},
		{"empty object", `{}`, 200, ""},
		{"object with white space", " \n{ } \n", 200, ""},
	} {
		a := q.Send(t, c.body)
		if c.status == http.StatusOK {
			if a.Status != http.StatusOK {
				t.Errorf("%s: %d %s, want 200", c.name, a.Status, a.Body)
			}
			accepted = append(accepted, c.name)
			continue
		}
		queueError(t, c.name, a, c.status, c.code, "body")
	}
	msgs := q.Messages(t, "?count=100")
	if len(msgs) != len(accepted) {
		t.Fatalf("%d messages stored, want the %d accepted: %v", len(msgs), len(accepted), accepted)
	}
	for i, want := range []string{object(16384, "a"), object(16384, "ü"), object(16384, "𝄞"), object(16384, "€"), `{}`, `{}`} {
		if got := string(msgs[i].Content); got != want {
			t.Errorf("message %d (%s) came back as %.80q… (%d characters), want it as sent", i, accepted[i], got, utf8.RuneCountInString(got))
		}
	}
}

// count is 1 to 100 messages, 1 if not given; timeout 0 to 60 seconds.
func queuePeekParameters(t *testing.T, tg Target) {
	_, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	q := CreateQueue(t, tg.HTTP, key)
	for i := range 101 {
		if a := q.Send(t, fmt.Sprintf(`{"i":%d}`, i)); a.Status != http.StatusOK {
			t.Fatalf("post %d: %d %s", i, a.Status, a.Body)
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
		{"?count=two", 400, 0, "count"},
		{"?timeout=0", 200, 1, ""},
		{"?timeout=60&count=3", 200, 3, ""}, // messages are there: no wait
		{"?timeout=61", 400, 0, "timeout"},
		{"?timeout=-1", 400, 0, "timeout"},
		{"?timeout=1.5", 400, 0, "timeout"},
		{"?timeout=x", 400, 0, "timeout"},
	} {
		a, msgs := q.Peek(t, c.query)
		if c.status != http.StatusOK {
			queueError(t, "peek"+c.query, a, c.status, "invalid_parameter", c.field)
			continue
		}
		if a.Status != c.status || len(msgs) != c.n {
			t.Errorf("peek%s: %d with %d messages, want %d with %d", c.query, a.Status, len(msgs), c.status, c.n)
		}
	}
	for i, c := range QueueContents(q.Messages(t, "?count=100")) {
		if c != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("not in the order posted at %d: %s", i, c)
		}
	}
}

// An empty queue answers [] at once without timeout, 408 when the timeout
// passes, and a message as soon as it arrives.
func queuePeekWaits(t *testing.T, tg Target) {
	_, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	q := CreateQueue(t, tg.HTTP, key)
	t0 := time.Now()
	// A peek that waited would take a second or more, one woken late the
	// service's recheck interval (5 s): the bounds leave a loaded machine
	// room below those.
	if a, msgs := q.Peek(t, "?timeout=0"); a.Status != http.StatusOK || len(msgs) != 0 || time.Since(t0) > time.Second {
		t.Fatalf("timeout=0 on an empty queue: %d %s after %v, want [] at once", a.Status, a.Body, time.Since(t0))
	}
	t0 = time.Now()
	a, _ := q.Peek(t, "?timeout=1")
	queueError(t, "timeout=1 on an empty queue", a, http.StatusRequestTimeout, "timeout", "timeout")
	if took := time.Since(t0); took < time.Second || took > 3*time.Second {
		t.Fatalf("timeout=1 on an empty queue answered after %v", took)
	}

	got := make(chan []QueueMessage, 1)
	go func() {
		_, msgs := q.Peek(t, "?timeout=30&count=5")
		got <- msgs
	}()
	time.Sleep(300 * time.Millisecond) // the peek is waiting
	posted := time.Now()
	if a := q.Send(t, `{"late":true}`); a.Status != http.StatusOK {
		t.Fatalf("post: %d %s", a.Status, a.Body)
	}
	select {
	case msgs := <-got:
		if d := time.Since(posted); d > 2*time.Second {
			t.Fatalf("the waiting peek answered %v after the post", d)
		}
		if c := QueueContents(msgs); len(c) != 1 || c[0] != `{"late":true}` {
			t.Fatalf("the woken peek answered %q", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting peek did not answer")
	}
}

// A queue subscription puts every matching event into its queue, beside
// the senders' messages, from the first event posted after
// CreateSubscription answered; too large an event goes thin.
func queueSubscription(t *testing.T, tg Target) {
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_PARTNER, adminv1.KeyScope_KEY_SCOPE_INGEST)
	q := CreateQueue(t, tg.HTTP, key)
	sub, err := tg.Admin.CreateSubscription(context.Background(), &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: org, System: "hub", EventTypes: []string{"invoice.changed", "6"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: q.QueueID,
	}})
	if err != nil || sub.GetSubscription().GetQueueId() != q.QueueID || sub.GetSubscription().GetMode() != adminv1.DeliveryMode_DELIVERY_MODE_QUEUE {
		t.Fatalf("queue subscription: %v %v", sub, err)
	}
	// The events go right after the create, with no wait: each one
	// subscribed to must be queued. The event not subscribed to goes
	// first: were it queued, it would be there by the time the others are.
	tg.Publish(t, key, Event(org+"-stock", "stock.changed", "SKU-1", nil))
	tg.Publish(t, key, Event(org+"-inv", "invoice.changed", "INV-1", map[string]any{"total": 1.5, "customer": "Müller"}))
	if a := q.Send(t, `{"from":"a sender"}`); a.Status != http.StatusOK {
		t.Fatalf("a sender's post: %d %s", a.Status, a.Body)
	}
	tg.Publish(t, key, Event(org+"-quote", "quote.changed", "Q-1", map[string]string{"text": strings.Repeat("ß", 20000)}))

	msgs := q.WaitFor(t, 30*time.Second, []string{org + "-inv", org + "-quote"}, EventKey)
	if len(msgs) != 3 {
		t.Fatalf("the queue holds %.300q, want the two subscribed events and the sender's message", QueueContents(msgs))
	}
	events := map[string]QueuedEvent{}
	for _, m := range msgs {
		if e, ok := m.Event(); ok {
			events[e.ID] = e
		} else if string(m.Content) != `{"from":"a sender"}` {
			t.Fatalf("message %s", m.Content)
		}
	}
	var data map[string]any
	inv := events[org+"-inv"]
	if inv.Type != "invoice.changed" || inv.Subject != "INV-1" || inv.Time == "" || json.Unmarshal(inv.Data, &data) != nil ||
		data["customer"] != "Müller" || data["total"] != 1.5 {
		t.Fatalf("the event's message: %+v (data %s)", inv, inv.Data)
	}
	if quote := events[org+"-quote"]; quote.Type != "quote.changed" || quote.Subject != "Q-1" || quote.Time == "" || quote.Data != nil {
		t.Fatalf("the message of an event over 16384 characters: %.300v, want it without data", quote)
	}
}

// The admin API lists an org's queues, oldest first, with their depth,
// and deletes one as the queue API does.
func queueAdmin(t *testing.T, tg Target) {
	ctx := context.Background()
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	full, empty := CreateQueue(t, tg.HTTP, key), CreateQueue(t, tg.HTTP, key)
	for _, c := range []string{`{"n":1}`, `{"n":2}`} {
		if a := full.Send(t, c); a.Status != http.StatusOK {
			t.Fatalf("post: %d %s", a.Status, a.Body)
		}
	}
	list, err := tg.Admin.ListQueues(ctx, &adminv1.ListQueuesRequest{OrgId: org})
	qs := list.GetQueues()
	if err != nil || len(qs) != 2 || qs[0].GetQueueId() != full.QueueID || qs[0].GetOrgId() != org || qs[0].GetDepth() != 2 ||
		qs[0].GetOldestMessageAge() == nil || qs[1].GetQueueId() != empty.QueueID || qs[1].GetDepth() != 0 || qs[1].GetOldestMessageAge() != nil {
		t.Fatalf("ListQueues: %v %v, want %s holding 2 messages, then %s empty", list, err, full.QueueID, empty.QueueID)
	}
	if _, err := tg.Admin.DeleteQueue(ctx, &adminv1.DeleteQueueRequest{OrgId: org, QueueId: full.QueueID}); err != nil {
		t.Fatalf("DeleteQueue: %v", err)
	}
	a, _ := full.Peek(t, "")
	queueError(t, "peek a queue deleted through the admin API", a, http.StatusNotFound, "not_found", "queueId")
	queueError(t, "post to a queue deleted through the admin API", full.Send(t, `{}`), http.StatusNotFound, "not_found", "queueId")
	if list, err := tg.Admin.ListQueues(ctx, &adminv1.ListQueuesRequest{OrgId: org}); err != nil || len(list.GetQueues()) != 1 || list.GetQueues()[0].GetQueueId() != empty.QueueID {
		t.Fatalf("ListQueues after DeleteQueue: %v %v", list, err)
	}
}

// otherFirst is s with its first character changed.
func otherFirst(s string) string {
	if s[0] == 'x' {
		return "y" + s[1:]
	}
	return "x" + s[1:]
}
