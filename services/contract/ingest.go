package contract

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/natstest"
)

// Ingest is the contract of POST /v1/events.
func Ingest(t *testing.T, tg Target) {
	t.Run("Modes", func(t *testing.T) { ingestModes(t, tg) })
	t.Run("Identity", func(t *testing.T) { ingestIdentity(t, tg) })
	t.Run("Data", func(t *testing.T) { ingestData(t, tg) })
	t.Run("DataDelivered", func(t *testing.T) { ingestDataDelivered(t, tg) })
	t.Run("Keys", func(t *testing.T) { ingestKeys(t, tg) })
	t.Run("Refusals", func(t *testing.T) { ingestRefusals(t, tg) })
}

// ingestOrg makes an org with a key that may post events and read the
// change feed, through which the suite sees what was stored.
func ingestOrg(t *testing.T, tg Target) string {
	t.Helper()
	_, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_CHANGES)
	return key
}

// ingestStored answers the org's stored events of a type as the change
// feed has them (the latest per subject), without moving any position.
func ingestStored(t *testing.T, tg Target, key, typ string) []Change {
	t.Helper()
	c := tg.Changes(t, key, "system=ingest-contract&cursor=&type="+typ)
	if c.Status != http.StatusOK {
		t.Fatalf("GET /v1/changes of %s: %d %s", typ, c.Status, c.Body)
	}
	return c.Changes
}

// ingestAnswered checks that p is 202 with exactly the ids given as
// accepted and duplicates, both arrays, and nothing else.
func ingestAnswered(t *testing.T, what string, p Posted, accepted, duplicates []string) {
	t.Helper()
	var doc map[string]json.RawMessage
	_ = json.Unmarshal(p.Body, &doc)
	if p.Status != http.StatusAccepted || len(doc) != 2 || !ingestArray(doc["accepted"]) || !ingestArray(doc["duplicates"]) ||
		!slices.Equal(p.Accepted, accepted) || !slices.Equal(p.Duplicates, duplicates) {
		t.Fatalf("%s: %d %s, want 202 {\"accepted\":%q,\"duplicates\":%q}", what, p.Status, p.Body, accepted, duplicates)
	}
}

func ingestArray(raw json.RawMessage) bool {
	return bytes.HasPrefix(bytes.TrimSpace(raw), []byte("["))
}

// ingestChange checks that a type's stored events are exactly one, of id
// and subject, with data as JSON equal to data's.
func ingestChange(t *testing.T, tg Target, key, typ, id, subject, data string) Change {
	t.Helper()
	got := ingestStored(t, tg, key, typ)
	if len(got) != 1 || got[0].ID != id || got[0].Type != typ || got[0].Subject != subject || !ingestSameJSON(got[0].Data, data) {
		t.Fatalf("%s stored as %+v, want %s of %s with data %s", typ, got, id, subject, data)
	}
	return got[0]
}

func ingestSameJSON(a json.RawMessage, b string) bool {
	if a == nil || b == "" {
		return a == nil && b == ""
	}
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal([]byte(b), &y) == nil && fmt.Sprint(x) == fmt.Sprint(y)
}

// The three modes, each answered 202 with the ids accepted and those
// already stored; an id twice in a batch and a resend of a stored id are
// duplicates, and neither is stored again.
func ingestModes(t *testing.T, tg Target) {
	key := ingestOrg(t, tg)
	p := tg.Post(t, key, "application/cloudevents+json; charset=utf-8",
		JSON(t, Event("e1", "invoice.changed", "INV-1", map[string]any{"total": 12.5})), nil)
	ingestAnswered(t, "structured", p, []string{"e1"}, []string{})

	// The second b1 has another subject: were it stored, the feed would
	// show that subject too.
	p = tg.Post(t, key, "application/cloudevents-batch+json", JSON(t, []any{
		Event("b1", "quote.changed", "Q-1", nil),
		Event("b2", "project.created", "P-9", map[string]any{"name": "Dach"}),
		Event("b1", "quote.changed", "Q-2", nil),
	}), nil)
	ingestAnswered(t, "batch with an id twice", p, []string{"b1", "b2"}, []string{"b1"})

	p = tg.Post(t, key, "application/json", []byte(`{"qty": 3}`), map[string]string{
		"ce-specversion": "1.0", "ce-id": "bin1", "ce-source": "/shop", "ce-type": "stock.changed",
		"ce-subject": "SKU-7", "ce-time": "2026-11-23T10:00:00Z", "ce-comment": "a%20b",
	})
	ingestAnswered(t, "binary", p, []string{"bin1"}, []string{})

	p = tg.Post(t, key, "application/cloudevents+json", JSON(t, Event("e1", "invoice.changed", "INV-2", map[string]any{"total": 99})), nil)
	ingestAnswered(t, "a resend of a stored id", p, []string{}, []string{"e1"})

	ingestChange(t, tg, key, "invoice.changed", "e1", "INV-1", `{"total":12.5}`)
	ingestChange(t, tg, key, "quote.changed", "b1", "Q-1", "")
	ingestChange(t, tg, key, "project.created", "b2", "P-9", `{"name":"Dach"}`)
	if c := ingestChange(t, tg, key, "stock.changed", "bin1", "SKU-7", `{"qty":3}`); c.Time != "2026-11-23T10:00:00Z" {
		t.Errorf("binary event's time stored as %q, want ce-time 2026-11-23T10:00:00Z", c.Time)
	}
}

// An event is one by its source and id together: the same id from
// another source is another event, the same pair again a duplicate.
func ingestIdentity(t *testing.T, tg Target) {
	key := ingestOrg(t, tg)
	send := func(source, subject string) Posted {
		e := Event("42", "invoice.changed", subject, nil)
		e["source"] = source
		return tg.Post(t, key, "application/cloudevents+json", JSON(t, e), nil)
	}
	ingestAnswered(t, "42 from /erp-a", send("/erp-a", "A"), []string{"42"}, []string{})
	ingestAnswered(t, "42 from /erp-b", send("/erp-b", "B"), []string{"42"}, []string{})
	ingestAnswered(t, "42 from /erp-a again", send("/erp-a", "A2"), []string{}, []string{"42"})
	ingestAnswered(t, "42 from /erp-b again", send("/erp-b", "B2"), []string{}, []string{"42"})
	got := ingestStored(t, tg, key, "invoice.changed")
	if len(got) != 2 || got[0].ID != "42" || got[0].Subject != "A" || got[1].ID != "42" || got[1].Subject != "B" {
		t.Fatalf("stored %+v, want 42 of A and 42 of B", got)
	}
}

// ingestMaxData is the default limit of an event's data, counted as the
// data itself.
const ingestMaxData = 64 << 10

// Data of any media type is taken up to the data limit and kept in the
// form its type calls for: JSON as JSON (from data_base64 too), text as
// a string, anything else as bytes.
func ingestData(t *testing.T, tg Target) {
	key := ingestOrg(t, tg)
	binary := func(id, contentType string) map[string]string {
		return map[string]string{"Content-Type": contentType, "ce-specversion": "1.0", "ce-id": id, "ce-source": "/erp",
			"ce-type": "invoice.changed", "ce-subject": id}
	}
	xml := `<?xml version="1.0" encoding="UTF-8"?><Rechnung Nr="4711"><Kunde>Müller &amp; Söhne</Kunde></Rechnung>`
	ingestAnswered(t, "XML in binary mode", tg.Post(t, key, "", []byte(xml), binary("xml", "application/xml")), []string{"xml"}, []string{})
	ingestAnswered(t, "bytes in binary mode", tg.Post(t, key, "", []byte("\x00\x01\xff"), binary("bytes", "application/octet-stream")), []string{"bytes"}, []string{})

	withBase64 := func(id, contentType string, data []byte) map[string]any {
		e := Event(id, "invoice.changed", id, nil)
		e["data_base64"] = base64.StdEncoding.EncodeToString(data)
		if contentType != "" {
			e["datacontenttype"] = contentType
		}
		return e
	}
	most := bytes.Repeat([]byte{0xa5}, ingestMaxData)
	ingestAnswered(t, "data_base64 of the most data", tg.Post(t, key, "application/cloudevents+json", JSON(t, withBase64("pdf", "application/pdf", most)), nil),
		[]string{"pdf"}, []string{})
	ingestAnswered(t, "data_base64 in a batch", tg.Post(t, key, "application/cloudevents-batch+json", JSON(t, []any{withBase64("b64", "", []byte{0, 1})}), nil),
		[]string{"b64"}, []string{})
	ingestAnswered(t, "JSON as data_base64", tg.Post(t, key, "application/cloudevents+json", JSON(t, withBase64("json64", "application/json", []byte(`{"a":1}`))), nil),
		[]string{"json64"}, []string{})
	// JSON data is counted as written: a string of the limit's length,
	// quotes included, is the most.
	mostJSON := Event("json", "invoice.changed", "json", strings.Repeat("x", ingestMaxData-2))
	ingestAnswered(t, "JSON data of the most data", tg.Post(t, key, "application/cloudevents+json", JSON(t, mostJSON), nil), []string{"json"}, []string{})

	// One byte more is too large.
	over := func(what, field string, e map[string]any) {
		t.Helper()
		a := tg.Post(t, key, "application/cloudevents+json", JSON(t, e), nil).Answer
		if e, ok := a.ErrorForm(); a.Status != http.StatusRequestEntityTooLarge || !ok || e.Code != "too_large" || e.Field != field {
			t.Errorf("%s: %d %.300s, want 413 too_large naming %s", what, a.Status, a.Body, field)
		}
	}
	over("data_base64 one byte over the limit", "data_base64", withBase64("over64", "application/pdf", append(most, 0)))
	over("JSON data one byte over the limit", "data", Event("overjson", "invoice.changed", "overjson", strings.Repeat("x", ingestMaxData-1)))

	got := map[string]Change{}
	for _, c := range ingestStored(t, tg, key, "invoice.changed") {
		got[c.ID] = c
	}
	if len(got) != 6 {
		t.Errorf("stored %d events, want the 6 accepted: %v", len(got), slices.Sorted(maps.Keys(got)))
	}
	var text string
	if c := got["xml"]; c.DataContentType != "application/xml" || json.Unmarshal(c.Data, &text) != nil || text != xml || c.DataBase64 != nil {
		t.Errorf("XML stored as %+v, want it as a string of type application/xml", c)
	}
	if c := got["bytes"]; c.DataContentType != "application/octet-stream" || string(c.DataBase64) != "\x00\x01\xff" || c.Data != nil {
		t.Errorf("bytes stored as %+v", c)
	}
	if c := got["pdf"]; c.DataContentType != "application/pdf" || !bytes.Equal(c.DataBase64, most) || c.Data != nil {
		t.Errorf("PDF stored as %s of %d bytes, data %.50s", c.DataContentType, len(c.DataBase64), c.Data)
	}
	if c := got["b64"]; string(c.DataBase64) != "\x00\x01" || c.Data != nil {
		t.Errorf("data_base64 of a batch stored as %+v", c)
	}
	if c := got["json64"]; !ingestSameJSON(c.Data, `{"a":1}`) || c.DataBase64 != nil {
		t.Errorf("JSON sent as data_base64 stored as %+v, want it as JSON", c)
	}
	if c := got["json"]; len(c.Data) != ingestMaxData {
		t.Errorf("JSON data of the most data stored as %d bytes, want %d", len(c.Data), ingestMaxData)
	}
}

// ingestCarried is what a receiver gets of an event's data, in any of
// Kurier's JSON forms.
type ingestCarried struct {
	ID              string          `json:"id"`
	Timestamp       string          `json:"timestamp"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      []byte          `json:"data_base64"`
}

// An ERP's XML in binary mode and a PDF in data_base64 reach every kind of
// receiver as they were sent: payload bodies (standard and flat), queue
// messages and the change feed carry the XML as a string and the PDF
// base64-encoded, each with its content type; the standard body's
// timestamp is the event's time. The events are posted right after the
// subscriptions are created: they reach every receiver all the same.
func ingestDataDelivered(t *testing.T, tg Target) {
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_PARTNER, adminv1.KeyScope_KEY_SCOPE_CHANGES)
	ctx := context.Background()
	prefix := "/" + org + "/"
	subscribe := func(s *adminv1.Subscription) *adminv1.CreateSubscriptionResponse {
		t.Helper()
		s.OrgId, s.EventTypes, s.Active = org, []string{"invoice.changed"}, true
		resp, err := tg.Admin.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: s})
		if err != nil {
			t.Fatalf("create the subscription of %s: %v", s.GetSystem(), err)
		}
		return resp
	}
	std := subscribe(&adminv1.Subscription{System: "std", Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: tg.Hooks.URL + prefix + "std"})
	subscribe(&adminv1.Subscription{System: "flat", Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: tg.Hooks.URL + prefix + "flat",
		PayloadFormat: adminv1.PayloadFormat_PAYLOAD_FORMAT_FLAT, Attributes: []*adminv1.Attribute{{Name: "mandant", Value: "7"}}})
	q := CreateQueue(t, tg.HTTP, key)
	subscribe(&adminv1.Subscription{System: "hub", Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: q.QueueID})

	xml := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<Rechnung Nr="4711"><Kunde>Müller &amp; Söhne</Kunde><Betrag>119.00</Betrag></Rechnung>`
	ingestAnswered(t, "XML in binary mode", tg.Post(t, key, "application/xml", []byte(xml), map[string]string{"ce-specversion": "1.0", "ce-id": "xml-1",
		"ce-source": "/erp", "ce-type": "invoice.changed", "ce-subject": "RE-4711", "ce-time": "2026-03-02T09:30:00+01:00"}), []string{"xml-1"}, []string{})
	pdf := []byte("%PDF-1.4\n\xe2\xe3\xcf\xd3\n")
	e := Event("pdf-1", "invoice.changed", "RE-4712", nil)
	e["datacontenttype"], e["data_base64"] = "application/pdf", base64.StdEncoding.EncodeToString(pdf)
	ingestAnswered(t, "data_base64", tg.Post(t, key, "application/cloudevents+json", JSON(t, e), nil), []string{"pdf-1"}, []string{})

	decode := func(raw []byte) ingestCarried {
		t.Helper()
		var c ingestCarried
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatalf("%s is not JSON", raw)
		}
		return c
	}
	check := func(where string, c ingestCarried) {
		t.Helper()
		if where == "flat body" {
			// A flat body has no id: tell the events apart by their data.
			c.ID = map[bool]string{true: "xml-1", false: "pdf-1"}[c.Data != nil]
		}
		switch c.ID {
		case "xml-1":
			var text string
			if c.DataContentType != "application/xml" || json.Unmarshal(c.Data, &text) != nil || text != xml || c.DataBase64 != nil {
				t.Errorf("%s: the XML event came as %+v", where, c)
			}
			if where == "standard body" && c.Timestamp != "2026-03-02T08:30:00Z" {
				t.Errorf("%s: timestamp %q, not the event's time 2026-03-02T08:30:00Z", where, c.Timestamp)
			}
		case "pdf-1":
			if c.DataContentType != "application/pdf" || !bytes.Equal(c.DataBase64, pdf) || c.Data != nil {
				t.Errorf("%s: the PDF event came as %+v", where, c)
			}
		default:
			t.Errorf("%s: an event %q", where, c.ID)
		}
	}
	wh, err := standardwebhooks.NewWebhook(std.GetSigningSecret())
	if err != nil {
		t.Fatal(err)
	}
	var hits []Hit
	natstest.WaitForErr(t, 30*time.Second, "4 payload requests", func() error {
		hits = tg.Hooks.Under(t, prefix)
		if len(hits) < 4 {
			return fmt.Errorf("%d arrived", len(hits))
		}
		return nil
	})
	flats := 0
	for _, h := range hits {
		if strings.HasPrefix(h.Path, prefix+"flat") {
			check("flat body", decode([]byte(h.Body)))
			if !strings.HasSuffix(h.Body, `,"mandant":"7"}`) {
				t.Errorf("flat body without the attribute: %s", h.Body)
			}
			flats++
			continue
		}
		if err := wh.Verify([]byte(h.Body), h.Header); err != nil {
			t.Errorf("standard body's signature: %v", err)
		}
		check("standard body", decode([]byte(h.Body)))
	}
	if len(hits) != 4 || flats != 2 {
		t.Fatalf("%d requests, %d of them flat bodies; want 2 standard and 2 flat", len(hits), flats)
	}
	for _, m := range q.WaitFor(t, 30*time.Second, []string{"xml-1", "pdf-1"}, EventKey) {
		check("queue message", decode(m.Content))
	}
	changes := ingestStored(t, tg, key, "invoice.changed")
	if len(changes) != 2 {
		t.Fatalf("the change feed holds %d changes, want 2", len(changes))
	}
	for _, c := range changes {
		check("change feed", ingestCarried{ID: c.ID, DataContentType: c.DataContentType, Data: c.Data, DataBase64: c.DataBase64})
	}
}

// ingestRefused checks that a is the refusal r wants.
func ingestRefused(t *testing.T, r IngestRefusal, a Answer) {
	t.Helper()
	e, ok := a.ErrorForm()
	switch {
	case a.Status != r.Status:
		t.Errorf("%s: %d %.300s, want %d %s naming %s", r.Name, a.Status, a.Body, r.Status, r.Code, r.Field)
	case !ok:
		t.Errorf("%s: %d %.300q is not in the error form", r.Name, a.Status, a.Body)
	case e.Code != r.Code || e.Field != r.Field:
		t.Errorf("%s: %s naming %q (%s), want %s naming %q", r.Name, e.Code, e.Field, e.Message, r.Code, r.Field)
	case (e.Index == nil) != (r.Index < 0) || (e.Index != nil && *e.Index != r.Index):
		got := "none"
		if e.Index != nil {
			got = fmt.Sprint(*e.Index)
		}
		t.Errorf("%s: index %s, want %d (-1: none)", r.Name, got, r.Index)
	}
}

// A key is needed, known, unrevoked and of the ingest scope. A revoked
// key is refused from the moment RevokeKey answers.
func ingestKeys(t *testing.T, tg Target) {
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
	ctx := context.Background()
	good := JSON(t, Event("k1", "invoice.changed", "INV-1", nil))
	post := func(secret string) Answer {
		return Do(t, Request{Method: http.MethodPost, URL: tg.HTTP + "/v1/events", Body: good,
			Header: map[string]string{"Content-Type": "application/cloudevents+json", "Authorization": "Bearer " + secret}})
	}
	keys, err := tg.Admin.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: org})
	if err != nil || len(keys.GetKeys()) != 1 {
		t.Fatalf("list the org's one key: %v %v", keys, err)
	}
	other, err := tg.Admin.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: org, Description: "no ingest",
		Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_PARTNER, adminv1.KeyScope_KEY_SCOPE_CHANGES}})
	if err != nil {
		t.Fatalf("create a key without ingest: %v", err)
	}
	ingestRefused(t, IngestRefusal{Name: "a key without the ingest scope", Status: http.StatusForbidden, Code: "forbidden", Field: "Authorization", Index: -1},
		post(other.GetSecret()))

	if a := post(key); a.Status != http.StatusAccepted {
		t.Fatalf("before the revocation: %d %s", a.Status, a.Body)
	}
	if _, err := tg.Admin.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: keys.GetKeys()[0].GetKeyId()}); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	ingestRefused(t, IngestRefusal{Name: "a revoked key", Status: http.StatusUnauthorized, Code: "unauthenticated", Field: "Authorization", Index: -1},
		post(key))
}

// Every refusal is in the error form naming the field at fault, and
// nothing of a refused request is stored, not even the good events of a
// batch with a bad one.
func ingestRefusals(t *testing.T, tg Target) {
	key := ingestOrg(t, tg)
	refusals := IngestRefusals(key, "refused")
	for _, r := range refusals {
		req := r.Request
		req.URL = tg.HTTP + req.URL
		ingestRefused(t, r, Do(t, req))
	}
	t.Logf("%d refusals", len(refusals))
	if got := ingestStored(t, tg, key, "invoice.changed"); len(got) != 0 {
		t.Fatalf("refused requests stored %+v", got)
	}
}

// IngestRefusal is a request POST /v1/events must refuse, and the
// refusal it must get.
type IngestRefusal struct {
	Name    string
	Request Request // URL is the path and query, on the HTTP base
	Status  int
	Code    string // of the error form
	Field   string
	Index   int // the batch index the error names; -1: none
}

// IngestRefusals answers requests that POST /v1/events must refuse, whose
// key (where they have a valid one) is key and which carry mark in their
// ids, bodies or headers, so a test looking into NATS can tell whether
// any of them got there. Their events are all of type invoice.changed.
func IngestRefusals(key, mark string) []IngestRefusal {
	// with copies h with the headers given as name, value pairs, an
	// empty value taking the header out.
	with := func(h map[string]string, kv ...string) map[string]string {
		out := maps.Clone(h)
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(out, kv[i])
			} else {
				out[kv[i]] = kv[i+1]
			}
		}
		return out
	}
	authorized := map[string]string{"Authorization": "Bearer " + key}
	ce := with(authorized, "Content-Type", "application/cloudevents+json")
	batch := with(authorized, "Content-Type", "application/cloudevents-batch+json")
	binary := with(authorized, "Content-Type", "application/json", "Ce-Specversion", "1.0", "Ce-Id", mark,
		"Ce-Source", "/erp", "Ce-Type", "invoice.changed", "Ce-Subject", "doc")
	// event is a structured event with the attributes given, as JSON
	// text after the required ones.
	event := func(id, typ, more string) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"/erp","type":"` + typ + `","subject":"doc-` + mark + `"` + more + `}`
	}
	good := event(mark, "invoice.changed", "")
	nested := func(n int) string { return strings.Repeat("[", n) + `"` + mark + `"` + strings.Repeat("]", n) }
	huge := strings.Repeat(mark, 60<<10/len(mark)) // a header value under the server's 64 KiB
	unknownKey := "kur_0123456789abcdef_" + (mark + strings.Repeat("A", 43))[:43]
	bigData := `,"data":"` + strings.Repeat("x", 110<<10) + `"`
	var fourMiB strings.Builder
	fourMiB.WriteString("[")
	for i := range 70 {
		if i > 0 {
			fourMiB.WriteString(",")
		}
		fourMiB.WriteString(event(fmt.Sprint(mark, i), "invoice.changed", `,"data":"`+strings.Repeat("x", 60<<10)+`"`))
	}
	fourMiB.WriteString("]")
	var many []string
	for i := range 1001 {
		many = append(many, event(fmt.Sprint(mark, i), "invoice.changed", ""))
	}
	badAt2 := "[" + event(mark+"1", "invoice.changed", "") + "," + event(mark+"2", "invoice.changed", "") + "," + event(mark+"3", "Invoice", "") + "]"

	const bad, tooLarge, media, unauth = "invalid_event", "too_large", "unsupported_media_type", "unauthenticated"
	post := func(name string, h map[string]string, body string, status int, code, field string) IngestRefusal {
		return IngestRefusal{name, Request{Method: http.MethodPost, URL: "/v1/events", Header: h, Body: []byte(body)}, status, code, field, -1}
	}
	at := func(r IngestRefusal, index int) IngestRefusal {
		r.Index = index
		return r
	}
	return []IngestRefusal{
		// The request as a whole.
		post("no key", with(ce, "Authorization", ""), good, 401, unauth, "Authorization"),
		post("an unknown key", with(ce, "Authorization", "Bearer "+unknownKey), good, 401, unauth, "Authorization"),
		post("a key that is not one", with(ce, "Authorization", "Bearer "+mark), good, 401, unauth, "Authorization"),
		post("a key without Bearer", with(ce, "Authorization", key), good, 401, unauth, "Authorization"),
		post("a key of 60 KiB", with(ce, "Authorization", "Bearer "+huge), good, 401, unauth, "Authorization"),
		post("no Content-Type and no ce- headers", with(ce, "Content-Type", ""), good, 415, media, "Content-Type"),
		post("text/plain", with(ce, "Content-Type", "text/plain"), good, 415, media, "Content-Type"),
		post("binary mode with a malformed media type", with(binary, "Content-Type", "application/xml; charset"), "<"+mark+"/>", 415, media, "Content-Type"),
		post("binary mode with a media type without subtype", with(binary, "Content-Type", "xml"), "<"+mark+"/>", 415, media, "Content-Type"),
		{"PUT", Request{Method: http.MethodPut, URL: "/v1/events", Header: ce, Body: []byte(good)}, 405, "method_not_allowed", "method", -1},
		{"a path below /v1/events", Request{Method: http.MethodPost, URL: "/v1/events/" + mark, Header: ce, Body: []byte(good)}, 404, "not_found", "path", -1},
		{"a path with ..", Request{Method: http.MethodPost, URL: "/v1/" + mark + "/../events", Header: ce, Body: []byte(good)}, 404, "not_found", "path", -1},

		// The body.
		post("malformed JSON", ce, `{"specversion":"1.0",`+mark+`}`, 400, bad, "body"),
		post("truncated JSON", ce, good[:len(good)/2], 400, bad, "body"),
		post("an array in structured mode", ce, `["`+mark+`"]`, 400, bad, "body"),
		post("invalid UTF-8 in the body", ce, event(mark+"\xff", "invoice.changed", ""), 400, bad, "body"),
		post("a raw NUL byte", ce, event(mark, "invoice.changed", "\x00"), 400, bad, "body"),
		post("a body nested 10001 deep", ce, event(mark, "invoice.changed", `,"data":`+nested(10001)), 400, bad, "body"),
		post("a body over 101 KiB", ce, event(mark, "invoice.changed", bigData), 413, tooLarge, "body"),
		{"a body over 101 KiB, chunked", Request{Method: http.MethodPost, URL: "/v1/events", Header: ce,
			Body: []byte(event(mark, "invoice.changed", bigData)), Chunked: true}, 413, tooLarge, "body", -1},

		// An attribute.
		post("no specversion", ce, `{"id":"`+mark+`","source":"/erp","type":"invoice.changed","subject":"s"}`, 400, bad, "specversion"),
		post("no id", ce, event("", "invoice.changed", ""), 400, bad, "id"),
		post("a number as id", ce, `{"specversion":"1.0","id":5,"source":"/erp","type":"invoice.changed","subject":"`+mark+`"}`, 400, bad, "id"),
		post("NUL in the id", ce, event(mark+`\u0000`, "invoice.changed", ""), 400, bad, "id"),
		post("no subject", ce, `{"specversion":"1.0","id":"`+mark+`","source":"/erp","type":"invoice.changed","subject":""}`, 400, bad, "subject"),
		post("CR LF in the subject", ce, `{"specversion":"1.0","id":"a","source":"/erp","type":"invoice.changed","subject":"doc\r\nX: `+mark+`"}`, 400, bad, "subject"),
		post("an upper-case type", ce, event(mark, "Invoice.Changed", ""), 400, bad, "type"),
		post("* in the type", ce, event(mark, mark+".*", ""), 400, bad, "type"),
		post("> in the type", ce, event(mark, mark+".>", ""), 400, bad, "type"),
		post(".. in the type", ce, event(mark, mark+"..changed", ""), 400, bad, "type"),
		post("/ in the type", ce, event(mark, mark+"/changed", ""), 400, bad, "type"),
		post("a time that is not one", ce, event(mark, "invoice.changed", `,"time":"yesterday"`), 400, bad, "time"),
		post("an extension holding an object", ce, event(mark, "invoice.changed", `,"ext":{"a":1}`), 400, bad, "ext"),

		// The data.
		post("data nested 33 deep", ce, event(mark, "invoice.changed", `,"data":`+nested(33)), 400, bad, "data"),
		post("XML data as an object", ce, event(mark, "invoice.changed", `,"datacontenttype":"application/xml","data":{"a":1}`), 400, bad, "data"),
		post("data over 64 KiB", ce, event(mark, "invoice.changed", `,"data":"`+strings.Repeat("x", 70<<10)+`"`), 413, tooLarge, "data"),
		post("data_base64 not base64", ce, event(mark, "invoice.changed", `,"data_base64":"`+mark+`*"`), 400, bad, "data_base64"),
		post("data_base64 beside data", ce, event(mark, "invoice.changed", `,"data":1,"data_base64":"AA=="`), 400, bad, "data_base64"),
		post("data_base64 over 64 KiB", ce, event(mark, "invoice.changed", `,"data_base64":"`+base64.StdEncoding.EncodeToString(make([]byte, 65<<10))+`"`), 413, tooLarge, "data_base64"),

		// Binary mode.
		post("binary mode without ce-id", with(binary, "Ce-Id", ""), `{"a":"`+mark+`"}`, 400, bad, "id"),
		post("binary data that is not JSON", binary, "{"+mark, 400, bad, "data"),
		post("binary data over 64 KiB", binary, `"`+mark+strings.Repeat("x", 70<<10)+`"`, 413, tooLarge, "data"),
		post("binary data nested 10001 deep", binary, nested(10001), 400, bad, "data"),
		post("invalid UTF-8 in binary data", binary, `{"`+mark+`":"\xfe"}`, 400, bad, "data"),
		post("invalid UTF-8 in a ce- header", with(binary, "Ce-Id", mark+"%FF"), `{}`, 400, bad, "id"),
		post("LF in a ce-id header", with(binary, "Ce-Id", mark+"%0A"), `{}`, 400, bad, "id"),
		post("a ce-id header of 60 KiB", with(binary, "Ce-Id", huge), `{}`, 400, bad, "id"),
		post("%2F in a ce-type header", with(binary, "Ce-Type", mark+"%2Fchanged"), `{}`, 400, bad, "type"),
		post("* in a ce-type header", with(binary, "Ce-Type", mark+".%2A"), `{}`, 400, bad, "type"),

		// Batched mode: an event's fault is named with its index.
		post("an empty batch", batch, `[]`, 400, bad, "body"),
		post("truncated batch", batch, "["+good, 400, bad, "body"),
		post("a batch of 1001 events", batch, "["+strings.Join(many, ",")+"]", 400, bad, "body"),
		post("a batch over 4 MiB", batch, fourMiB.String(), 413, tooLarge, "body"),
		at(post("a batch of strings", batch, `["`+mark+`"]`, 400, bad, "[0].body"), 0),
		at(post("a batch with a bad third event", batch, badAt2, 400, bad, "[2].type"), 2),
		at(post("data over 64 KiB in a batch", batch, "["+event(mark, "invoice.changed", `,"data":"`+strings.Repeat("x", 65<<10)+`"`)+"]", 413, tooLarge, "[0].data"), 0),
	}
}
