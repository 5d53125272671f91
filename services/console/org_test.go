package console

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/book"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// queue makes a queue of org holding n messages, as the queue API does.
func (e *env) queue(t *testing.T, org string, n int) string {
	t.Helper()
	ctx := context.Background()
	store, err := queues.Open(ctx, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	id := queues.NewID()
	if err := store.Create(ctx, queues.Queue{ID: id, Org: org, Created: time.Now()}, 10); err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := store.Post(ctx, id, []byte(`{"type":"invoice.changed"}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// TestOrgOverview: the overview shows the org's subscriptions with their
// state (a failing one with its badge and since when), its queues, its
// address book with the last sync, and its keys; names and messages
// others chose stay text.
func TestOrgOverview(t *testing.T) {
	e := start(t)
	ctx := callToken(context.Background())
	if _, err := e.api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme", DisplayName: hostile}); err != nil {
		t.Fatal(err)
	}
	failing := payloadSub(t, e, "acme", hostile)
	healthy := payloadSub(t, e, "acme", "healthy")
	since := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	store, err := subs.Open(context.Background(), e.conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.UpdateState(context.Background(), failing, func(st *subs.PingState) error {
		st.FailingSince = since
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.logAttempts(t, attempt("acme", failing, "ev-1", "retry", 503), attempt("acme", healthy, "ev-2", "delivered", 200))
	ping, err := e.api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "collmex", EventTypes: []string{"1"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: "https://collmex.example/ping"}})
	if err != nil {
		t.Fatal(err)
	}
	q := e.queue(t, "acme", 2)
	if _, err := e.api.CreatePerson(ctx, &adminv1.CreatePersonRequest{OrgId: "acme", Person: &adminv1.Person{ExternalDbId: "p1", LastName: "Muster"}}); err != nil {
		t.Fatal(err)
	}
	persons, err := book.Open(context.Background(), e.conn, book.DefaultLocking(), natstest.Log)
	if err != nil {
		t.Fatal(err)
	}
	if err := persons.RecordSync(context.Background(), "acme", book.LastSync{Time: time.Now(), Source: "dir", Status: 503,
		Error: hostile, Field: "personList[3].mobil"}); err != nil {
		t.Fatal(err)
	}

	// Without a session the page sends to the sign-in.
	if code, _, h := e.get(t, "/console/orgs/acme"); code != http.StatusSeeOther || h.Get("Location") != "/console/login" {
		t.Fatalf("no session: %d %v", code, h)
	}
	e.signIn(t)
	code, body, _ := e.get(t, "/console/orgs/acme")
	if code != http.StatusOK {
		t.Fatalf("overview: %d %s", code, body)
	}
	if strings.Contains(body, "<script>alert") || !strings.Contains(body, html.EscapeString(hostile)) {
		t.Fatalf("hostile text not escaped:\n%s", body)
	}
	row := func(id string) string {
		t.Helper()
		_, r, ok := strings.Cut(body, `<tr data-subscription-id="`+id+`">`)
		if !ok {
			t.Fatalf("no row of %s in\n%s", id, body)
		}
		r, _, _ = strings.Cut(r, "</tr>")
		return r
	}
	if r := row(failing); !strings.Contains(r, `badge failing`) || !strings.Contains(r, "since "+since.Format("2006-01-02 15:04:05Z")) ||
		!strings.Contains(r, "retry") || !strings.Contains(r, "503") {
		t.Errorf("failing subscription's row:\n%s", r)
	}
	if r := row(healthy); strings.Contains(r, "failing") || !strings.Contains(r, "delivered") || !strings.Contains(r, "badge active") {
		t.Errorf("healthy subscription's row:\n%s", r)
	}
	if r := row(ping.GetSubscription().GetSubscriptionId()); !strings.Contains(r, "ping") || !strings.Contains(r, "<td>0</td>") {
		t.Errorf("ping subscription's row:\n%s", r)
	}
	for _, want := range []string{
		"<code>" + q + "</code></td><td>2</td>",                              // the queue's depth
		"<dt>Persons</dt><dd>1</dd>",                                         // the address book
		"failed (503)", "personList[3].mobil: " + html.EscapeString(hostile), // the last sync
		`href="/console/orgs/acme/deliveries"`, `href="/console/orgs/acme/deadletters"`, `href="/console/orgs/acme/plots/deliveries.svg?window=hour"`,
		`href="/console/orgs/acme/subscriptions/new?mode=queue"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if code, _, _ := e.get(t, "/console/orgs/nobody"); code != http.StatusNotFound {
		t.Errorf("unknown org: %d", code)
	}
}

// TestKeys: a key made through the form shows its secret once, and not
// on the overview; revoking it works with the form's token only, and
// only under its own org.
func TestKeys(t *testing.T) {
	e := start(t)
	ctx := callToken(context.Background())
	for _, org := range []string{"acme", "other"} {
		if _, err := e.api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: org}); err != nil {
			t.Fatal(err)
		}
	}
	csrf := e.signIn(t)
	code, body, _ := e.post(t, "/console/orgs/acme/keys", url.Values{"csrf": {csrf}, "scope": {"ingest", "partner"}, "description": {hostile}})
	if code != http.StatusOK {
		t.Fatalf("make a key: %d %s", code, body)
	}
	_, rest, ok := strings.Cut(body, `<code class="secret" id="secret">`)
	if !ok {
		t.Fatalf("no secret shown:\n%s", body)
	}
	secret, _, _ := strings.Cut(rest, "<")
	keys, err := e.api.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.GetKeys()) != 1 || secret == "" || keys.GetKeys()[0].GetDescription() != hostile || len(keys.GetKeys()[0].GetScopes()) != 2 {
		t.Fatalf("keys %v, secret %q", keys, secret)
	}
	id := keys.GetKeys()[0].GetKeyId()
	_, body, _ = e.get(t, "/console/orgs/acme")
	if strings.Contains(body, secret) || !strings.Contains(body, "ingest, partner") || !strings.Contains(body, html.EscapeString(hostile)) {
		t.Fatalf("overview's keys:\n%s", body)
	}

	for _, bad := range []url.Values{{"scope": {"root"}}, {}} {
		bad.Set("csrf", csrf)
		if code, body, _ := e.post(t, "/console/orgs/acme/keys", bad); code != http.StatusBadRequest || !strings.Contains(body, "<code>scopes</code>") {
			t.Errorf("key with scopes %v: %d %s", bad["scope"], code, body)
		}
	}
	revoke := "/console/orgs/acme/keys/" + id + "/revoke"
	revoked := func() bool {
		keys, err := e.api.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		return len(keys.GetKeys()) != 1 || keys.GetKeys()[0].GetRevokeTime() != nil
	}
	if code, _, _ := e.post(t, revoke, nil); code != http.StatusForbidden || revoked() {
		t.Fatalf("revoke without the form's token: %d", code)
	}
	if code, _, _ := e.post(t, "/console/orgs/other/keys/"+id+"/revoke", url.Values{"csrf": {csrf}}); code != http.StatusNotFound || revoked() {
		t.Fatalf("revoke under another org: %d", code)
	}
	if code, _, h := e.post(t, revoke, url.Values{"csrf": {csrf}}); code != http.StatusSeeOther || h.Get("Location") != "/console/orgs/acme#keys" || !revoked() {
		t.Fatalf("revoke: %d %v", code, h)
	}
	if _, body, _ := e.get(t, "/console/orgs/acme"); !strings.Contains(body, "badge off\">revoked") || strings.Contains(body, revoke) {
		t.Errorf("revoked key on the overview:\n%s", body)
	}
}
