package tests

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/contract"
	"kurier.dev/tests/harness"
)

// Hostile requests against every HTTP endpoint: each must be refused with
// a 4xx in the error form naming the field at fault, and leave no trace:
// no stream or bucket changes, and no NATS message anywhere in the account
// (JetStream API requests included) carries what the request sent.

// marker is in every id, body and header a hostile request sends, so the
// spy can tell whether any of it reached NATS. It is long enough that no
// random id or secret holds it by chance.
const marker = "hostilemarker"

// hostile is one request Kurier must refuse.
type hostile struct {
	name   string
	req    contract.Request // URL is the path and query, on the HTTP base
	status int
	field  string // the field the error must name
}

// spy sees every message of the account Kurier works in, JetStream API
// requests and their replies included.
type spy struct {
	nc *nats.Conn
	ch chan *nats.Msg
}

func newSpy(t *testing.T, k *harness.Kurier) *spy {
	t.Helper()
	s := &spy{nc: k.Conn(t), ch: make(chan *nats.Msg, 1<<16)}
	if _, err := s.nc.ChanSubscribe(">", s.ch); err != nil {
		t.Fatal(err)
	}
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// carrying answers the subjects of the messages seen since the last call
// whose subject, headers or data hold s. The flush first makes sure that
// whatever was sent before the call has arrived.
func (s *spy) carrying(t *testing.T, text string) []string {
	t.Helper()
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var found []string
	for {
		select {
		case m := <-s.ch:
			hdr := fmt.Sprint(m.Header)
			if strings.Contains(m.Subject, text) || strings.Contains(hdr, text) || bytes.Contains(m.Data, []byte(text)) {
				found = append(found, m.Subject)
			}
		default:
			return found
		}
	}
}

// traces is how a test looks for what a request left behind: the state
// of every stream and bucket, and the spy.
type traces struct {
	js  jetstream.JetStream
	spy *spy
}

func newTraces(t *testing.T, k *harness.Kurier) *traces {
	return &traces{js: jsOf(t, k), spy: newSpy(t, k)}
}

// none runs act and fails the test if it changed a stream or bucket, or
// if text reached NATS.
func (tr *traces) none(t *testing.T, what, text string, act func()) {
	t.Helper()
	before := harness.ReadStreams(t, tr.js)
	tr.spy.carrying(t, text) // what came before is not this request's
	act()
	if changed := harness.ReadStreams(t, tr.js).Changed(before); changed != nil {
		t.Errorf("%s changed streams or buckets: %v", what, changed)
	}
	if text == "" {
		return
	}
	if subjects := tr.spy.carrying(t, text); subjects != nil {
		t.Errorf("%s reached NATS on %v", what, subjects)
	}
}

// refuse sends each request and checks its refusal, logging how many
// cases the endpoint had.
func (tr *traces) refuse(t *testing.T, base, endpoint string, cases []hostile) {
	t.Helper()
	for _, c := range cases {
		what := endpoint + ": " + c.name
		if c.status < 400 || c.status > 499 || c.field == "" {
			t.Fatalf("%s: a refusal is a 4xx naming a field", what)
		}
		tr.none(t, what, marker, func() {
			r := c.req
			r.URL = base + r.URL
			a := contract.Do(t, r)
			e, ok := a.ErrorForm()
			switch {
			case a.Status != c.status:
				t.Errorf("%s: %d %.300s, want %d", what, a.Status, a.Body, c.status)
			case !ok:
				t.Errorf("%s: %d %.300q is not in the error form", what, a.Status, a.Body)
			case e.Field != c.field:
				t.Errorf("%s: names %q (%s), want %q", what, e.Field, e.Message, c.field)
			}
		})
	}
	t.Logf("bad input: %s: %d cases", endpoint, len(cases))
}

// hdr makes a header map from name, value pairs.
func hdr(kv ...string) map[string]string {
	h := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

// with copies h with more name, value pairs.
func with(h map[string]string, kv ...string) map[string]string {
	out := hdr(kv...)
	for k, v := range h {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out
}

// nested is JSON nesting n arrays around a value.
func nested(n int) string {
	return strings.Repeat("[", n) + `"` + marker + `"` + strings.Repeat("]", n)
}

// structured is a CloudEvent in structured mode with the attributes
// given, as JSON text after the required ones.
func structured(id, typ, more string) string {
	return `{"specversion":"1.0","id":"` + id + `","source":"/erp","type":"` + typ + `","subject":"doc-` + marker + `"` + more + `}`
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_SYNC_MAX_BODY=1048576"}})
	ctx := context.Background()
	all := []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_CHANGES,
		adminv1.KeyScope_KEY_SCOPE_PARTNER, adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK}
	adm, key := setup(t, k, "acme", all...)
	updateOrg(t, adm, &adminv1.Org{OrgId: "acme", AddressbookSyncEnabled: true, AllowPersonDeletion: true},
		"addressbook_sync_enabled", "allow_person_deletion")
	q := contract.CreateQueue(t, k.HTTP, key)
	if a := q.Send(t, `{"n":1}`); a.Status != http.StatusOK {
		t.Fatal(a.Status)
	}
	_, msgs := q.Peek(t, "")
	mid := msgs[0].MessageID
	if a := pushSync(t, k, key, contract.FE2Person("p1", "Max")); a.Status != http.StatusOK {
		t.Fatal(a)
	}
	if _, err := adm.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	tr := newTraces(t, k)
	// The spy sees the JetStream API requests Kurier makes: a peek at an
	// unknown queue looks its id up in the queues bucket.
	probe := strings.Repeat("0f", 16)
	unknown := contract.Queue{QueueID: probe, Base: k.HTTP, Key: key}
	if a, _ := unknown.Peek(t, ""); a.Status != http.StatusNotFound {
		t.Fatalf("peek an unknown queue: %d", a.Status)
	}
	if tr.spy.carrying(t, probe) == nil {
		t.Fatal("the spy did not see the lookup of an unknown queue")
	}

	bearer := "Bearer " + key
	unknownKey := "kur_0123456789abcdef_" + marker + strings.Repeat("A", 43-len(marker))
	huge := strings.Repeat(marker, 60<<10/len(marker)) // a header value under the server's 64 KiB
	good := structured(marker, "invoice.changed", "")
	ce := hdr("Authorization", bearer, "Content-Type", "application/cloudevents+json")
	var events []hostile
	for _, r := range contract.IngestRefusals(key, marker) {
		events = append(events, hostile{r.Name, r.Request, r.Status, r.Field})
	}
	tr.refuse(t, k.HTTP, "POST /v1/events", events)

	feed := func(name, query string, status int, field string) hostile {
		return hostile{name, contract.Request{Method: http.MethodGet, URL: "/v1/changes?" + query, Header: hdr("Authorization", bearer)}, status, field}
	}
	tr.refuse(t, k.HTTP, "GET /v1/changes", []hostile{
		feed("no system", "type=5", 400, "system"),
		feed("a system of 21 characters", "type=5&system="+marker+"12345678", 400, "system"),
		feed("NUL in the system", "type=5&system=%00"+marker, 400, "system"),
		feed("CR LF in the system", "type=5&system="+marker+"%0D%0A", 400, "system"),
		feed("invalid UTF-8 in the system", "type=5&system="+marker+"%FF", 400, "system"),
		feed("no type", "system=shop", 400, "type"),
		feed("type *", "system=shop&type=*", 400, "type"),
		feed("type >", "system=shop&type=%3E", 400, "type"),
		feed("a type ending in .>", "system=shop&type="+marker+".%3E", 400, "type"),
		feed("a type ending in .*", "system=shop&type="+marker+".*", 400, "type"),
		feed("type ..", "system=shop&type=..", 400, "type"),
		feed("a type with %2F", "system=shop&type="+marker+"%2F..", 400, "type"),
		feed("Collmex code 0", "system=shop&type=0", 400, "type"),
		feed("Collmex code 10", "system=shop&type=10", 400, "type"),
		feed("limit 0", "system=shop&type=5&limit=0", 400, "limit"),
		feed("limit -1", "system=shop&type=5&limit=-1", 400, "limit"),
		feed("limit 1001", "system=shop&type=5&limit=1001", 400, "limit"),
		feed("limit 10^20", "system=shop&type=5&limit=100000000000000000000", 400, "limit"),
		feed("limit 1.5", "system=shop&type=5&limit=1.5", 400, "limit"),
		feed("limit 1e3", "system=shop&type=5&limit=1e3", 400, "limit"),
		feed("limit that is not a number", "system=shop&type=5&limit="+marker, 400, "limit"),
		feed("a cursor that is not one", "system=shop&type=5&cursor="+marker, 400, "cursor"),
		feed("cursor c-1", "system=shop&type=5&cursor=c-1", 400, "cursor"),
		feed("a cursor of 21 digits", "system=shop&type=5&cursor=c100000000000000000000", 400, "cursor"),
		feed("a cursor past the stream", "system=shop&type=5&cursor=c18446744073709551615", 400, "cursor"),
		{"no key", contract.Request{Method: http.MethodGet, URL: "/v1/changes?system=shop&type=5"}, 401, "Authorization"},
		{"a key without Bearer", contract.Request{Method: http.MethodGet, URL: "/v1/changes?system=shop&type=5", Header: hdr("Authorization", key)}, 401, "Authorization"},
		{"POST", contract.Request{Method: http.MethodPost, URL: "/v1/changes?system=shop&type=5", Header: hdr("Authorization", bearer)}, 405, "method"},
	})

	partner := hdr("X-PARTNER-KEY", key)
	call := func(name, method, path string, h map[string]string, status int, field string) hostile {
		return hostile{name, contract.Request{Method: method, URL: path, Header: h}, status, field}
	}
	tr.refuse(t, k.HTTP, "POST /api/queues", []hostile{
		call("no key", http.MethodPost, "/api/queues", nil, 401, "X-PARTNER-KEY"),
		call("an unknown key", http.MethodPost, "/api/queues", hdr("X-PARTNER-KEY", unknownKey), 401, "X-PARTNER-KEY"),
		call("a key that is not one", http.MethodPost, "/api/queues", hdr("X-PARTNER-KEY", marker), 401, "X-PARTNER-KEY"),
		call("a key of 60 KiB", http.MethodPost, "/api/queues", hdr("X-PARTNER-KEY", huge), 401, "X-PARTNER-KEY"),
		call("the key as a bearer token", http.MethodPost, "/api/queues", hdr("Authorization", bearer), 401, "X-PARTNER-KEY"),
		call("PUT", http.MethodPut, "/api/queues", partner, 405, "method"),
		call("a path with ..", http.MethodPost, "/api/"+marker+"/../queues", partner, 404, "path"),
	})

	// Queue ids a partner might send: every one is 404 before it reaches
	// a subject or key.
	badQueues := []struct{ name, id, field string }{
		{"not hex", marker, "queueId"},
		{"*", "%2A", "queueId"},
		{">", "%3E", "queueId"},
		{"ending in *", marker + "*", "queueId"},
		{"ending in >", marker + ">", "queueId"},
		{"ending in .*", marker + ".%2A", "queueId"},
		{"with %2F", marker + "%2F" + q.QueueID, "queueId"},
		{"with %2F..%2F", marker + "%2F..%2F" + q.QueueID, "path"},
		{"..%2F", "..%2F" + marker, "path"},
		{"%2E%2E", "%2E%2E", "path"},
		{"NUL", "%00" + marker, "queueId"},
		{"upper-case hex", strings.ToUpper(q.QueueID), "queueId"},
		{"31 hex digits", q.QueueID[:31], "queueId"},
		{"33 hex digits", q.QueueID + "0", "queueId"},
	}
	var deletes, posts, peeks, msgDeletes []hostile
	for _, b := range badQueues {
		deletes = append(deletes, call("queue id "+b.name, http.MethodDelete, "/api/queues/"+b.id, partner, 404, b.field))
		posts = append(posts, hostile{"queue id " + b.name, contract.Request{Method: http.MethodPost, URL: "/api/queues/" + b.id + "/messages",
			Header: hdr("X-COMNORM-NOTIFICATION-SECRET", q.NotificationSecret), Body: []byte(`{"a":"` + marker + `"}`)}, 404, b.field})
		peeks = append(peeks, call("queue id "+b.name, http.MethodGet, "/api/queues/"+b.id+"/messages?timeout=1", partner, 404, b.field))
		msgDeletes = append(msgDeletes, call("queue id "+b.name, http.MethodDelete, "/api/queues/"+b.id+"/messages/"+mid, partner, 404, b.field))
	}
	tr.refuse(t, k.HTTP, "DELETE /api/queues/{queueId}", append(deletes,
		call("no key", http.MethodDelete, "/api/queues/"+q.QueueID, nil, 401, "X-PARTNER-KEY"),
		call("GET", http.MethodGet, "/api/queues/"+q.QueueID, partner, 405, "method"),
	))

	send := func(name, body string, h map[string]string, status int, field string) hostile {
		return hostile{name, contract.Request{Method: http.MethodPost, URL: "/api/queues/" + q.QueueID + "/messages", Header: h, Body: []byte(body)}, status, field}
	}
	secret := hdr("X-COMNORM-NOTIFICATION-SECRET", q.NotificationSecret)
	long := `{"a":"` + strings.Repeat(marker, 70<<10/len(marker)) + `"}`
	tr.refuse(t, k.HTTP, "POST /api/queues/{queueId}/messages", append(posts,
		send("truncated JSON", `{"a":"`+marker, secret, 400, "body"),
		send("malformed JSON", `{`+marker+`}`, secret, 400, "body"),
		send("an array", `["`+marker+`"]`, secret, 400, "body"),
		send("a string", `"`+marker+`"`, secret, 400, "body"),
		send("a number", `7`, secret, 400, "body"),
		send("null", `null`, secret, 400, "body"),
		send("an empty body", ``, secret, 400, "body"),
		send("invalid UTF-8", `{"`+marker+`":"`+"\xff"+`"}`, secret, 400, "body"),
		send("a raw NUL byte", `{"`+marker+`":1}`+"\x00", secret, 400, "body"),
		send("nested 33 deep", `{"a":`+nested(32)+`}`, secret, 400, "body"),
		send("nested 8000 deep", `{"a":`+nested(7999)+`}`, secret, 400, "body"),
		send("70 KiB", long, secret, 413, "body"),
		hostile{"70 KiB, chunked", contract.Request{Method: http.MethodPost, URL: "/api/queues/" + q.QueueID + "/messages", Header: secret,
			Body: []byte(long), Chunked: true}, 413, "body"},
		send("no secret", `{"a":"`+marker+`"}`, nil, 401, "X-COMNORM-NOTIFICATION-SECRET"),
		send("a wrong secret", `{"a":1}`, hdr("X-COMNORM-NOTIFICATION-SECRET", marker), 401, "X-COMNORM-NOTIFICATION-SECRET"),
		send("a secret of 60 KiB", `{"a":1}`, hdr("X-COMNORM-NOTIFICATION-SECRET", huge), 401, "X-COMNORM-NOTIFICATION-SECRET"),
		send("the partner key instead", `{"a":"`+marker+`"}`, partner, 401, "X-COMNORM-NOTIFICATION-SECRET"),
	))

	peek := func(name, query string, status int, field string) hostile {
		return call(name, http.MethodGet, "/api/queues/"+q.QueueID+"/messages?"+query, partner, status, field)
	}
	tr.refuse(t, k.HTTP, "GET /api/queues/{queueId}/messages", append(peeks,
		peek("count 0", "count=0", 400, "count"),
		peek("count -1", "count=-1", 400, "count"),
		peek("count 101", "count=101", 400, "count"),
		peek("count 10^20", "count=100000000000000000000", 400, "count"),
		peek("count 1.5", "count=1.5", 400, "count"),
		peek("count 1e2", "count=1e2", 400, "count"),
		peek("an empty count", "count=", 400, "count"),
		peek("count that is not a number", "count="+marker, 400, "count"),
		peek("timeout -1", "timeout=-1", 400, "timeout"),
		peek("timeout 61", "timeout=61", 400, "timeout"),
		peek("timeout 10^20", "timeout=100000000000000000000", 400, "timeout"),
		peek("timeout 1.5", "timeout=1.5", 400, "timeout"),
		peek("an empty timeout", "timeout=", 400, "timeout"),
		peek("timeout that is not a number", "timeout="+marker, 400, "timeout"),
		call("no key", http.MethodGet, "/api/queues/"+q.QueueID+"/messages", nil, 401, "X-PARTNER-KEY"),
		call("PUT", http.MethodPut, "/api/queues/"+q.QueueID+"/messages", partner, 405, "method"),
	))

	badMsg := func(name, id, field string) hostile {
		return call("message id "+name, http.MethodDelete, "/api/queues/"+q.QueueID+"/messages/"+id, partner, 404, field)
	}
	tr.refuse(t, k.HTTP, "DELETE /api/queues/{queueId}/messages/{messageId}", append(msgDeletes,
		badMsg("0", "0", "messageId"),
		badMsg("-1", "-1", "messageId"),
		badMsg("+"+mid, "%2B"+mid, "messageId"),
		badMsg("not a number", marker, "messageId"),
		badMsg("*", "%2A", "messageId"),
		badMsg(">", "%3E", "messageId"),
		badMsg("1.5", "1.5", "messageId"),
		badMsg("2^64", "18446744073709551616", "messageId"),
		badMsg("with %2F", mid+"%2F"+marker, "messageId"),
		badMsg("with %2F..", mid+"%2F..", "path"),
		badMsg("past the stream", "18446744073709551615", "messageId"),
		call("no key", http.MethodDelete, "/api/queues/"+q.QueueID+"/messages/"+mid, nil, 401, "X-PARTNER-KEY"),
		call("POST", http.MethodPost, "/api/queues/"+q.QueueID+"/messages/"+mid, partner, 405, "method"),
	))

	book := hdr("Authorization", key, "Content-Type", "application/json")
	sync := func(name, body string, h map[string]string, status int, field string) hostile {
		return hostile{name, contract.Request{Method: http.MethodPost, URL: "/rest/addressbook/sync", Header: h, Body: []byte(body)}, status, field}
	}
	person := func(fields string) string {
		return `{"source":"` + marker + `","personList":[{"externalDbId":"p1","firstName":"Max"},{` + fields + `}]}`
	}
	tooBig := `{"source":"` + marker + `","personList":[` + strings.Repeat(`{"externalDbId":"`+marker+`"},`, 1<<20/30) + `{}]}`
	tr.refuse(t, k.HTTP, "POST /rest/addressbook/sync", []hostile{
		sync("truncated JSON", `{"source":"`+marker+`","personList":[{"externalDbId":"p1"`, book, 400, "body"),
		sync("malformed JSON", `{`+marker+`}`, book, 400, "body"),
		sync("an array", `["`+marker+`"]`, book, 400, "body"),
		sync("personList a string", `{"personList":"`+marker+`"}`, book, 400, "personList"),
		sync("no personList", `{"source":"`+marker+`"}`, book, 400, "personList"),
		sync("a person that is a string", `{"personList":["`+marker+`"]}`, book, 400, "personList[0]"),
		sync("externalDbId an array", `{"personList":[{"externalDbId":["`+marker+`"]}]}`, book, 400, "personList[0].externalDbId"),
		sync("text/plain", person(`"externalDbId":"`+marker+`"`), with(book, "Content-Type", "text/plain"), 415, "Content-Type"),
		sync("no Content-Type", person(`"externalDbId":"`+marker+`"`), hdr("Authorization", key), 415, "Content-Type"),
		sync("over 1 MiB", tooBig, book, 413, "body"),
		{"over 1 MiB, chunked", contract.Request{Method: http.MethodPost, URL: "/rest/addressbook/sync", Header: book, Body: []byte(tooBig), Chunked: true}, 413, "body"},
		sync("nested 10001 deep", `{"personList":[{"externalDbId":"p1","x":`+nested(10001)+`}]}`, book, 400, "body"),
		sync("invalid UTF-8", person(`"externalDbId":"`+marker+`","firstName":"`+"\xff"+`"`), book, 400, "body"),
		sync("NUL in a name", person(`"externalDbId":"`+marker+`","firstName":"a\u0000"`), book, 400, "personList[1].firstName"),
		sync("CR LF in a name", person(`"externalDbId":"`+marker+`","lastName":"a\r\nb"`), book, 400, "personList[1].lastName"),
		sync("a raw NUL byte", person(`"externalDbId":"`+marker+`"`)+"\x00", book, 400, "body"),
		sync("an externalDbId of 257 characters", person(`"externalDbId":"`+marker+strings.Repeat("x", 257-len(marker))+`"`), book, 400, "personList[1].externalDbId"),
		sync("an empty externalDbId", person(`"firstName":"`+marker+`"`), book, 400, "personList[1].externalDbId"),
		sync("an externalDbId twice", person(`"externalDbId":"p1","firstName":"`+marker+`"`), book, 400, "personList[1].externalDbId"),
		sync("a number as source", `{"source":7,"personList":[{"externalDbId":"`+marker+`"}]}`, book, 400, "source"),
		sync("a source of 201 characters", `{"source":"`+strings.Repeat("s", 201)+`","personList":[{"externalDbId":"`+marker+`"}]}`, book, 400, "source"),
		sync("no key", person(`"externalDbId":"`+marker+`"`), hdr("Content-Type", "application/json"), 401, "Authorization"),
		sync("the key as a bearer token", person(`"externalDbId":"`+marker+`"`), with(book, "Authorization", bearer), 401, "Authorization"),
		sync("a key of 60 KiB", person(`"externalDbId":"`+marker+`"`), with(book, "Authorization", huge), 401, "Authorization"),
		{"GET", contract.Request{Method: http.MethodGet, URL: "/rest/addressbook/sync", Header: book}, 405, "method"},
	})

	gone := func(name, id, field string) hostile {
		return call("externalDbId "+name, http.MethodDelete, "/rest/addressbook/external/persons/"+id, hdr("Authorization", key), 404, field)
	}
	tr.refuse(t, k.HTTP, "DELETE /rest/addressbook/external/persons/{externalDbId}", []hostile{
		gone("unknown", marker, "externalDbId"),
		gone("*", "%2A", "externalDbId"),
		gone(">", "%3E", "externalDbId"),
		gone("ending in *", marker+"*", "externalDbId"),
		gone("ending in .>", marker+".%3E", "externalDbId"),
		gone("with %2F", marker+"%2Fp1", "externalDbId"),
		gone("..%2F", "..%2F"+marker, "path"),
		gone("%2E%2E", "%2E%2E", "path"),
		gone("NUL", "%00"+marker, "externalDbId"),
		gone("invalid UTF-8", marker+"%FF", "externalDbId"),
		gone("of 300 characters", marker+strings.Repeat("x", 300), "externalDbId"),
		gone("p1 with a space", "p1%20", "externalDbId"),
		call("no key", http.MethodDelete, "/rest/addressbook/external/persons/p1", nil, 401, "Authorization"),
		call("GET", http.MethodGet, "/rest/addressbook/external/persons/p1", hdr("Authorization", key), 405, "method"),
	})

	// Headers past the server's 64 KiB are refused by Go's HTTP server
	// before Kurier sees them: 431 in plain text, and nothing changes.
	tr.none(t, "headers of 100 KiB", marker, func() {
		a := contract.Do(t, contract.Request{Method: http.MethodPost, URL: k.HTTP + "/v1/events",
			Header: with(ce, "X-Filler", strings.Repeat(marker, 100<<10/len(marker))), Body: []byte(good)})
		if a.Status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("headers of 100 KiB: %d", a.Status)
		}
	})

	// The setup's queue message and person are still there.
	if _, msgs := q.Peek(t, "?count=10"); len(msgs) != 1 || msgs[0].MessageID != mid {
		t.Fatalf("the queue holds %v", msgs)
	}
	if p := persons(t, adm, "acme", true); len(p) != 1 || p["p1"] == nil {
		t.Fatalf("the book holds %v", p)
	}
}

// TestAdminBadInput: the admin RPCs' refusals of invalid arguments
// (contract.AdminBadCalls, which contract.AdminAPI checks on every target)
// leave no trace: no stream or bucket changes, and nothing they sent
// reaches NATS. (Strings that are not UTF-8 do not get this far: the
// protobuf encoding refuses them in the client, and gRPC in the server.)
func TestAdminBadInput(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	ctx := context.Background()
	adm, key := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_PARTNER)
	q := contract.CreateQueue(t, k.HTTP, key)
	ping := pingSub(t, adm, "acme", "shop", "https://shop.example/ping", "invoice.changed").GetSubscription().GetSubscriptionId()
	pay := payloadSub(t, adm, &adminv1.Subscription{System: "crm", EventTypes: []string{"invoice.changed"},
		Url: "https://crm.example/hook"}).GetSubscription().GetSubscriptionId()
	tr := newTraces(t, k)

	calls := contract.AdminBadCalls(adm, contract.AdminBadFixture{Org: "acme", Ping: ping, Payload: pay, Queue: q.QueueID}, marker)
	perRPC := map[string]int{}
	for _, c := range calls {
		tr.none(t, c.RPC+": "+c.Name, marker, func() {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			c.Check(t, cctx)
		})
		perRPC[c.RPC]++
	}
	rpcs := slices.Sorted(maps.Keys(perRPC))
	for _, rpc := range rpcs {
		t.Logf("bad input: admin %s: %d cases", rpc, perRPC[rpc])
	}
	t.Logf("bad input: admin API: %d cases over %d RPCs", len(calls), len(rpcs))
}
