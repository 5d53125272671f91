package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/tests/harness"
)

// answer is a decoded HTTP answer of the ingest API.
type answer struct {
	Status     int
	RetryAfter string
	Accepted   []string `json:"accepted"`
	Duplicates []string `json:"duplicates"`
	Error      *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
		Index   *int   `json:"index"`
	} `json:"error"`
}

func post(t *testing.T, k *harness.Kurier, secret, contentType string, body []byte, hdr map[string]string) answer {
	t.Helper()
	h := map[string]string{}
	if contentType != "" {
		h["Content-Type"] = contentType
	}
	if secret != "" {
		h["Authorization"] = "Bearer " + secret
	}
	maps.Copy(h, hdr)
	r := harness.Do(t, harness.Request{Method: http.MethodPost, URL: k.HTTP + "/v1/events", Header: h, Body: body})
	a := answer{Status: r.Status, RetryAfter: r.Header.Get("Retry-After")}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("answer content type %q, body %s", ct, r.Body)
	}
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("answer %d is not JSON: %s", r.Status, r.Body)
	}
	return a
}

func ev(id, typ, subject string, data any) map[string]any {
	e := map[string]any{"specversion": "1.0", "id": id, "source": "/erp", "type": typ, "subject": subject}
	if data != nil {
		e["data"] = data
	}
	return e
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// setup makes an org and keys with the named scopes.
func setup(t *testing.T, k *harness.Kurier, org string, scopes ...adminv1.KeyScope) (adminv1.AdminServiceClient, string) {
	t.Helper()
	ctx := context.Background()
	adm := k.Admin(t)
	if _, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: org, DisplayName: "Org " + org}); err != nil {
		t.Fatal(err)
	}
	key, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: org, Scopes: scopes, Description: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return adm, key.GetSecret()
}

// stored reads every event of an org from the EVENTS stream.
func stored(t *testing.T, k *harness.Kurier, org string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range harness.Messages(t, jsOf(t, k), "EVENTS", "kurier.events."+org+".>") {
		var e map[string]any
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Fatalf("stored event is not JSON: %s", m.Data())
		}
		e["_subject"] = m.Subject()
		out = append(out, e)
	}
	return out
}

func ids(events []map[string]any) []string {
	var out []string
	for _, e := range events {
		out = append(out, e["id"].(string))
	}
	return out
}

func TestIngestModes(t *testing.T) {
	k := harness.Start(t, harness.Options{})
	_, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)

	// Structured mode.
	a := post(t, k, secret, "application/cloudevents+json; charset=utf-8",
		mustJSON(t, ev("e1", "invoice.changed", "INV-1", map[string]any{"total": 12.5})), nil)
	if a.Status != 202 || !slices.Equal(a.Accepted, []string{"e1"}) || len(a.Duplicates) != 0 {
		t.Fatalf("structured: %+v", a)
	}
	// Batched mode, with the same id twice: the second is a duplicate.
	batch := []any{ev("b1", "quote.changed", "Q-1", nil), ev("b2", "project.created", "P-9", map[string]any{"name": "Dach"}), ev("b1", "quote.changed", "Q-1", nil)}
	a = post(t, k, secret, "application/cloudevents-batch+json", mustJSON(t, batch), nil)
	if a.Status != 202 || !slices.Equal(a.Accepted, []string{"b1", "b2"}) || !slices.Equal(a.Duplicates, []string{"b1"}) {
		t.Fatalf("batch: %+v", a)
	}
	// Binary mode, with a percent-encoded extension.
	a = post(t, k, secret, "application/json", []byte(`{"qty": 3}`), map[string]string{
		"ce-specversion": "1.0", "ce-id": "bin1", "ce-source": "/shop", "ce-type": "stock.changed",
		"ce-subject": "SKU-7", "ce-time": "2026-11-23T10:00:00Z", "ce-comment": "a%20b",
	})
	if a.Status != 202 || !slices.Equal(a.Accepted, []string{"bin1"}) {
		t.Fatalf("binary: %+v", a)
	}
	// A resend of a stored id is answered as a duplicate and not stored again.
	a = post(t, k, secret, "application/cloudevents+json", mustJSON(t, ev("e1", "invoice.changed", "INV-1", nil)), nil)
	if a.Status != 202 || len(a.Accepted) != 0 || !slices.Equal(a.Duplicates, []string{"e1"}) {
		t.Fatalf("duplicate: %+v", a)
	}

	got := stored(t, k, "acme")
	if !slices.Equal(ids(got), []string{"e1", "b1", "b2", "bin1"}) {
		t.Fatalf("stored ids %v", ids(got))
	}
	if got[0]["_subject"] != "kurier.events.acme.invoice.changed" || got[0]["data"].(map[string]any)["total"] != 12.5 {
		t.Errorf("structured event stored as %v", got[0])
	}
	if got[3]["_subject"] != "kurier.events.acme.stock.changed" || got[3]["comment"] != "a b" ||
		got[3]["subject"] != "SKU-7" || got[3]["datacontenttype"] != "application/json" || got[3]["data"].(map[string]any)["qty"] != 3.0 {
		t.Errorf("binary event stored as %v", got[3])
	}
}

func TestIngestRejects(t *testing.T) {
	k := harness.Start(t, harness.Options{})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	other, err := adm.CreateKey(context.Background(), &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_PARTNER}})
	if err != nil {
		t.Fatal(err)
	}
	good := mustJSON(t, ev("x1", "invoice.changed", "INV-1", nil))
	big := strings.Repeat("x", 70<<10)
	many := make([]any, 1001)
	for i := range many {
		many[i] = ev(fmt.Sprint("m", i), "invoice.changed", "INV", nil)
	}
	badAt2 := []any{ev("ok1", "invoice.changed", "A", nil), ev("ok2", "invoice.changed", "B", nil), ev("bad", "Invoice", "C", nil)}
	const ce = "application/cloudevents+json"

	cases := []struct {
		name, secret, ct string
		body             []byte
		hdr              map[string]string
		status           int
		code, field      string
		index            int // -1: none
	}{
		{"no key", "", ce, good, nil, 401, "unauthenticated", "Authorization", -1},
		{"unknown key", "kur_0000000000000000_" + strings.Repeat("A", 43), ce, good, nil, 401, "unauthenticated", "Authorization", -1},
		{"garbage key", "nonsense", ce, good, nil, 401, "unauthenticated", "Authorization", -1},
		{"wrong scope", other.GetSecret(), ce, good, nil, 403, "forbidden", "Authorization", -1},
		{"no content type", secret, "", good, nil, 415, "unsupported_media_type", "Content-Type", -1},
		{"text/plain", secret, "text/plain", good, nil, 415, "unsupported_media_type", "Content-Type", -1},
		{"binary with a malformed media type", secret, "application/xml; charset", []byte("<a/>"), map[string]string{"ce-specversion": "1.0"}, 415, "unsupported_media_type", "Content-Type", -1},
		{"not json", secret, ce, []byte("{nope"), nil, 400, "invalid_event", "body", -1},
		{"truncated", secret, ce, good[:len(good)-4], nil, 400, "invalid_event", "body", -1},
		{"array in structured", secret, ce, []byte("[]"), nil, 400, "invalid_event", "body", -1},
		{"invalid utf-8", secret, ce, []byte("{\"id\":\"\xff\"}"), nil, 400, "invalid_event", "body", -1},
		{"no specversion", secret, ce, []byte(`{"id":"a","source":"/s","type":"a.b","subject":"s"}`), nil, 400, "invalid_event", "specversion", -1},
		{"no id", secret, ce, mustJSON(t, ev("", "invoice.changed", "S", nil)), nil, 400, "invalid_event", "id", -1},
		{"no subject", secret, ce, mustJSON(t, ev("a", "invoice.changed", "", nil)), nil, 400, "invalid_event", "subject", -1},
		{"wildcard type", secret, ce, mustJSON(t, ev("a", "invoice.>", "S", nil)), nil, 400, "invalid_event", "type", -1},
		{"upper-case type", secret, ce, mustJSON(t, ev("a", "Invoice.Changed", "S", nil)), nil, 400, "invalid_event", "type", -1},
		{"number id", secret, ce, []byte(`{"specversion":"1.0","id":5,"source":"/s","type":"a.b","subject":"s"}`), nil, 400, "invalid_event", "id", -1},
		{"bad time", secret, ce, []byte(`{"specversion":"1.0","id":"a","source":"/s","type":"a.b","subject":"s","time":"yesterday"}`), nil, 400, "invalid_event", "time", -1},
		{"base64 data not base64", secret, ce, []byte(`{"specversion":"1.0","id":"a","source":"/s","type":"a.b","subject":"s","data_base64":"A*=="}`), nil, 400, "invalid_event", "data_base64", -1},
		{"base64 data beside data", secret, ce, []byte(`{"specversion":"1.0","id":"a","source":"/s","type":"a.b","subject":"s","data":1,"data_base64":"AA=="}`), nil, 400, "invalid_event", "data_base64", -1},
		{"data too large", secret, ce, mustJSON(t, ev("a", "invoice.changed", "S", big)), nil, 413, "too_large", "data", -1},
		{"binary data too large", secret, "application/json", mustJSON(t, big), map[string]string{"ce-specversion": "1.0", "ce-id": "a", "ce-source": "/s", "ce-type": "a.b", "ce-subject": "s"}, 413, "too_large", "data", -1},
		{"binary not json", secret, "application/json", []byte("{nope"), map[string]string{"ce-specversion": "1.0", "ce-id": "a", "ce-source": "/s", "ce-type": "a.b", "ce-subject": "s"}, 400, "invalid_event", "data", -1},
		{"binary no id", secret, "application/json", []byte("{}"), map[string]string{"ce-specversion": "1.0", "ce-source": "/s", "ce-type": "a.b", "ce-subject": "s"}, 400, "invalid_event", "id", -1},
		{"batch too many", secret, "application/cloudevents-batch+json", mustJSON(t, many), nil, 400, "invalid_event", "body", -1},
		{"batch empty", secret, "application/cloudevents-batch+json", []byte("[]"), nil, 400, "invalid_event", "body", -1},
		{"batch bad event", secret, "application/cloudevents-batch+json", mustJSON(t, badAt2), nil, 400, "invalid_event", "[2].type", 2},
		{"batch too large", secret, "application/cloudevents-batch+json", bytes.Repeat([]byte(" "), 5<<20), nil, 413, "too_large", "body", -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := post(t, k, c.secret, c.ct, c.body, c.hdr)
			if a.Status != c.status || a.Error == nil || a.Error.Code != c.code || a.Error.Field != c.field || a.Error.Message == "" {
				t.Fatalf("got %d %+v, want %d %s field %q", a.Status, a.Error, c.status, c.code, c.field)
			}
			if (c.index >= 0) != (a.Error.Index != nil) || (a.Error.Index != nil && *a.Error.Index != c.index) {
				t.Fatalf("index %v, want %d", a.Error.Index, c.index)
			}
		})
	}
	// Nothing of any rejected request was stored.
	if got := stored(t, k, "acme"); len(got) != 0 {
		t.Fatalf("rejected requests stored %v", ids(got))
	}
}

func TestRevokedKeyStopsAtOnce(t *testing.T) {
	k := harness.Start(t, harness.Options{})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	if a := post(t, k, secret, "application/cloudevents+json", mustJSON(t, ev("r1", "invoice.changed", "I", nil)), nil); a.Status != 202 {
		t.Fatalf("before revoke: %+v", a)
	}
	keys, err := adm.ListKeys(context.Background(), &adminv1.ListKeysRequest{OrgId: "acme"})
	if err != nil || len(keys.GetKeys()) != 1 {
		t.Fatalf("list keys: %v %v", keys, err)
	}
	revoked, err := adm.RevokeKey(context.Background(), &adminv1.RevokeKeyRequest{KeyId: keys.GetKeys()[0].GetKeyId()})
	if err != nil || revoked.GetRevokeTime() == nil {
		t.Fatalf("revoke: %v %v", revoked, err)
	}
	if a := post(t, k, secret, "application/cloudevents+json", mustJSON(t, ev("r2", "invoice.changed", "I", nil)), nil); a.Status != 401 {
		t.Fatalf("after revoke: %+v", a)
	}
}

func TestNATSIngest(t *testing.T) {
	k := harness.Start(t, harness.Options{})
	_, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	_, otherSecret := setup(t, k, "globex", adminv1.KeyScope_KEY_SCOPE_INGEST)
	nc := k.Conn(t)
	request := func(org, key string, body []byte) (string, answer) {
		t.Helper()
		m := nats.NewMsg("kurier.ingest." + org)
		m.Header.Set("Kurier-Key", key)
		m.Data = body
		resp, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var a answer
		if err := json.Unmarshal(resp.Data, &a); err != nil {
			t.Fatalf("reply is not JSON: %s", resp.Data)
		}
		return resp.Header.Get("Kurier-Status"), a
	}
	st, a := request("acme", secret, mustJSON(t, ev("n1", "delivery.changed", "D-1", nil)))
	if st != "202" || !slices.Equal(a.Accepted, []string{"n1"}) {
		t.Fatalf("single: %s %+v", st, a)
	}
	st, a = request("acme", secret, mustJSON(t, []any{ev("n2", "delivery.changed", "D-2", nil), ev("n1", "delivery.changed", "D-1", nil)}))
	if st != "202" || !slices.Equal(a.Accepted, []string{"n2"}) || !slices.Equal(a.Duplicates, []string{"n1"}) {
		t.Fatalf("batch: %s %+v", st, a)
	}
	st, a = request("acme", secret, []byte(`{"specversion":"1.0"}`))
	if st != "400" || a.Error == nil || a.Error.Field != "id" {
		t.Fatalf("bad event: %s %+v", st, a)
	}
	st, a = request("acme", "wrong", mustJSON(t, ev("n3", "delivery.changed", "D", nil)))
	if st != "401" || a.Error == nil || a.Error.Code != "unauthenticated" {
		t.Fatalf("bad key: %s %+v", st, a)
	}
	// A key of one org cannot post into another, and is told no more than
	// an unknown key is.
	st, a = request("acme", otherSecret, mustJSON(t, ev("n4", "delivery.changed", "D", nil)))
	if st != "401" || a.Error == nil || a.Error.Code != "unauthenticated" {
		t.Fatalf("foreign key: %s %+v", st, a)
	}
	if got := ids(stored(t, k, "acme")); !slices.Equal(got, []string{"n1", "n2"}) {
		t.Fatalf("stored %v", got)
	}
	if got := stored(t, k, "globex"); len(got) != 0 {
		t.Fatalf("globex got %v", ids(got))
	}
}

// TestSIGTERMKeepsAcceptedEvents stops kurier while senders are posting:
// it must exit 0, and after a restart every event that got 202 is there.
func TestSIGTERMKeepsAcceptedEvents(t *testing.T) {
	dir := t.TempDir()
	k := harness.Start(t, harness.Options{DataDir: dir})
	_, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)

	var mu sync.Mutex
	var accepted []string
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for w := range 8 {
		wg.Go(func() {
			client := &http.Client{Timeout: 30 * time.Second}
			for i := 0; ; i++ {
				batch := []any{ev(fmt.Sprintf("w%d-%d-a", w, i), "invoice.changed", "I", nil), ev(fmt.Sprintf("w%d-%d-b", w, i), "invoice.changed", "J", nil)}
				req, _ := http.NewRequest(http.MethodPost, k.HTTP+"/v1/events", bytes.NewReader(mustJSON(t, batch)))
				req.Header.Set("Content-Type", "application/cloudevents-batch+json")
				req.Header.Set("Authorization", "Bearer "+secret)
				resp, err := client.Do(req)
				if err != nil {
					return // the server has stopped
				}
				var a answer
				_ = json.NewDecoder(resp.Body).Decode(&a)
				resp.Body.Close()
				if resp.StatusCode == 202 {
					mu.Lock()
					accepted = append(accepted, a.Accepted...)
					mu.Unlock()
					if i == 5 {
						once.Do(func() { close(started) })
					}
				}
			}
		})
	}
	<-started
	if code := k.Stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, k.Logs())
	}
	wg.Wait()
	if len(accepted) < 40 {
		t.Fatalf("only %d events accepted before the stop", len(accepted))
	}

	k = harness.Start(t, harness.Options{DataDir: dir})
	have := map[string]bool{}
	for _, id := range ids(stored(t, k, "acme")) {
		have[id] = true
	}
	lost := 0
	for _, id := range accepted {
		if !have[id] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d accepted events lost", lost, len(accepted))
	}
	t.Logf("%d accepted events all kept across SIGTERM", len(accepted))
}

func TestAdminAPI(t *testing.T) {
	k := harness.Start(t, harness.Options{})
	ctx := context.Background()
	adm := k.Admin(t)
	org, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme", DisplayName: "ACME GmbH"})
	if err != nil || org.GetOrgId() != "acme" || org.GetDisplayName() != "ACME GmbH" || org.GetCreateTime() == nil {
		t.Fatalf("create: %v %v", org, err)
	}
	if _, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("duplicate: %v", err)
	}
	for _, id := range []string{"", "a", "Acme", "-acme", "acme.x", "acme*", strings.Repeat("a", 33), "ac/me"} {
		_, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: id})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "org_id") {
			t.Errorf("org id %q: %v", id, err)
		}
	}
	if _, err := adm.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("get missing: %v", err)
	}
	if _, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "globex"}); err != nil {
		t.Fatal(err)
	}
	list, err := adm.ListOrgs(ctx, &adminv1.ListOrgsRequest{})
	if err != nil || len(list.GetOrgs()) != 2 || list.GetOrgs()[0].GetOrgId() != "acme" || list.GetOrgs()[1].GetOrgId() != "globex" {
		t.Fatalf("list: %v %v", list, err)
	}

	if _, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "acme"}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "scopes") {
		t.Fatalf("no scopes: %v", err)
	}
	if _, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "nope", Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}}); status.Code(err) != codes.NotFound {
		t.Fatalf("key of missing org: %v", err)
	}
	key, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "acme", Description: "erp",
		Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_CHANGES}})
	if err != nil || !strings.HasPrefix(key.GetSecret(), "kur_") || len(key.GetKey().GetScopes()) != 2 {
		t.Fatalf("create key: %v %v", key, err)
	}
	keys, err := adm.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: "acme"})
	if err != nil || len(keys.GetKeys()) != 1 || keys.GetKeys()[0].GetKeyId() != key.GetKey().GetKeyId() {
		t.Fatalf("list keys: %v %v", keys, err)
	}
	if g, _ := adm.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: "globex"}); len(g.GetKeys()) != 0 {
		t.Fatalf("globex sees keys %v", g)
	}
	if _, err := adm.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: "../x"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("revoke bad id: %v", err)
	}
	if _, err := adm.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: "0123456789abcdef"}); status.Code(err) != codes.NotFound {
		t.Fatalf("revoke unknown: %v", err)
	}

	// The key store holds no secret, only its hash.
	js, _ := jetstream.New(k.Conn(t))
	kv, err := js.KeyValue(ctx, "keys")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, key.GetKey().GetKeyId())
	if err != nil || bytes.Contains(e.Value(), []byte(key.GetSecret()[4:])) {
		t.Fatalf("stored key %s (%v) holds the secret", e.Value(), err)
	}

	// Deleting an org deletes its keys and events.
	if a := post(t, k, key.GetSecret(), "application/cloudevents+json", mustJSON(t, ev("d1", "invoice.changed", "I", nil)), nil); a.Status != 202 {
		t.Fatalf("post: %+v", a)
	}
	if _, err := adm.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: "acme"}); status.Code(err) != codes.NotFound {
		t.Fatalf("get deleted: %v", err)
	}
	if a := post(t, k, key.GetSecret(), "application/cloudevents+json", mustJSON(t, ev("d2", "invoice.changed", "I", nil)), nil); a.Status != 401 {
		t.Fatalf("key of deleted org: %+v", a)
	}
	if got := stored(t, k, "acme"); len(got) != 0 {
		t.Fatalf("events of deleted org remain: %v", ids(got))
	}
}

func TestAdminAuth(t *testing.T) {
	k := harness.Start(t, harness.Options{})
	for _, tok := range []string{"wrong-token-wrong-token", ""} {
		_, err := k.AdminWith(t, tok).ListOrgs(context.Background(), &adminv1.ListOrgsRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("token %q: %v", tok, err)
		}
	}
	// Probes and reflection need no token.
	cc, err := grpc.NewClient(k.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hr, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "kurier.admin.v1.AdminService"})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}
	rc, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rc.Recv()
	if err != nil || !strings.Contains(rr.String(), "kurier.admin.v1.AdminService") {
		t.Fatalf("reflection: %v %v", rr, err)
	}
}

func TestGeneratedAdminTokenAndProbes(t *testing.T) {
	dir := t.TempDir()
	k := harness.Start(t, harness.Options{DataDir: dir, Token: "-"})
	fi, err := os.Stat(filepath.Join(dir, "admin-token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin-token file: %v %v", fi, err)
	}
	if !strings.Contains(k.Stdout(), k.Token) {
		t.Fatalf("token not printed on first start: %q", k.Stdout())
	}
	if strings.Contains(k.Logs(), k.Token) {
		t.Fatal("the admin token appears in the log")
	}
	if _, err := k.Admin(t).ListOrgs(context.Background(), &adminv1.ListOrgsRequest{}); err != nil {
		t.Fatalf("generated token refused: %v", err)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/nope": 404} {
		resp, err := http.Get(k.HTTP + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
		if path == "/metrics" && !bytes.Contains(b, []byte("go_goroutines")) {
			t.Errorf("metrics lack the runtime collector")
		}
	}
	if code := k.Stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// A second start reuses the token and does not print it again.
	k2 := harness.Start(t, harness.Options{DataDir: dir, Token: "-"})
	if k2.Token != k.Token || strings.Contains(k2.Stdout(), k.Token) {
		t.Fatalf("second start: token %q, stdout %q", k2.Token, k2.Stdout())
	}
}

// TestSeparateServices runs ingest and admin as their own processes
// against the NATS server of a `kurier all`, as a cluster deployment does.
func TestSeparateServices(t *testing.T) {
	base := harness.Start(t, harness.Options{})
	adm := harness.Start(t, harness.Options{Role: "admin", NATSURL: base.NATS})
	ing := harness.Start(t, harness.Options{Role: "ingest", NATSURL: base.NATS})
	_, secret := setup(t, adm, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	if a := post(t, ing, secret, "application/cloudevents+json", mustJSON(t, ev("s1", "invoice.changed", "I", nil)), nil); a.Status != 202 {
		t.Fatalf("post to the ingest service: %+v", a)
	}
	if got := ids(stored(t, base, "acme")); !slices.Equal(got, []string{"s1"}) {
		t.Fatalf("stored %v", got)
	}
	if code := ing.Stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("ingest exit %d", code)
	}
}

func TestCommandLine(t *testing.T) {
	bin := harness.Binary(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "kurier ") {
		t.Fatalf("version: %q %v", out, err)
	}
	cmd := exec.Command(bin, "admin")
	cmd.Env = append(os.Environ(), "KURIER_ADMIN_TOKEN=", "KURIER_NATS_URL=nats://127.0.0.1:1")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "KURIER_ADMIN_TOKEN") {
		t.Fatalf("admin without a token: %q %v", out, err)
	}
	out, err = exec.Command(bin, "nonsense").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "unknown command") {
		t.Fatalf("unknown command: %q %v", out, err)
	}
}

func jsOf(t *testing.T, k *harness.Kurier) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(k.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	return js
}
