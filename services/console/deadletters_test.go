package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
)

func eventJSON(id string) []byte {
	return []byte(fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/erp","type":"invoice.changed","subject":"INV-1","data":{"number":"INV-1"}}`, id))
}

// deadLetter puts a delivery of event id into the dead letters of org's
// subscription sub, as the dispatcher does when its retries run out, and
// answers its delivery id.
func (e *env) deadLetter(t *testing.T, org, sub string, seq uint64, id string) string {
	t.Helper()
	m := bus.DeliveryTask(sub, seq, time.Now(), eventJSON(id), "")
	m.Subject = bus.DeadSubject(org, sub)
	m.Header.Del(jetstream.MsgIDHeader)
	if _, err := e.conn.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return bus.WebhookID(sub, "/erp", id)
}

// dead answers the event ids of the dead letters the API lists for org.
func (e *env) dead(t *testing.T, org, sub string) string {
	t.Helper()
	resp, err := e.api.ListDeadLetters(callToken(context.Background()), &adminv1.ListDeadLettersRequest{OrgId: org, SubscriptionId: sub})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range resp.GetDeadLetters() {
		ids = append(ids, d.GetEventId())
	}
	return fmt.Sprint(ids)
}

// TestDeadLetters: the page lists the org's dead letters; redelivering
// one, all of a subscription's, or a time range of its events queues them
// again and says how many; bad input, a subscription of another org or a
// form without its CSRF token change nothing.
func TestDeadLetters(t *testing.T) {
	e := start(t)
	erp := payloadSub(t, e, "acme", "ERP")
	shop := payloadSub(t, e, "acme", "Shop")
	other := payloadSub(t, e, "other", "Other")
	first := e.deadLetter(t, "acme", erp, 7, "e7")
	e.deadLetter(t, "acme", erp, 8, hostile)
	e.deadLetter(t, "acme", shop, 9, "e9")
	e.deadLetter(t, "other", other, 1, "o1")
	csrf := e.signIn(t)

	code, body, _ := e.get(t, "/console/orgs/acme/deadletters")
	if code != http.StatusOK || strings.Contains(body, "<script>alert") {
		t.Fatalf("dead letters: %d\n%s", code, body)
	}
	if got := fmt.Sprint(rows(t, body, "deadletters")); got != "["+first+":e7 "+bus.WebhookID(erp, "/erp", hostile)+":"+hostile+" "+bus.WebhookID(shop, "/erp", "e9")+":e9]" {
		t.Errorf("rows %s", got)
	}
	_, body, _ = e.get(t, "/console/orgs/acme/deadletters?subscription="+shop)
	if got := fmt.Sprint(rows(t, body, "deadletters")); got != "["+bus.WebhookID(shop, "/erp", "e9")+":e9]" {
		t.Errorf("rows of shop %s", got)
	}

	redeliver := func(form url.Values) (int, string) {
		t.Helper()
		code, body, _ := e.post(t, "/console/orgs/acme/deadletters/redeliver", form)
		return code, body
	}
	// Refused, and nothing changes.
	for _, c := range []struct {
		form  url.Values
		code  int
		field string
	}{
		{url.Values{"subscription_id": {erp}, "delivery_id": {first}}, http.StatusForbidden, ""},
		{url.Values{"csrf": {csrf}, "delivery_id": {first}}, http.StatusBadRequest, "subscription_id"},
		{url.Values{"csrf": {csrf}, "subscription_id": {other}}, http.StatusNotFound, ""},
		{url.Values{"csrf": {csrf}, "subscription_id": {erp}, "from": {""}}, http.StatusBadRequest, "from"},
		{url.Values{"csrf": {csrf}, "subscription_id": {erp}, "from": {"soon"}}, http.StatusBadRequest, "from"},
		{url.Values{"csrf": {csrf}, "subscription_id": {erp}, "from": {"2025-01-31T08:00"}, "to": {"2025-01-31T07:59:59"}}, http.StatusBadRequest, "to"},
	} {
		code, body := redeliver(c.form)
		if code != c.code || (c.field != "" && !strings.Contains(body, "<code>"+c.field+"</code>")) {
			t.Errorf("redeliver %v: %d, want %d naming %q:\n%s", c.form, code, c.code, c.field, body)
		}
	}
	if got := e.dead(t, "acme", ""); got != "[e7 "+hostile+" e9]" {
		t.Fatalf("after refused redeliveries: %s", got)
	}
	if got := e.dead(t, "other", ""); got != "[o1]" {
		t.Fatalf("other org's after refused redeliveries: %s", got)
	}

	// One, by the form of its row.
	code, body = redeliver(url.Values{"csrf": {csrf}, "subscription_id": {erp}, "delivery_id": {first}})
	if code != http.StatusOK || !strings.Contains(body, "Queued again: 1 delivery.") {
		t.Fatalf("redeliver one: %d\n%s", code, body)
	}
	if got := rows(t, body, "deadletters"); slices.Contains(got, first+":e7") {
		t.Errorf("the redelivered one still listed: %s", got)
	}
	if got := e.dead(t, "acme", ""); got != "["+hostile+" e9]" {
		t.Errorf("after redelivering one: %s", got)
	}
	// All of a subscription's.
	if code, body = redeliver(url.Values{"csrf": {csrf}, "subscription_id": {erp}}); code != http.StatusOK || !strings.Contains(body, "Queued again: 1 delivery.") {
		t.Fatalf("redeliver all: %d\n%s", code, body)
	}
	if got := e.dead(t, "acme", ""); got != "[e9]" {
		t.Errorf("after redelivering all of erp's: %s", got)
	}

	// A time range: the events of the subscription's types stored in it.
	since := time.Now().UTC().Add(-time.Second)
	for _, id := range []string{"r1", "r2"} {
		if _, err := e.conn.JS.PublishMsg(context.Background(), &nats.Msg{Subject: bus.EventsSubject("acme", "invoice.changed"), Data: eventJSON(id)}); err != nil {
			t.Fatal(err)
		}
	}
	code, body = redeliver(url.Values{"csrf": {csrf}, "subscription_id": {shop}, "from": {since.Format("2006-01-02T15:04:05")}, "to": {""}})
	if code != http.StatusOK || !strings.Contains(body, "Queued again: 2 deliveries.") {
		t.Fatalf("redeliver a range: %d\n%s", code, body)
	}
	code, body = redeliver(url.Values{"csrf": {csrf}, "subscription_id": {shop}, "from": {since.Add(-time.Hour).Format("2006-01-02T15:04")}, "to": {since.Add(-time.Minute).Format("2006-01-02T15:04")}})
	if code != http.StatusOK || !strings.Contains(body, "Queued again: 0 deliveries.") {
		t.Fatalf("redeliver an empty range: %d\n%s", code, body)
	}
	if got := e.dead(t, "acme", ""); got != "[e9]" {
		t.Errorf("a range redelivery took dead letters: %s", got)
	}
	if got := e.dead(t, "other", ""); got != "[o1]" {
		t.Errorf("other org's: %s", got)
	}

	// Without a session: sent to sign in, or refused.
	bare := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := bare.Get(e.url + "/console/orgs/acme/deadletters")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login" {
		t.Errorf("dead letters without a session: %d %v", resp.StatusCode, resp.Header)
	}
	resp, err = bare.PostForm(e.url+"/console/orgs/acme/deadletters/redeliver", url.Values{"csrf": {csrf}, "subscription_id": {shop}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || e.dead(t, "acme", "") != "[e9]" {
		t.Errorf("redeliver without a session: %d", resp.StatusCode)
	}
}
