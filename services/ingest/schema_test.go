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
	"kurier.dev/services/internal/schema"
	"kurier.dev/services/natstest"
)

const totalSchema = `{"type":"object","required":["total"],"properties":{"total":{"type":"number"}}}`

// setSchema stores a schema as the admin service does and waits until svc
// checks against it (text "" deletes it).
func setSchema(t *testing.T, conn *jet.Conn, svc *Service, org, typ, text string) {
	t.Helper()
	ctx := context.Background()
	store, err := schema.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	if text == "" {
		err = store.Delete(ctx, org, typ)
	} else {
		err = store.Set(ctx, org, typ, text)
	}
	if err != nil {
		t.Fatal(err)
	}
	seen := func() bool {
		sch, ok := svc.schemas.For(org, typ)
		if text == "" {
			return !ok
		}
		want, _ := schema.Compile(text)
		return ok && (sch.Check(json.RawMessage(`{}`)) == nil) == (want.Check(json.RawMessage(`{}`)) == nil)
	}
	natstest.WaitFor(t, 5*time.Second, "ingest to follow the schema of "+org+" for "+typ, seen)
}

func eventJSON(id, typ, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/erp","type":%q,"subject":"I-1","data":%s}`, id, typ, data)
}

// errorBody is the error form's body.
type errorBody struct {
	Error struct {
		Code, Message, Field string
		Index                *int
	}
}

func decodeError(t *testing.T, b []byte) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("not the error form: %s", b)
	}
	return e
}

// TestSchemaChecksHTTPEvents: with a schema for its type, an event whose
// data does not match is refused 400 naming the path, in every HTTP mode,
// and nothing of its request is stored; data that is not JSON is refused
// too. Other types, and other orgs' events of the type, are not checked;
// a changed schema applies at once, and a deleted one lifts the check.
func TestSchemaChecksHTTPEvents(t *testing.T) {
	url, svc, conn, secret := start(t, DefaultConfig())
	structured := map[string]string{"Content-Type": event.MediaStructured}
	batch := map[string]string{"Content-Type": event.MediaBatch}
	refused := func(what string, h map[string]string, body, field string, index int) {
		t.Helper()
		before := len(storedEvents(t, conn.JS))
		status, _, b := post(t, url, secret, h, body)
		e := decodeError(t, b)
		switch {
		case status != http.StatusBadRequest || e.Error.Code != "schema_mismatch" || e.Error.Field != field:
			t.Errorf("%s: %d %s, want 400 schema_mismatch at %s", what, status, b, field)
		case index < 0 && e.Error.Index != nil, index >= 0 && (e.Error.Index == nil || *e.Error.Index != index):
			t.Errorf("%s: %s, want index %d", what, b, index)
		}
		if n := len(storedEvents(t, conn.JS)); n != before {
			t.Errorf("%s: %d events stored, want none", what, n-before)
		}
	}
	accepted := func(what string, h map[string]string, body string) {
		t.Helper()
		if status, _, b := post(t, url, secret, h, body); status != http.StatusAccepted {
			t.Errorf("%s: %d %s, want 202", what, status, b)
		}
	}

	accepted("before any schema", structured, eventJSON("e0", "invoice.changed", `{"total":"none"}`))
	setSchema(t, conn, svc, "acme", "invoice.changed", totalSchema)

	accepted("matching data", structured, eventJSON("e1", "invoice.changed", `{"total":12.5}`))
	refused("a string total", structured, eventJSON("e2", "invoice.changed", `{"total":"12"}`), "data.total", -1)
	refused("no total", structured, eventJSON("e2", "invoice.changed", `{}`), "data.total", -1)
	refused("no data", structured, `{"specversion":"1.0","id":"e2","source":"/erp","type":"invoice.changed","subject":"I-1"}`, "data", -1)
	refused("the third of a batch", batch, "["+eventJSON("e3", "invoice.changed", `{"total":1}`)+","+
		eventJSON("e4", "order.changed", `"anything"`)+","+eventJSON("e5", "invoice.changed", `{"total":null}`)+"]", "[2].data.total", 2)
	refused("binary mode", map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "e6", "Ce-Source": "/erp", "Ce-Type": "invoice.changed",
		"Ce-Subject": "I-1", "Content-Type": "application/json"}, `{"total":[]}`, "data.total", -1)
	refused("XML data", structured, `{"specversion":"1.0","id":"e7","source":"/erp","type":"invoice.changed","subject":"I-1",`+
		`"datacontenttype":"application/xml","data":"<invoice total=\"1\"/>"}`, "data", -1)
	refused("bytes", structured, `{"specversion":"1.0","id":"e8","source":"/erp","type":"invoice.changed","subject":"I-1","data_base64":"AAEC"}`, "data_base64", -1)
	accepted("another type", structured, eventJSON("e9", "order.changed", `{"total":"none"}`))

	// Another org's events of the type are its own affair.
	globex := newOrg(t, conn, "globex")
	if status, _, b := post(t, url, globex, structured, eventJSON("e10", "invoice.changed", `{"total":"none"}`)); status != http.StatusAccepted {
		t.Errorf("globex's event: %d %s, want 202: acme's schema is not globex's", status, b)
	}

	setSchema(t, conn, svc, "acme", "invoice.changed", `{"type":"object","required":["number"]}`)
	refused("the changed schema", structured, eventJSON("e11", "invoice.changed", `{"total":1}`), "data.number", -1)
	accepted("what the changed schema takes", structured, eventJSON("e11", "invoice.changed", `{"number":"INV-1"}`))

	setSchema(t, conn, svc, "acme", "invoice.changed", "")
	accepted("after the schema's deletion", structured, eventJSON("e12", "invoice.changed", `{"total":"none"}`))
}

// TestSchemaChecksNATSEvents: over NATS the same, with the index in a
// batch.
func TestSchemaChecksNATSEvents(t *testing.T) {
	_, svc, conn, secret := start(t, DefaultConfig())
	run(t, svc)
	setSchema(t, conn, svc, "acme", "invoice.changed", totalSchema)
	ask := func(body string) (string, []byte) {
		t.Helper()
		resp := request(t, conn, secret, body)
		return resp.Header.Get(StatusHeader), resp.Data
	}
	if st, b := ask(eventJSON("n1", "invoice.changed", `{"total":1}`)); st != "202" {
		t.Errorf("matching data: %s %s", st, b)
	}
	st, b := ask(eventJSON("n2", "invoice.changed", `{"total":"1"}`))
	if e := decodeError(t, b); st != "400" || e.Error.Code != "schema_mismatch" || e.Error.Field != "data.total" || e.Error.Index != nil {
		t.Errorf("a string total: %s %s", st, b)
	}
	st, b = ask("[" + eventJSON("n3", "invoice.changed", `{"total":1}`) + "," + eventJSON("n4", "invoice.changed", `{"total":{}}`) + "]")
	if e := decodeError(t, b); st != "400" || e.Error.Field != "[1].data.total" || e.Error.Index == nil || *e.Error.Index != 1 {
		t.Errorf("the second of a batch: %s %s", st, b)
	}
	if !strings.Contains(string(b), "invoice.changed") {
		t.Errorf("the message does not name the type: %s", b)
	}
}

// TestSchemaOnEveryReplica: two ingest services on one NATS both follow a
// schema set and deleted while they run, and one started after it was set
// checks against it from its first request.
func TestSchemaOnEveryReplica(t *testing.T) {
	url, svc, conn, secret := start(t, DefaultConfig())
	url2, svc2 := serve(t, conn, DefaultConfig())
	bad := eventJSON("r1", "invoice.changed", `{"total":"x"}`)
	structured := map[string]string{"Content-Type": event.MediaStructured}

	setSchema(t, conn, svc, "acme", "invoice.changed", totalSchema)
	natstest.WaitFor(t, 5*time.Second, "the second replica to follow the schema", func() bool {
		_, ok := svc2.schemas.For("acme", "invoice.changed")
		return ok
	})
	for i, u := range []string{url, url2} {
		if status, _, b := post(t, u, secret, structured, bad); status != http.StatusBadRequest {
			t.Errorf("replica %d: %d %s, want 400", i+1, status, b)
		}
	}
	// Started after the schema was set: no wait.
	url3, _ := serve(t, conn, DefaultConfig())
	if status, _, b := post(t, url3, secret, structured, bad); status != http.StatusBadRequest {
		t.Errorf("a replica started after the schema was set: %d %s, want 400", status, b)
	}

	setSchema(t, conn, svc, "acme", "invoice.changed", "")
	natstest.WaitFor(t, 5*time.Second, "the second replica to drop the schema", func() bool {
		_, ok := svc2.schemas.For("acme", "invoice.changed")
		return !ok
	})
	if status, _, b := post(t, url2, secret, structured, bad); status != http.StatusAccepted {
		t.Errorf("replica 2 after the deletion: %d %s, want 202", status, b)
	}
}

// BenchmarkConform is what conform costs ingest per event: for a type
// without a schema, a lookup in memory; with one, the check of the data
// (an object of a few members). Alone, and from every CPU at once, where
// the lookups contend for the cache's lock.
func BenchmarkConform(b *testing.B) {
	conn := natstest.Start(b, bus.DefaultLimits())
	svc, err := New(context.Background(), DefaultConfig(), conn, natstest.Log, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	store, err := schema.Open(context.Background(), conn.JS)
	if err != nil {
		b.Fatal(err)
	}
	if err := store.Set(context.Background(), "acme", "invoice.changed", totalSchema); err != nil {
		b.Fatal(err)
	}
	natstest.WaitFor(b, 5*time.Second, "the schema", func() bool { _, ok := svc.schemas.For("acme", "invoice.changed"); return ok })
	data := json.RawMessage(`{"number":"INV-1001","total":1234.5,"customer":"ACME GmbH","currency":"EUR"}`)
	for _, typ := range []string{"order.changed", "invoice.changed"} {
		events := []event.Event{{ID: "e1", Source: "/erp", Type: typ, Subject: "I-1", Data: data}}
		b.Run(typ, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := svc.conform("acme", events, false); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(typ+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := svc.conform("acme", events, false); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
