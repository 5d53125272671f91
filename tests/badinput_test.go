package tests

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
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
	req    harness.Request // URL is the path and query, on the HTTP base
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
			a := harness.Do(t, r)
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
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_SYNC_MAX_BODY=1048576"}})
	ctx := context.Background()
	all := []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_CHANGES,
		adminv1.KeyScope_KEY_SCOPE_PARTNER, adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK}
	adm, key := setup(t, k, "acme", all...)
	updateOrg(t, adm, &adminv1.Org{OrgId: "acme", AddressbookSyncEnabled: true, AllowPersonDeletion: true},
		"addressbook_sync_enabled", "allow_person_deletion")
	q := qCreate(t, k.HTTP, key)
	if a := qSend(t, q, `{"n":1}`); a.status != http.StatusOK {
		t.Fatal(a.status)
	}
	_, msgs := qPeek(t, k.HTTP, key, q.QueueID, "")
	mid := msgs[0].MessageID
	if a := pushSync(t, k, key, fe2Person("p1", "Max")); a.Status != http.StatusOK {
		t.Fatal(a)
	}
	if _, err := adm.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	tr := newTraces(t, k)
	// The spy sees the JetStream API requests Kurier makes: a peek at an
	// unknown queue looks its id up in the queues bucket.
	probe := strings.Repeat("0f", 16)
	if a, _ := qPeek(t, k.HTTP, key, probe, ""); a.status != http.StatusNotFound {
		t.Fatalf("peek an unknown queue: %d", a.status)
	}
	if tr.spy.carrying(t, probe) == nil {
		t.Fatal("the spy did not see the lookup of an unknown queue")
	}

	bearer := "Bearer " + key
	unknownKey := "kur_0123456789abcdef_" + marker + strings.Repeat("A", 43-len(marker))
	huge := strings.Repeat(marker, 60<<10/len(marker)) // a header value under the server's 64 KiB
	good := structured(marker, "invoice.changed", "")
	ce := hdr("Authorization", bearer, "Content-Type", "application/cloudevents+json")
	batch := hdr("Authorization", bearer, "Content-Type", "application/cloudevents-batch+json")
	binary := hdr("Authorization", bearer, "Content-Type", "application/json", "Ce-Specversion", "1.0", "Ce-Id", marker,
		"Ce-Source", "/erp", "Ce-Type", "invoice.changed", "Ce-Subject", "doc")
	bigData := `,"data":"` + strings.Repeat("x", 110<<10) + `"`
	var fourMiB strings.Builder
	fourMiB.WriteString("[")
	for i := range 70 {
		if i > 0 {
			fourMiB.WriteString(",")
		}
		fourMiB.WriteString(structured(fmt.Sprint(marker, i), "invoice.changed", `,"data":"`+strings.Repeat("x", 60<<10)+`"`))
	}
	fourMiB.WriteString("]")
	post := func(name string, h map[string]string, body string, status int, field string) hostile {
		return hostile{name, harness.Request{Method: http.MethodPost, URL: "/v1/events", Header: h, Body: []byte(body)}, status, field}
	}
	tr.refuse(t, k.HTTP, "POST /v1/events", []hostile{
		post("truncated JSON", ce, good[:len(good)/2], 400, "body"),
		post("malformed JSON", ce, `{"specversion":"1.0",`+marker+`}`, 400, "body"),
		post("an array in structured mode", ce, `["`+marker+`"]`, 400, "body"),
		post("truncated batch", batch, "["+good, 400, "body"),
		post("a batch of strings", batch, `["`+marker+`"]`, 400, "[0].body"),
		post("an empty batch", batch, `[]`, 400, "body"),
		post("text/plain", with(ce, "Content-Type", "text/plain"), good, 415, "Content-Type"),
		post("no Content-Type and no ce- headers", hdr("Authorization", bearer), good, 415, "Content-Type"),
		post("binary mode with a malformed media type", with(binary, "Content-Type", "application/xml; charset"), "<"+marker+"/>", 415, "Content-Type"),
		post("binary mode with a media type without subtype", with(binary, "Content-Type", "xml"), "<"+marker+"/>", 415, "Content-Type"),
		post("a body over 101 KiB", ce, structured(marker, "invoice.changed", bigData), 413, "body"),
		{"a body over 101 KiB, chunked", harness.Request{Method: http.MethodPost, URL: "/v1/events", Header: ce,
			Body: []byte(structured(marker, "invoice.changed", bigData)), Chunked: true}, 413, "body"},
		post("a batch over 4 MiB", batch, fourMiB.String(), 413, "body"),
		post("data over 64 KiB in a batch", batch, "["+structured(marker, "invoice.changed", `,"data":"`+strings.Repeat("x", 65<<10)+`"`)+"]", 413, "[0].data"),
		post("data nested 33 deep", ce, structured(marker, "invoice.changed", `,"data":`+nested(33)), 400, "data"),
		post("a body nested 10001 deep", ce, structured(marker, "invoice.changed", `,"data":`+nested(10001)), 400, "body"),
		post("binary data nested 10001 deep", binary, nested(10001), 400, "data"),
		post("invalid UTF-8 in the body", ce, structured(marker+"\xff", "invoice.changed", ""), 400, "body"),
		post("invalid UTF-8 in binary data", binary, `{"`+marker+`":"\xfe"}`, 400, "data"),
		post("invalid UTF-8 in a ce- header", with(binary, "Ce-Id", marker+"%FF"), `{}`, 400, "id"),
		post("NUL in the id", ce, structured(marker+`\u0000`, "invoice.changed", ""), 400, "id"),
		post("a raw NUL byte", ce, structured(marker, "invoice.changed", "\x00"), 400, "body"),
		post("* in the type", ce, structured(marker, marker+".*", ""), 400, "type"),
		post("> in the type", ce, structured(marker, marker+".>", ""), 400, "type"),
		post(".. in the type", ce, structured(marker, marker+"..changed", ""), 400, "type"),
		post("/ in the type", ce, structured(marker, marker+"/changed", ""), 400, "type"),
		post("%2F in a ce-type header", with(binary, "Ce-Type", marker+"%2Fchanged"), `{}`, 400, "type"),
		post("* in a ce-type header", with(binary, "Ce-Type", marker+".%2A"), `{}`, 400, "type"),
		post("CR LF in the subject", ce, `{"specversion":"1.0","id":"a","source":"/erp","type":"invoice.changed","subject":"doc\r\nX: `+marker+`"}`, 400, "subject"),
		post("LF in a ce-id header", with(binary, "Ce-Id", marker+"%0A"), `{}`, 400, "id"),
		post("a ce-id header of 60 KiB", with(binary, "Ce-Id", huge), `{}`, 400, "id"),
		post("data_base64 not base64", ce, structured(marker, "invoice.changed", `,"data_base64":"`+marker+`*"`), 400, "data_base64"),
		post("data_base64 over 64 KiB", ce, structured(marker, "invoice.changed", `,"data_base64":"`+base64.StdEncoding.EncodeToString(make([]byte, 65<<10))+`"`), 413, "data_base64"),
		post("XML data as an object", ce, structured(marker, "invoice.changed", `,"datacontenttype":"application/xml","data":{"a":1}`), 400, "data"),
		post("an extension holding an object", ce, structured(marker, "invoice.changed", `,"ext":{"a":1}`), 400, "ext"),
		post("no key", hdr("Content-Type", "application/cloudevents+json"), good, 401, "Authorization"),
		post("an unknown key", with(ce, "Authorization", "Bearer "+unknownKey), good, 401, "Authorization"),
		post("a key of 60 KiB", with(ce, "Authorization", "Bearer "+huge), good, 401, "Authorization"),
		{"PUT", harness.Request{Method: http.MethodPut, URL: "/v1/events", Header: ce, Body: []byte(good)}, 405, "method"},
		{"a path below /v1/events", harness.Request{Method: http.MethodPost, URL: "/v1/events/" + marker, Header: ce, Body: []byte(good)}, 404, "path"},
		{"a path with ..", harness.Request{Method: http.MethodPost, URL: "/v1/" + marker + "/../events", Header: ce, Body: []byte(good)}, 404, "path"},
	})

	feed := func(name, query string, status int, field string) hostile {
		return hostile{name, harness.Request{Method: http.MethodGet, URL: "/v1/changes?" + query, Header: hdr("Authorization", bearer)}, status, field}
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
		{"no key", harness.Request{Method: http.MethodGet, URL: "/v1/changes?system=shop&type=5"}, 401, "Authorization"},
		{"a key without Bearer", harness.Request{Method: http.MethodGet, URL: "/v1/changes?system=shop&type=5", Header: hdr("Authorization", key)}, 401, "Authorization"},
		{"POST", harness.Request{Method: http.MethodPost, URL: "/v1/changes?system=shop&type=5", Header: hdr("Authorization", bearer)}, 405, "method"},
	})

	partner := hdr("X-PARTNER-KEY", key)
	call := func(name, method, path string, h map[string]string, status int, field string) hostile {
		return hostile{name, harness.Request{Method: method, URL: path, Header: h}, status, field}
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
		posts = append(posts, hostile{"queue id " + b.name, harness.Request{Method: http.MethodPost, URL: "/api/queues/" + b.id + "/messages",
			Header: hdr("X-COMNORM-NOTIFICATION-SECRET", q.NotificationSecret), Body: []byte(`{"a":"` + marker + `"}`)}, 404, b.field})
		peeks = append(peeks, call("queue id "+b.name, http.MethodGet, "/api/queues/"+b.id+"/messages?timeout=1", partner, 404, b.field))
		msgDeletes = append(msgDeletes, call("queue id "+b.name, http.MethodDelete, "/api/queues/"+b.id+"/messages/"+mid, partner, 404, b.field))
	}
	tr.refuse(t, k.HTTP, "DELETE /api/queues/{queueId}", append(deletes,
		call("no key", http.MethodDelete, "/api/queues/"+q.QueueID, nil, 401, "X-PARTNER-KEY"),
		call("GET", http.MethodGet, "/api/queues/"+q.QueueID, partner, 405, "method"),
	))

	send := func(name, body string, h map[string]string, status int, field string) hostile {
		return hostile{name, harness.Request{Method: http.MethodPost, URL: "/api/queues/" + q.QueueID + "/messages", Header: h, Body: []byte(body)}, status, field}
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
		hostile{"70 KiB, chunked", harness.Request{Method: http.MethodPost, URL: "/api/queues/" + q.QueueID + "/messages", Header: secret,
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
		return hostile{name, harness.Request{Method: http.MethodPost, URL: "/rest/addressbook/sync", Header: h, Body: []byte(body)}, status, field}
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
		{"over 1 MiB, chunked", harness.Request{Method: http.MethodPost, URL: "/rest/addressbook/sync", Header: book, Body: []byte(tooBig), Chunked: true}, 413, "body"},
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
		{"GET", harness.Request{Method: http.MethodGet, URL: "/rest/addressbook/sync", Header: book}, 405, "method"},
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
		a := harness.Do(t, harness.Request{Method: http.MethodPost, URL: k.HTTP + "/v1/events",
			Header: with(ce, "X-Filler", strings.Repeat(marker, 100<<10/len(marker))), Body: []byte(good)})
		if a.Status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("headers of 100 KiB: %d", a.Status)
		}
	})

	// The setup's queue message and person are still there.
	if _, msgs := qPeek(t, k.HTTP, key, q.QueueID, "?count=10"); len(msgs) != 1 || msgs[0].MessageID != mid {
		t.Fatalf("the queue holds %v", msgs)
	}
	if p := persons(t, adm, "acme", true); len(p) != 1 || p["p1"] == nil {
		t.Fatalf("the book holds %v", p)
	}
}

// badCall is an admin call Kurier must refuse as InvalidArgument naming
// field.
type badCall struct {
	rpc, name, field string
	call             func(context.Context) error
}

// TestAdminBadInput: every admin RPC refuses invalid arguments as
// InvalidArgument whose message begins with the field at fault, and
// changes nothing. (Strings that are not UTF-8 do not get this far: the
// protobuf encoding refuses them in the client, and gRPC in the server.)
func TestAdminBadInput(t *testing.T) {
	k := harness.Start(t, harness.Options{})
	ctx := context.Background()
	adm, key := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_PARTNER)
	q := qCreate(t, k.HTTP, key)
	ping := pingSub(t, adm, "acme", "shop", "https://shop.example/ping", "invoice.changed").GetSubscription().GetSubscriptionId()
	pay := payloadSub(t, adm, &adminv1.Subscription{OrgId: "acme", System: "crm", EventTypes: []string{"invoice.changed"},
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://crm.example/hook"}).GetSubscription().GetSubscriptionId()
	tr := newTraces(t, k)

	var cases []badCall
	add := func(rpc, name, field string, call func(context.Context) error) {
		cases = append(cases, badCall{rpc, name, field, call})
	}
	// org_id: it names subjects and keys, so anything but the pattern is
	// refused before it is looked up, by every RPC that takes one.
	for _, id := range []string{"", "A", marker + "*", marker + ".>", marker + ".x", ">", "*", "-" + marker,
		marker + strings.Repeat("a", 20), marker + "\x00", marker + " x", "../" + marker} {
		name := fmt.Sprintf("org_id %q", id)
		orgCalls := map[string]func(context.Context) error{
			"CreateOrg": func(ctx context.Context) error {
				_, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: id})
				return err
			},
			"GetOrg": func(ctx context.Context) error {
				_, err := adm.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: id})
				return err
			},
			"DeleteOrg": func(ctx context.Context) error {
				_, err := adm.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: id})
				return err
			},
			"UpdateOrg": func(ctx context.Context) error {
				_, err := adm.UpdateOrg(ctx, &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: id}})
				return err
			},
			"CreateKey": func(ctx context.Context) error {
				_, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: id, Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}})
				return err
			},
			"ListKeys": func(ctx context.Context) error {
				_, err := adm.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: id})
				return err
			},
			"CreateSubscription": func(ctx context.Context) error {
				_, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{OrgId: id,
					System: "shop", EventTypes: []string{"5"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: "https://shop.example/"}})
				return err
			},
			"ListSubscriptions": func(ctx context.Context) error {
				_, err := adm.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: id})
				return err
			},
			"ApplyApiNotification": func(ctx context.Context) error {
				_, err := adm.ApplyApiNotification(ctx, &adminv1.ApplyApiNotificationRequest{OrgId: id, Records: "API_NOTIFICATION;shop;5;https://shop.example/;0"})
				return err
			},
			"ListDeliveries": func(ctx context.Context) error {
				_, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: id})
				return err
			},
			"TailDeliveries": func(ctx context.Context) error {
				s, err := adm.TailDeliveries(ctx, &adminv1.TailDeliveriesRequest{OrgId: id})
				if err == nil {
					_, err = s.Recv()
				}
				return err
			},
			"ListDeadLetters": func(ctx context.Context) error {
				_, err := adm.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: id})
				return err
			},
			"ListQueues": func(ctx context.Context) error {
				_, err := adm.ListQueues(ctx, &adminv1.ListQueuesRequest{OrgId: id})
				return err
			},
			"DeleteQueue": func(ctx context.Context) error {
				_, err := adm.DeleteQueue(ctx, &adminv1.DeleteQueueRequest{OrgId: id, QueueId: q.QueueID})
				return err
			},
			"ListPersons": func(ctx context.Context) error {
				_, err := adm.ListPersons(ctx, &adminv1.ListPersonsRequest{OrgId: id})
				return err
			},
			"GetPerson": func(ctx context.Context) error {
				_, err := adm.GetPerson(ctx, &adminv1.GetPersonRequest{OrgId: id, ExternalDbId: "p1"})
				return err
			},
			"CreatePerson": func(ctx context.Context) error {
				_, err := adm.CreatePerson(ctx, &adminv1.CreatePersonRequest{OrgId: id, Person: &adminv1.Person{ExternalDbId: "p1"}})
				return err
			},
			"DeletePerson": func(ctx context.Context) error {
				_, err := adm.DeletePerson(ctx, &adminv1.DeletePersonRequest{OrgId: id, ExternalDbId: "p1"})
				return err
			},
		}
		for rpc, call := range orgCalls {
			add(rpc, name, "org_id", call)
		}
	}
	// Subscription ids: 20 lower-case hex characters, nothing else looked up.
	for _, id := range []string{"", "*", marker, "../" + marker, ping[:19], ping + "0", strings.ToUpper(ping), ping[:19] + ">"} {
		name := fmt.Sprintf("subscription_id %q", id)
		subCalls := map[string]func(context.Context) error{
			"GetSubscription": func(ctx context.Context) error {
				_, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
				return err
			},
			"UpdateSubscription": func(ctx context.Context) error {
				_, err := adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: id}})
				return err
			},
			"DeleteSubscription": func(ctx context.Context) error {
				_, err := adm.DeleteSubscription(ctx, &adminv1.DeleteSubscriptionRequest{SubscriptionId: id})
				return err
			},
			"SetSubscriptionActive": func(ctx context.Context) error {
				_, err := adm.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: id, Active: true})
				return err
			},
			"RotateSecret": func(ctx context.Context) error {
				_, err := adm.RotateSecret(ctx, &adminv1.RotateSecretRequest{SubscriptionId: id})
				return err
			},
			"PreviewSubscription": func(ctx context.Context) error {
				_, err := adm.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: id})
				return err
			},
			"Redeliver": func(ctx context.Context) error {
				_, err := adm.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: id, What: &adminv1.RedeliverRequest_AllDeadLetters{AllDeadLetters: true}})
				return err
			},
		}
		if id != "" { // an empty one lists the whole org's
			subCalls["ListDeliveries"] = func(ctx context.Context) error {
				_, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme", SubscriptionId: id})
				return err
			}
			subCalls["ListDeadLetters"] = func(ctx context.Context) error {
				_, err := adm.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: "acme", SubscriptionId: id})
				return err
			}
		}
		for rpc, call := range subCalls {
			add(rpc, name, "subscription_id", call)
		}
	}
	for _, id := range []string{"", "*", marker, "0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF", "../0123456789abc"} {
		add("RevokeKey", fmt.Sprintf("key_id %q", id), "key_id", func(ctx context.Context) error {
			_, err := adm.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: id})
			return err
		})
	}
	for _, id := range []string{"", "*", marker + ">", strings.ToUpper(q.QueueID), q.QueueID[:31], "..%2F" + q.QueueID} {
		add("DeleteQueue", fmt.Sprintf("queue_id %q", id), "queue_id", func(ctx context.Context) error {
			_, err := adm.DeleteQueue(ctx, &adminv1.DeleteQueueRequest{OrgId: "acme", QueueId: id})
			return err
		})
	}

	// Field by field: the other arguments of each RPC.
	createOrg := func(name, field string, r *adminv1.CreateOrgRequest) {
		add("CreateOrg", name, field, func(ctx context.Context) error { _, err := adm.CreateOrg(ctx, r); return err })
	}
	createOrg("display_name with LF", "display_name", &adminv1.CreateOrgRequest{OrgId: "new", DisplayName: marker + "\nX"})
	createOrg("display_name with NUL", "display_name", &adminv1.CreateOrgRequest{OrgId: "new", DisplayName: marker + "\x00"})
	createOrg("display_name of 201 characters", "display_name", &adminv1.CreateOrgRequest{OrgId: "new", DisplayName: strings.Repeat("d", 201)})
	updateOrgCall := func(name, field string, r *adminv1.UpdateOrgRequest) {
		add("UpdateOrg", name, field, func(ctx context.Context) error { _, err := adm.UpdateOrg(ctx, r); return err })
	}
	updateOrgCall("no org", "org", &adminv1.UpdateOrgRequest{})
	updateOrgCall("an unknown field in the mask", "update_mask", &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: "acme"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{marker}}})
	updateOrgCall("org_id in the mask", "update_mask", &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: "acme"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"org_id"}}})
	updateOrgCall("display_name with CR LF", "display_name", &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: "acme", DisplayName: marker + "\r\n"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
	createKey := func(name, field string, r *adminv1.CreateKeyRequest) {
		add("CreateKey", name, field, func(ctx context.Context) error { _, err := adm.CreateKey(ctx, r); return err })
	}
	createKey("no scopes", "scopes", &adminv1.CreateKeyRequest{OrgId: "acme"})
	createKey("scope 0", "scopes", &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{0}})
	createKey("scope 99", "scopes", &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{99}})
	createKey("description with LF", "description", &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}, Description: marker + "\n"})

	// CreateSubscription: payload, ping and queue subscriptions with one
	// field wrong at a time, CR and LF in custom headers among them.
	payloadWith := func(change func(*adminv1.Subscription)) *adminv1.Subscription {
		s := &adminv1.Subscription{OrgId: "acme", System: "crm", EventTypes: []string{"invoice.changed"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://crm.example/hook", Active: true}
		change(s)
		return s
	}
	createSub := func(name, field string, s *adminv1.Subscription) {
		add("CreateSubscription", name, field, func(ctx context.Context) error {
			_, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: s})
			return err
		})
	}
	header := func(name, value string) func(*adminv1.Subscription) {
		return func(s *adminv1.Subscription) { s.Headers = []*adminv1.Header{{Name: name, Value: value}} }
	}
	add("CreateSubscription", "no subscription", "subscription", func(ctx context.Context) error {
		_, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{})
		return err
	})
	add("CreateSubscription", "inactive beside active", "inactive", func(ctx context.Context) error {
		_, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: payloadWith(func(*adminv1.Subscription) {}), Inactive: true})
		return err
	})
	for _, c := range []struct {
		name, field string
		change      func(*adminv1.Subscription)
	}{
		{"no mode", "mode", func(s *adminv1.Subscription) { s.Mode = 0 }},
		{"mode 99", "mode", func(s *adminv1.Subscription) { s.Mode = 99 }},
		{"no system", "system", func(s *adminv1.Subscription) { s.System = "" }},
		{"a system of 21 characters", "system", func(s *adminv1.Subscription) { s.System = marker + "123456789" }},
		{"a system with LF", "system", func(s *adminv1.Subscription) { s.System = marker + "\n" }},
		{"a name with NUL", "name", func(s *adminv1.Subscription) { s.Name = marker + "\x00" }},
		{"no event types", "event_types", func(s *adminv1.Subscription) { s.EventTypes = nil }},
		{"event type *", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{"*"} }},
		{"event type >", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{">"} }},
		{"an event type ending in .>", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{marker + ".>"} }},
		{"an event type ending in .*", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{marker + ".*"} }},
		{"an event type with ..", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{marker + "..x"} }},
		{"Collmex code 10", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{"10"} }},
		{"no URL", "url", func(s *adminv1.Subscription) { s.Url = "" }},
		{"a javascript: URL", "url", func(s *adminv1.Subscription) { s.Url = "javascript:" + marker }},
		{"a URL with CR LF", "url", func(s *adminv1.Subscription) { s.Url = "https://crm.example/" + marker + "\r\nX-Injected: 1" }},
		{"a URL with a space", "url", func(s *adminv1.Subscription) { s.Url = "https://crm.example/a b" }},
		{"a URL with credentials", "url", func(s *adminv1.Subscription) { s.Url = "https://user:" + marker + "@crm.example/" }},
		{"a URL of 2049 characters", "url", func(s *adminv1.Subscription) { s.Url = "https://crm.example/" + strings.Repeat("a", 2029) }},
		{"a ping URL of 256 characters", "url", func(s *adminv1.Subscription) {
			s.Mode, s.Url = adminv1.DeliveryMode_DELIVERY_MODE_PING, "https://shop.example/"+strings.Repeat("a", 235)
		}},
		{"CR LF in a header value", "headers[0].value", header("X-Api-Key", marker+"\r\nX-Injected: 1")},
		{"LF in a header value", "headers[0].value", header("X-Api-Key", marker+"\nX-Injected: 1")},
		{"CR in a header value", "headers[0].value", header("X-Api-Key", marker+"\r")},
		{"NUL in a header value", "headers[0].value", header("X-Api-Key", marker+"\x00")},
		{"CR LF in a header name", "headers[0].name", header("X-"+marker+"\r\nX-Injected", "1")},
		{"a colon in a header name", "headers[0].name", header("X-"+marker+":", "1")},
		{"a space in a header name", "headers[0].name", header("X "+marker, "1")},
		{"an empty header name", "headers[0].name", header("", marker)},
		{"a header Kurier sets", "headers[0].name", header("Webhook-Signature", marker)},
		{"a hop-by-hop header", "headers[0].name", header("Transfer-Encoding", marker)},
		{"a header value of 1025 bytes", "headers[0].value", header("X-Api-Key", strings.Repeat("v", 1025))},
		{"21 headers", "headers[20].name", func(s *adminv1.Subscription) {
			for i := range 21 {
				s.Headers = append(s.Headers, &adminv1.Header{Name: fmt.Sprint("X-", i), Value: marker})
			}
		}},
		{"an attribute named event", "attributes[0].name", func(s *adminv1.Subscription) {
			s.Attributes = []*adminv1.Attribute{{Name: "event", Value: marker}}
		}},
		{"LF in an attribute value", "attributes[0].value", func(s *adminv1.Subscription) {
			s.Attributes = []*adminv1.Attribute{{Name: "a", Value: marker + "\n"}}
		}},
		{"LF in conditions", "conditions", func(s *adminv1.Subscription) { s.Conditions = marker + "\n" }},
		{"LF in the table", "table", func(s *adminv1.Subscription) { s.Table = marker + "\n" }},
		{"an empty field name", "fields", func(s *adminv1.Subscription) { s.Fields = []string{""} }},
		{"timeout 500ms", "timeout", func(s *adminv1.Subscription) { s.Timeout = durationpb.New(500 * time.Millisecond) }},
		{"timeout 61s", "timeout", func(s *adminv1.Subscription) { s.Timeout = durationpb.New(61 * time.Second) }},
		{"a negative timeout", "timeout", func(s *adminv1.Subscription) { s.Timeout = durationpb.New(-time.Second) }},
		{"max_in_flight 101", "max_in_flight", func(s *adminv1.Subscription) { s.MaxInFlight = 101 }},
		{"max_in_flight 2^32-1", "max_in_flight", func(s *adminv1.Subscription) { s.MaxInFlight = 1<<32 - 1 }},
		{"a negative retry delay", "retry_schedule", func(s *adminv1.Subscription) { s.RetrySchedule = []*durationpb.Duration{durationpb.New(-time.Second)} }},
		{"a retry delay of 8 days", "retry_schedule", func(s *adminv1.Subscription) {
			s.RetrySchedule = []*durationpb.Duration{durationpb.New(8 * 24 * time.Hour)}
		}},
		{"21 retries", "retry_schedule", func(s *adminv1.Subscription) {
			for range 21 {
				s.RetrySchedule = append(s.RetrySchedule, durationpb.New(time.Second))
			}
		}},
		{"daily at 25:00", "schedule.daily_at", func(s *adminv1.Subscription) { s.Schedule = &adminv1.DeliverySchedule{DailyAt: "25:00"} }},
		{"an unknown time zone", "schedule.time_zone", func(s *adminv1.Subscription) {
			s.Schedule = &adminv1.DeliverySchedule{DailyAt: "07:00", TimeZone: marker + "/Zone"}
		}},
		{"a time zone of ..", "schedule.time_zone", func(s *adminv1.Subscription) {
			s.Schedule = &adminv1.DeliverySchedule{DailyAt: "07:00", TimeZone: "../../etc/passwd"}
		}},
		{"a queue subscription with a URL", "url", func(s *adminv1.Subscription) {
			s.Mode, s.QueueId = adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, q.QueueID
		}},
		{"a queue id with >", "queue_id", func(s *adminv1.Subscription) {
			s.Mode, s.Url, s.QueueId = adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, "", marker+">"
		}},
		{"an unknown queue", "queue_id", func(s *adminv1.Subscription) {
			s.Mode, s.Url, s.QueueId = adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, "", strings.Repeat("0f", 16)
		}},
	} {
		createSub(c.name, c.field, payloadWith(c.change))
	}
	updateSub := func(name, field string, r *adminv1.UpdateSubscriptionRequest) {
		add("UpdateSubscription", name, field, func(ctx context.Context) error { _, err := adm.UpdateSubscription(ctx, r); return err })
	}
	updateSub("no subscription", "subscription", &adminv1.UpdateSubscriptionRequest{})
	updateSub("an unknown field in the mask", "update_mask", &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: pay},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{marker}}})
	updateSub("a payload field of a ping subscription", "update_mask", &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: ping},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"headers"}}})
	updateSub("a URL with CR LF", "url", &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: pay, Url: "https://crm.example/" + marker + "\r\n"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"url"}}})
	updateSub("CR LF in a header value", "headers[0].value", &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: pay,
		Headers: []*adminv1.Header{{Name: "X-Api-Key", Value: marker + "\r\nX-Injected: 1"}}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"headers"}}})
	updateSub("event type >", "event_types", &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: pay, EventTypes: []string{">"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"event_types"}}})
	add("PreviewSubscription", "an event type the subscription lacks", "event_type", func(ctx context.Context) error {
		_, err := adm.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: pay, EventType: marker + ".changed"})
		return err
	})
	redeliver := func(name, field string, r *adminv1.RedeliverRequest) {
		add("Redeliver", name, field, func(ctx context.Context) error { _, err := adm.Redeliver(ctx, r); return err })
	}
	redeliver("nothing named", "what", &adminv1.RedeliverRequest{SubscriptionId: pay})
	redeliver("all_dead_letters false", "all_dead_letters", &adminv1.RedeliverRequest{SubscriptionId: pay, What: &adminv1.RedeliverRequest_AllDeadLetters{}})
	redeliver("a range without since", "events.since", &adminv1.RedeliverRequest{SubscriptionId: pay, What: &adminv1.RedeliverRequest_Events{Events: &adminv1.TimeRange{}}})
	redeliver("a range ending before it begins", "events.until", &adminv1.RedeliverRequest{SubscriptionId: pay, What: &adminv1.RedeliverRequest_Events{Events: &adminv1.TimeRange{
		Since: timestamppb.Now(), Until: timestamppb.New(time.Now().Add(-time.Hour))}}})
	redeliver("a ping subscription", "subscription_id", &adminv1.RedeliverRequest{SubscriptionId: ping, What: &adminv1.RedeliverRequest_AllDeadLetters{AllDeadLetters: true}})
	for _, c := range []struct {
		name, field, records string
	}{
		{"not a record", "records: line 1: Satzart", marker},
		{"a javascript: URL", "records: line 1: URL", "API_NOTIFICATION;shop;5;javascript:" + marker + ";0"},
		{"event 10", "records: line 1: Ereignis", "API_NOTIFICATION;shop;10;https://shop.example/" + marker + ";0"},
		{"an unclosed quote", "records: line 1: record", `API_NOTIFICATION;shop;5;"https://shop.example/` + marker + `;0`},
		{"Inaktiv 3", "records: line 1: Inaktiv", "API_NOTIFICATION;shop;5;https://shop.example/" + marker + ";3"},
		{"a second line with a system of 21 characters", "records: line 2: System",
			"API_NOTIFICATION;shop;5;https://shop.example/;0\nAPI_NOTIFICATION;" + marker + "123456789;5;https://shop.example/;0"},
	} {
		add("ApplyApiNotification", c.name, c.field, func(ctx context.Context) error {
			_, err := adm.ApplyApiNotification(ctx, &adminv1.ApplyApiNotificationRequest{OrgId: "acme", Records: c.records})
			return err
		})
	}
	for _, c := range []struct {
		name, field string
		size        int32
		token       string
	}{
		{"page_size -1", "page_size", -1, ""},
		{"page_size 1001", "page_size", 1001, ""},
		{"page_size 2^31-1", "page_size", 1<<31 - 1, ""},
		{"a page_token that is not one", "page_token", 0, marker},
		{"page_token 0", "page_token", 0, "0"},
		{"page_token -1", "page_token", 0, "-1"},
	} {
		add("ListDeliveries", c.name, c.field, func(ctx context.Context) error {
			_, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme", PageSize: c.size, PageToken: c.token})
			return err
		})
		add("ListDeadLetters", c.name, c.field, func(ctx context.Context) error {
			_, err := adm.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: "acme", PageSize: c.size, PageToken: c.token})
			return err
		})
		add("ListPersons", c.name, c.field, func(ctx context.Context) error {
			_, err := adm.ListPersons(ctx, &adminv1.ListPersonsRequest{OrgId: "acme", PageSize: c.size, PageToken: c.token})
			return err
		})
	}
	for _, id := range []string{"", strings.Repeat("x", 257)} {
		name := fmt.Sprintf("external_db_id of %d characters", len(id))
		add("GetPerson", name, "external_db_id", func(ctx context.Context) error {
			_, err := adm.GetPerson(ctx, &adminv1.GetPersonRequest{OrgId: "acme", ExternalDbId: id})
			return err
		})
		add("DeletePerson", name, "external_db_id", func(ctx context.Context) error {
			_, err := adm.DeletePerson(ctx, &adminv1.DeletePersonRequest{OrgId: "acme", ExternalDbId: id})
			return err
		})
	}
	createPerson := func(name, field string, p *adminv1.Person) {
		add("CreatePerson", name, field, func(ctx context.Context) error {
			_, err := adm.CreatePerson(ctx, &adminv1.CreatePersonRequest{OrgId: "acme", Person: p})
			return err
		})
	}
	createPerson("no person", "person", nil)
	createPerson("no external_db_id", "person.external_db_id", &adminv1.Person{FirstName: marker})
	createPerson("an external_db_id of 257 characters", "person.external_db_id", &adminv1.Person{ExternalDbId: marker + strings.Repeat("x", 257)})
	createPerson("NUL in a name", "person.first_name", &adminv1.Person{ExternalDbId: marker, FirstName: "a\x00"})
	createPerson("LF in a name", "person.last_name", &adminv1.Person{ExternalDbId: marker, LastName: "a\nb"})
	createPerson("a mobile number that is not one", "person.mobil", &adminv1.Person{ExternalDbId: marker, Mobil: marker})
	createPerson("an e-mail address with a name", "person.email", &adminv1.Person{ExternalDbId: marker, Email: "Max <max@example.com>"})
	createPerson("101 groups", "person.os_groups", &adminv1.Person{ExternalDbId: marker, OsGroups: slices.Repeat([]string{"g"}, 101)})
	createPerson("an unknown mode", "person.a_pager_pro_field_mode", &adminv1.Person{ExternalDbId: marker, APagerProFieldMode: 99})

	perRPC := map[string]int{}
	for _, c := range cases {
		what := c.rpc + ": " + c.name
		tr.none(t, what, marker, func() {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := c.call(cctx)
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), c.field+": ") {
				t.Errorf("%s: %v, want InvalidArgument naming %s", what, err, c.field)
			}
		})
		perRPC[c.rpc]++
	}
	rpcs := slices.Sorted(maps.Keys(perRPC))
	for _, rpc := range rpcs {
		t.Logf("bad input: admin %s: %d cases", rpc, perRPC[rpc])
	}
	t.Logf("bad input: admin API: %d cases over %d RPCs", len(cases), len(rpcs))
}
