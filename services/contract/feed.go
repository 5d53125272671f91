package contract

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/natstest"
)

// Change is one changed document in an answer of GET /v1/changes: the
// latest event of its subject, its data in one of the data members.
type Change struct {
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      []byte          `json:"data_base64"`
}

// Changed is the answer of GET /v1/changes: the changes, or the error
// form in Answer.
type Changed struct {
	Answer
	Changes []Change `json:"changes"`
	Cursor  string   `json:"cursor"`
	More    bool     `json:"more"`
}

// Changes reads the change feed: GET /v1/changes?<query> with key as
// bearer token (none if empty). The answer, whatever its status, must be
// JSON.
func (tg Target) Changes(t testing.TB, key, query string) Changed {
	t.Helper()
	h := map[string]string{}
	if key != "" {
		h["Authorization"] = "Bearer " + key
	}
	a := Do(t, Request{Method: http.MethodGet, URL: tg.HTTP + "/v1/changes?" + query, Header: h})
	c := Changed{Answer: a}
	if ct := a.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET /v1/changes?%s: answer %d of content type %q: %s", query, a.Status, ct, a.Body)
	}
	if err := json.Unmarshal(a.Body, &c); err != nil {
		t.Fatalf("GET /v1/changes?%s: answer %d is not JSON: %s", query, a.Status, a.Body)
	}
	return c
}

// Feed is the contract of the Collmex change feed: pings and GET /v1/changes.
func Feed(t *testing.T, tg Target) {
	t.Run("Ping", func(t *testing.T) { feedPing(t, tg) })
	t.Run("PingGap", func(t *testing.T) { feedPingGap(t, tg) })
	t.Run("Changes", func(t *testing.T) { feedChanges(t, tg) })
	t.Run("Refusals", func(t *testing.T) { feedRefusals(t, tg) })
	t.Run("Acknowledge", func(t *testing.T) { feedAcknowledge(t, tg) })
	t.Run("InactiveAndDeleted", func(t *testing.T) { feedInactiveAndDeleted(t, tg) })
}

// feedDelivery is how long a ping may take beyond the delay to arrive.
const feedDelivery = 30 * time.Second

// feedOrg makes an org whose key may post events and read the feed.
func feedOrg(t *testing.T, tg Target) (org, key string) {
	t.Helper()
	return tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_CHANGES)
}

// feedSub makes an active ping subscription of the org's system for the
// types, pinging url.
func feedSub(t *testing.T, tg Target, org, system, url string, types ...string) *adminv1.CreateSubscriptionResponse {
	t.Helper()
	resp, err := tg.Admin.CreateSubscription(context.Background(), &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: org, System: system, Name: system + " hook", EventTypes: types,
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: url, Active: true,
	}})
	if err != nil {
		t.Fatalf("create the ping subscription of %s: %v", system, err)
	}
	return resp
}

// feedChange posts one change of a document, with data {"v": v}.
func feedChange(t *testing.T, tg Target, key, typ, doc string, v int) {
	t.Helper()
	tg.Publish(t, key, Event(fmt.Sprintf("%s-%s-%d-%d", typ, doc, v, time.Now().UnixNano()), typ, doc, map[string]int{"v": v}))
}

// feedState reads a subscription as the admin API has it.
func feedState(t *testing.T, tg Target, id string) *adminv1.Subscription {
	t.Helper()
	s, err := tg.Admin.GetSubscription(context.Background(), &adminv1.GetSubscriptionRequest{SubscriptionId: id})
	if err != nil {
		t.Fatalf("get subscription %s: %v", id, err)
	}
	return s
}

// feedSettled waits until the subscription has no ping pending and has
// been pinged unacked times: then no ping is on its way.
func feedSettled(t *testing.T, tg Target, id string, unacked uint32) {
	t.Helper()
	natstest.WaitForErr(t, feedDelivery, fmt.Sprintf("subscription %s settled after %d pings", id, unacked), func() error {
		s := feedState(t, tg, id)
		if s.GetUnacked() != unacked || s.GetLastNotifiedAt() == nil || s.GetPendingSince() != nil {
			return fmt.Errorf("unacked %d, last notified %v, pending since %v", s.GetUnacked(), s.GetLastNotifiedAt(), s.GetPendingSince())
		}
		return nil
	})
}

// A matching change is pinged NotifyDelay later: GET of the URL as
// configured, empty, signed over the empty body; the changes while the
// ping is pending are coalesced into it, and a change of a type the
// subscription lacks pings nothing. The changes are posted right after
// CreateSubscription answered: they are pinged all the same.
func feedPing(t *testing.T, tg Target) {
	org, key := feedOrg(t, tg)
	prefix := "/" + org + "/"
	sub := feedSub(t, tg, org, "shop", tg.Hooks.URL+prefix+"collmex?token=abc", "5")
	if got := sub.GetSubscription().GetEventTypes(); len(got) != 1 || got[0] != "invoice.changed" {
		t.Fatalf("Collmex code 5 stored as %v, want invoice.changed", got)
	}
	id := sub.GetSubscription().GetSubscriptionId()

	first := time.Now()
	for i := range 5 {
		feedChange(t, tg, key, "invoice.changed", fmt.Sprint("INV-", i), i)
	}
	feedChange(t, tg, key, "quote.changed", "Q-1", 0)
	h := tg.Hooks.WaitUnder(t, feedDelivery, prefix, 1)[0]
	if gap := h.At.Sub(first); gap < tg.NotifyDelay {
		t.Errorf("ping %v after the first change, want at least the delay %v", gap, tg.NotifyDelay)
	}
	if h.Method != http.MethodGet || h.Path != prefix+"collmex?token=abc" || h.Body != "" {
		t.Errorf("ping %s %s %q, want GET %scollmex?token=abc without a body", h.Method, h.Path, h.Body, prefix)
	}
	if ua := h.Header.Get("User-Agent"); !strings.HasPrefix(ua, "kurier/") {
		t.Errorf("ping's User-Agent %q, want kurier/<version>", ua)
	}
	wh, err := standardwebhooks.NewWebhook(sub.GetSigningSecret())
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(nil, h.Header); err != nil {
		t.Errorf("ping's signature does not verify: %v (%v)", err, h.Header)
	}
	// Six changes, one ping, and none to come.
	feedSettled(t, tg, id, 1)
	if hits := tg.Hooks.Under(t, prefix); len(hits) != 1 {
		t.Fatalf("%d pings for 5 coalesced changes, want 1", len(hits))
	}
}

// While changes keep coming, pings keep coming, never closer than the
// delay, and a change after a ping leads to another one.
func feedPingGap(t *testing.T, tg Target) {
	org, key := feedOrg(t, tg)
	prefix := "/" + org + "/"
	feedSub(t, tg, org, "shop", tg.Hooks.URL+prefix, "invoice.changed")
	stop := time.Now().Add(7 * tg.NotifyDelay / 2)
	var last time.Time
	for i := 0; time.Now().Before(stop); i++ {
		feedChange(t, tg, key, "invoice.changed", "INV-1", i)
		last = time.Now()
		time.Sleep(tg.NotifyDelay / 10) // the pace of the changes, not a wait for an outcome
	}
	natstest.WaitForErr(t, feedDelivery, "a ping after the last change", func() error {
		hits := tg.Hooks.Under(t, prefix)
		if len(hits) == 0 || !hits[len(hits)-1].At.After(last) {
			return fmt.Errorf("%d pings, none after the last change", len(hits))
		}
		return nil
	})
	hits := tg.Hooks.Under(t, prefix)
	if len(hits) < 3 {
		t.Errorf("%d pings over %v of changes with a delay of %v, want at least 3", len(hits), 7*tg.NotifyDelay/2, tg.NotifyDelay)
	}
	for i := 1; i < len(hits); i++ {
		if gap := hits[i].At.Sub(hits[i-1].At); gap < tg.NotifyDelay {
			t.Errorf("pings %d and %d only %v apart, want at least %v", i-1, i, gap, tg.NotifyDelay)
		}
	}
}

// feedDocs answers the changes as subject=v, in order.
func feedDocs(c Changed) string {
	var out []string
	for _, ch := range c.Changes {
		var d struct{ V int }
		if json.Unmarshal(ch.Data, &d) != nil {
			out = append(out, ch.Subject+"=?")
			continue
		}
		out = append(out, fmt.Sprintf("%s=%d", ch.Subject, d.V))
	}
	return strings.Join(out, " ")
}

// feedRead reads the feed, which must answer 200.
func feedRead(t *testing.T, tg Target, key, query string) Changed {
	t.Helper()
	c := tg.Changes(t, key, query)
	var doc map[string]json.RawMessage
	_ = json.Unmarshal(c.Body, &doc)
	if c.Status != http.StatusOK || !strings.HasPrefix(string(doc["changes"]), "[") || !strings.HasPrefix(c.Cursor, "c") {
		t.Fatalf("GET /v1/changes?%s: %d %.300s, want 200 with changes and a cursor", query, c.Status, c.Body)
	}
	return c
}

// The feed answers the latest version per document, oldest first, of
// what changed since the system's last query (Collmex mode), or since
// the cursor acknowledged (cursor mode); each system has its own
// position.
func feedChanges(t *testing.T, tg Target) {
	_, key := feedOrg(t, tg)
	for i, doc := range []string{"A", "B", "A", "C", "B", "A"} {
		feedChange(t, tg, key, "invoice.changed", doc, i)
	}
	feedChange(t, tg, key, "quote.changed", "Q", 9)

	c := feedRead(t, tg, key, "system=shop&type=5")
	if got := feedDocs(c); got != "C=3 B=4 A=5" || c.More {
		t.Fatalf("first query: %q more=%v, want \"C=3 B=4 A=5\" and no more", got, c.More)
	}
	for _, ch := range c.Changes {
		if ch.Type != "invoice.changed" || ch.ID == "" || ch.Time == "" {
			t.Fatalf("change %+v, want its id, type invoice.changed and time", ch)
		}
	}
	if c := feedRead(t, tg, key, "system=shop&type=invoice.changed"); len(c.Changes) != 0 {
		t.Fatalf("second query repeats %q", feedDocs(c))
	}
	feedChange(t, tg, key, "invoice.changed", "B", 6)
	if got := feedDocs(feedRead(t, tg, key, "system=shop&type=invoice.changed")); got != "B=6" {
		t.Fatalf("after one more change: %q, want \"B=6\"", got)
	}
	if got := feedDocs(feedRead(t, tg, key, "system=crm&type=invoice.changed")); got != "C=3 A=5 B=6" {
		t.Fatalf("another system: %q, want \"C=3 A=5 B=6\"", got)
	}

	// Cursor mode with a limit: pages, and a receiver that crashes before
	// processing a page gets it again by passing its last cursor.
	c1 := feedRead(t, tg, key, "system=erp&type=invoice.changed&cursor=&limit=2")
	if got := feedDocs(c1); got != "B=1 A=2" || !c1.More {
		t.Fatalf("page 1: %q more=%v, want \"B=1 A=2\" and more", got, c1.More)
	}
	c2 := feedRead(t, tg, key, "system=erp&type=invoice.changed&limit=2&cursor="+c1.Cursor)
	again := feedRead(t, tg, key, "system=erp&type=invoice.changed&limit=2&cursor="+c1.Cursor)
	if feedDocs(c2) != feedDocs(again) || len(c2.Changes) == 0 {
		t.Fatalf("page 2 %q, asked again %q", feedDocs(c2), feedDocs(again))
	}
	c3 := feedRead(t, tg, key, "system=erp&type=invoice.changed&cursor="+c2.Cursor)
	all := strings.Join([]string{feedDocs(c1), feedDocs(c2), feedDocs(c3)}, " ")
	if c3.More || strings.Contains(all, "A=0") || !strings.Contains(all, "B=6") {
		t.Fatalf("pages %q, the last with more=%v", all, c3.More)
	}
	if c := feedRead(t, tg, key, "system=erp&type=invoice.changed&cursor="+c3.Cursor); len(c.Changes) != 0 || c.Cursor != c3.Cursor {
		t.Fatalf("after the last page: %q cursor %s, want nothing and cursor %s", feedDocs(c), c.Cursor, c3.Cursor)
	}
}

// Bad queries are 400 naming the parameter, a missing or unknown key 401,
// a key without the changes scope 403, all in the error form.
func feedRefusals(t *testing.T, tg Target) {
	_, key := feedOrg(t, tg)
	_, ingestOnly := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
	cases := []struct {
		name, key, query string
		status           int
		code, field      string
	}{
		{"no system", key, "type=invoice.changed", 400, "invalid_parameter", "system"},
		{"a system of 21 characters", key, "type=5&system=" + strings.Repeat("s", 21), 400, "invalid_parameter", "system"},
		{"LF in the system", key, "type=5&system=shop%0A", 400, "invalid_parameter", "system"},
		{"no type", key, "system=shop", 400, "invalid_parameter", "type"},
		{"an upper-case type", key, "system=shop&type=Invoice", 400, "invalid_parameter", "type"},
		{"a wildcard type", key, "system=shop&type=invoice.%3E", 400, "invalid_parameter", "type"},
		{"Collmex code 10", key, "system=shop&type=10", 400, "invalid_parameter", "type"},
		{"limit 0", key, "system=shop&type=5&limit=0", 400, "invalid_parameter", "limit"},
		{"limit 1001", key, "system=shop&type=5&limit=1001", 400, "invalid_parameter", "limit"},
		{"a limit that is not a number", key, "system=shop&type=5&limit=x", 400, "invalid_parameter", "limit"},
		{"a cursor that is not one", key, "system=shop&type=5&cursor=x", 400, "invalid_parameter", "cursor"},
		{"a cursor past the stream", key, "system=shop&type=5&cursor=c18446744073709551615", 400, "invalid_parameter", "cursor"},
		{"no key", "", "system=shop&type=5", 401, "unauthenticated", "Authorization"},
		{"an unknown key", "kur_0123456789abcdef_" + strings.Repeat("A", 43), "system=shop&type=5", 401, "unauthenticated", "Authorization"},
		{"a key without the changes scope", ingestOnly, "system=shop&type=5", 403, "forbidden", "Authorization"},
	}
	for _, c := range cases {
		a := tg.Changes(t, c.key, c.query).Answer
		if e, ok := a.ErrorForm(); a.Status != c.status || !ok || e.Code != c.code || e.Field != c.field {
			t.Errorf("%s: %d %.300s, want %d %s naming %s", c.name, a.Status, a.Body, c.status, c.code, c.field)
		}
	}
	a := Do(t, Request{Method: http.MethodPost, URL: tg.HTTP + "/v1/changes?system=shop&type=5", Header: map[string]string{"Authorization": "Bearer " + key}})
	if e, ok := a.ErrorForm(); a.Status != http.StatusMethodNotAllowed || !ok || e.Field != "method" || a.Header.Get("Allow") == "" {
		t.Errorf("POST /v1/changes: %d %v %.300s, want 405 naming method with Allow", a.Status, a.Header, a.Body)
	}
}

// Every ping raises the subscription's unacked counter; reading the feed
// of its system and type resets it, as does switching it off and on. A
// change right after CreateSubscription, or after SetSubscriptionActive
// switched it on again, is pinged.
func feedAcknowledge(t *testing.T, tg Target) {
	org, key := feedOrg(t, tg)
	prefix := "/" + org + "/"
	id := feedSub(t, tg, org, "shop", tg.Hooks.URL+prefix, "invoice.changed").GetSubscription().GetSubscriptionId()
	ctx := context.Background()

	feedChange(t, tg, key, "invoice.changed", "INV-1", 1)
	tg.Hooks.WaitUnder(t, feedDelivery, prefix, 1)
	feedSettled(t, tg, id, 1)
	feedRead(t, tg, key, "system=crm&type=invoice.changed") // another system's read acknowledges nothing
	if got := feedState(t, tg, id).GetUnacked(); got != 1 {
		t.Fatalf("unacked %d after another system read the feed, want 1", got)
	}
	feedRead(t, tg, key, "system=shop&type=5")
	if got := feedState(t, tg, id).GetUnacked(); got != 0 {
		t.Fatalf("unacked %d after the system read the feed, want 0", got)
	}

	feedChange(t, tg, key, "invoice.changed", "INV-1", 2)
	tg.Hooks.WaitUnder(t, feedDelivery, prefix, 2)
	feedSettled(t, tg, id, 1)
	for _, on := range []bool{false, true} {
		if _, err := tg.Admin.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: id, Active: on}); err != nil {
			t.Fatalf("switch the subscription active=%v: %v", on, err)
		}
	}
	if s := feedState(t, tg, id); s.GetUnacked() != 0 || !s.GetActive() {
		t.Fatalf("after off and on: unacked %d, active %v; want 0 and active", s.GetUnacked(), s.GetActive())
	}
	feedChange(t, tg, key, "invoice.changed", "INV-1", 3)
	tg.Hooks.WaitUnder(t, feedDelivery, prefix, 3)
}

// A switched-off or deleted subscription gets no ping: neither the one
// pending at the switch nor one for a change after it.
func feedInactiveAndDeleted(t *testing.T, tg Target) {
	org, key := feedOrg(t, tg)
	ctx := context.Background()
	base := tg.Hooks.URL + "/" + org
	off := feedSub(t, tg, org, "off", base+"/off", "invoice.changed").GetSubscription().GetSubscriptionId()
	gone := feedSub(t, tg, org, "gone", base+"/gone", "invoice.changed").GetSubscription().GetSubscriptionId()
	// A subscription to another type, its changes posted after each of
	// invoice.changed: its ping comes after any the other two would get.
	feedSub(t, tg, org, "witness", base+"/witness", "quote.changed")

	// A change right after the creates: both have a ping pending.
	feedChange(t, tg, key, "invoice.changed", "INV-1", 1)
	natstest.WaitForErr(t, feedDelivery, "pings pending", func() error {
		for _, id := range []string{off, gone} {
			if feedState(t, tg, id).GetPendingSince() == nil {
				return fmt.Errorf("none pending for %s", id)
			}
		}
		return nil
	})
	if _, err := tg.Admin.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: off}); err != nil {
		t.Fatalf("switch off: %v", err)
	}
	if _, err := tg.Admin.DeleteSubscription(ctx, &adminv1.DeleteSubscriptionRequest{SubscriptionId: gone}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if s := feedState(t, tg, off); s.GetActive() || s.GetPendingSince() != nil {
		t.Errorf("switched off: active %v, pending since %v; want inactive with no ping pending", s.GetActive(), s.GetPendingSince())
	}
	feedChange(t, tg, key, "quote.changed", "Q-1", 1)
	tg.Hooks.WaitUnder(t, feedDelivery, "/"+org+"/witness", 1)
	feedChange(t, tg, key, "invoice.changed", "INV-2", 2)
	feedChange(t, tg, key, "quote.changed", "Q-2", 2)
	tg.Hooks.WaitUnder(t, feedDelivery, "/"+org+"/witness", 2)
	for _, p := range []string{"/off", "/gone"} {
		if hits := tg.Hooks.Under(t, "/"+org+p); len(hits) != 0 {
			t.Errorf("%d pings to %s, want none", len(hits), p)
		}
	}
}
