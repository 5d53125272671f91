package console

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/dispatcher/dispatchertest"
	"kurier.dev/services/natstest"
)

// dispatch runs a dispatcher on the env's bus, which sends test events.
func (e *env) dispatch(t *testing.T) {
	t.Helper()
	dispatchertest.Run(t, e.conn)
}

// shownSecret answers the secret a page shows once.
func shownSecret(t *testing.T, body string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, `<code class="secret" id="secret">`)
	if !ok {
		t.Fatalf("no secret shown:\n%s", body)
	}
	s, _, _ := strings.Cut(rest, "<")
	if !strings.HasPrefix(s, "whsec_") {
		t.Fatalf("secret %q", s)
	}
	return s
}

// formOn answers the form with id on a page.
func formOn(t *testing.T, body, id string) string {
	t.Helper()
	_, f, ok := strings.Cut(body, `id="`+id+`">`)
	if !ok {
		t.Fatalf("no form %s in\n%s", id, body)
	}
	f, _, _ = strings.Cut(f, "</form>")
	return f
}

// TestSubscriptionForms: the form of every mode has every field the API
// has for it.
func TestSubscriptionForms(t *testing.T) {
	e := start(t)
	if _, err := e.api.CreateOrg(callToken(context.Background()), &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	q := e.queue(t, "acme", 0)
	e.signIn(t)
	common := []string{"system", "name", "event_types", "filter"}
	for mode, names := range map[string][]string{
		"ping": {"url"},
		"payload": {"url", "table", "fields", "conditions", "attributes", "headers", "timeout", "payload_format", "ordering",
			"max_in_flight", "retry_schedule", "schedule.daily_at", "schedule.time_zone", "rate_limit_per_second", "rate_limit_burst"},
		"queue": {"queue_id"},
	} {
		code, body, _ := e.get(t, "/console/orgs/acme/subscriptions/new?mode="+mode)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", mode, code, body)
		}
		f := formOn(t, body, "subscription")
		for _, n := range append(append(names, common...), "inactive", "csrf") {
			if !strings.Contains(f, `name="`+n+`"`) {
				t.Errorf("the %s form lacks %s", mode, n)
			}
		}
		if mode == "queue" && (strings.Contains(f, `name="url"`) || !strings.Contains(f, `<option value="`+q+`"`)) {
			t.Errorf("the queue form:\n%s", f)
		}
	}
	if code, body, _ := e.get(t, "/console/orgs/acme/subscriptions/new?mode=carrier-pigeon"); code != http.StatusBadRequest || !strings.Contains(body, "<code>mode</code>") {
		t.Errorf("unknown mode: %d %s", code, body)
	}
	if code, _, _ := e.get(t, "/console/orgs/nobody/subscriptions/new?mode=ping"); code != http.StatusNotFound {
		t.Errorf("unknown org: %d", code)
	}
}

// TestPayloadSubscription: a payload subscription made, changed, switched,
// rotated, previewed, tested and deleted through the forms; the API
// answers what they did, and bad input changes nothing.
func TestPayloadSubscription(t *testing.T) {
	e := start(t)
	ctx := callToken(context.Background())
	if _, err := e.api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, hostile)
	}))
	t.Cleanup(rcv.Close)
	csrf := e.signIn(t)
	count := func() int {
		t.Helper()
		resp, err := e.api.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.GetSubscriptions())
	}
	form := url.Values{"csrf": {csrf}, "mode": {"payload"}, "system": {"erp"}, "name": {hostile}, "event_types": {"invoice.changed 2"},
		"url": {rcv.URL + "/hook"}, "filter": {"data.total > 10.0"}, "table": {"INVOICE"}, "fields": {"id, total"},
		"conditions": {"total>0"}, "attributes": {"(secret) token=abc\nkind = invoice"}, "headers": {"X-Env=test"},
		"timeout": {"20s"}, "payload_format": {"flat"}, "ordering": {"concurrent"}, "max_in_flight": {"3"},
		"retry_schedule": {"5s, 5m, 30m"}, "schedule.daily_at": {"06:30"}, "schedule.time_zone": {"Europe/Berlin"},
		"rate_limit_per_second": {"5"}, "rate_limit_burst": {"2"}, "inactive": {"yes"}}

	// A bad URL or filter is refused naming the field, the form as typed.
	for field, bad := range map[string]string{"url": "ftp://erp.example", "filter": "data.total >", "timeout": "soon", "retry_schedule": "5s, later"} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		f.Set(field, bad)
		code, body, _ := e.post(t, "/console/orgs/acme/subscriptions", f)
		if code != http.StatusBadRequest || !strings.Contains(body, "Field: <code>"+field+"</code>") || !strings.Contains(body, html.EscapeString(bad)) ||
			!strings.Contains(body, "value=\"INVOICE\"") {
			t.Errorf("bad %s: %d\n%s", field, code, body)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("refused forms made %d subscriptions", n)
	}
	code, body, _ := e.post(t, "/console/orgs/acme/subscriptions", form)
	if code != http.StatusOK {
		t.Fatalf("create: %d %s", code, body)
	}
	secret := shownSecret(t, body)
	list, err := e.api.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: "acme"})
	if err != nil || len(list.GetSubscriptions()) != 1 {
		t.Fatalf("after create: %v %v", list, err)
	}
	sub := list.GetSubscriptions()[0]
	id := sub.GetSubscriptionId()
	if sub.GetActive() || sub.GetName() != hostile || len(sub.GetEventTypes()) != 2 || sub.GetTimeout().AsDuration() != 20*time.Second ||
		sub.GetPayloadFormat() != adminv1.PayloadFormat_PAYLOAD_FORMAT_FLAT || sub.GetMaxInFlight() != 3 || len(sub.GetRetrySchedule()) != 3 ||
		sub.GetRetrySchedule()[1].AsDuration() != 5*time.Minute || sub.GetSchedule().GetDailyAt() != "06:30" || sub.GetRateLimitPerSecond() != 5 ||
		sub.GetRateLimitBurst() != 2 || len(sub.GetAttributes()) != 2 || !sub.GetAttributes()[0].GetSecret() || sub.GetAttributes()[1].GetValue() != "invoice" ||
		len(sub.GetHeaders()) != 1 || len(sub.GetFields()) != 2 || sub.GetFilter() != "data.total > 10.0" || sub.GetConditions() != "total>0" {
		t.Fatalf("created %v", sub)
	}

	page := "/console/subscriptions/" + id
	code, body, _ = e.get(t, page)
	if code != http.StatusOK || strings.Contains(body, secret) || strings.Contains(body, "<script>alert") || !strings.Contains(body, html.EscapeString(hostile)) {
		t.Fatalf("page: %d\n%s", code, body)
	}
	f := formOn(t, body, "subscription")
	for _, want := range []string{`value="5s, 5m, 30m"`, "(secret) token=abc\nkind=invoice", `value="20s"`, `value="flat" selected`,
		`value="06:30"`, `value="Europe/Berlin"`, `name="rate_limit_burst" value="2"`, "X-Env=test"} {
		if !strings.Contains(f, want) {
			t.Errorf("the form lacks %q:\n%s", want, f)
		}
	}
	for _, img := range []string{"/console/orgs/acme/plots/deliveries.svg?subscription=" + id + "&amp;window=hour", "/console/orgs/acme/plots/latency.svg?subscription=" + id + "&amp;window=hour"} {
		if !strings.Contains(body, `<img src="`+img+`"`) {
			t.Errorf("no plot %s", img)
		}
	}

	// Updates: a bad one changes nothing, a good one what it says.
	form.Del("mode")
	form.Del("inactive")
	form.Set("url", "not a url")
	if code, body, _ := e.post(t, page, form); code != http.StatusBadRequest || !strings.Contains(body, "Field: <code>url</code>") || !strings.Contains(body, `value="not a url"`) {
		t.Errorf("bad update: %d\n%s", code, body)
	}
	form.Set("url", rcv.URL+"/v2")
	form.Set("retry_schedule", "1m")
	form.Set("schedule.daily_at", "")
	form.Set("schedule.time_zone", "")
	if code, body, h := e.post(t, page, form); code != http.StatusSeeOther || h.Get("Location") != page {
		t.Fatalf("update: %d %s", code, body)
	}
	got := func() *adminv1.Subscription {
		t.Helper()
		s, err := e.api.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := got(); s.GetUrl() != rcv.URL+"/v2" || len(s.GetRetrySchedule()) != 1 || s.GetSchedule() != nil || s.GetMaxInFlight() != 3 {
		t.Fatalf("updated %v", s)
	}

	// Enable and disable.
	for _, active := range []bool{true, false} {
		v := "false"
		if active {
			v = "true"
		}
		if code, _, _ := e.post(t, page+"/active", url.Values{"csrf": {csrf}, "active": {v}}); code != http.StatusSeeOther || got().GetActive() != active {
			t.Fatalf("active=%s: %d", v, code)
		}
	}
	if code, _, _ := e.post(t, page+"/active", url.Values{"csrf": {csrf}, "active": {"maybe"}}); code != http.StatusBadRequest {
		t.Errorf("active=maybe: %d", code)
	}

	// Rotate: a new secret, once.
	code, body, _ = e.post(t, page+"/rotate", url.Values{"csrf": {csrf}})
	if code != http.StatusOK || shownSecret(t, body) == secret {
		t.Fatalf("rotate: %d\n%s", code, body)
	}
	if code, _, _ := e.post(t, page+"/rotate", nil); code != http.StatusForbidden {
		t.Errorf("rotate without the form's token: %d", code)
	}

	// Preview, with the sample's hostile data as text.
	sample := `{"specversion":"1.0","id":"e1","source":"/erp","type":"invoice.changed","subject":"INV-1","data":{"id":"` + hostile + `","total":50}}`
	code, body, _ = e.post(t, page+"/preview", url.Values{"csrf": {csrf}, "sample_event": {sample}})
	if code != http.StatusOK || !strings.Contains(body, "would be delivered") || !strings.Contains(body, "<code>POST "+rcv.URL+"/v2?") ||
		strings.Contains(body, "<script>alert") || !strings.Contains(formOn(t, body, "preview"), html.EscapeString(sample)) {
		t.Fatalf("preview: %d\n%s", code, body)
	}
	if code, body, _ := e.post(t, page+"/preview", url.Values{"csrf": {csrf}, "sample_event": {"{not json"}}); code != http.StatusBadRequest ||
		!strings.Contains(body, "Field: <code>sample_event</code>") || !strings.Contains(body, "{not json") {
		t.Errorf("bad sample: %d\n%s", code, body)
	}

	// A test event, the receiver's answer as text.
	e.dispatch(t)
	natstest.WaitFor(t, 10*time.Second, "a dispatcher answering tests", func() bool {
		code, _, _ := e.post(t, page+"/test", url.Values{"csrf": {csrf}})
		return code == http.StatusOK
	})
	code, body, _ = e.post(t, page+"/test", url.Values{"csrf": {csrf}})
	if code != http.StatusOK || !strings.Contains(body, `<span class="ok">200</span>`) || !strings.Contains(body, "<pre>"+html.EscapeString(hostile)+"</pre>") {
		t.Fatalf("test event: %d\n%s", code, body)
	}

	// Delete, only when confirmed.
	if code, _, _ := e.post(t, page+"/delete", url.Values{"csrf": {csrf}}); code != http.StatusBadRequest || count() != 1 {
		t.Fatalf("unconfirmed delete: %d", code)
	}
	if code, _, h := e.post(t, page+"/delete", url.Values{"csrf": {csrf}, "confirm": {"yes"}}); code != http.StatusSeeOther || h.Get("Location") != "/console/orgs/acme#subscriptions" || count() != 0 {
		t.Fatalf("delete: %d %v", code, h)
	}
	if code, _, _ := e.get(t, page); code != http.StatusNotFound {
		t.Errorf("deleted subscription's page: %d", code)
	}
}

// TestPingAndQueueSubscriptions: ping and queue subscriptions through
// their forms; a queue subscription has no secret to rotate and cannot
// take another org's queue.
func TestPingAndQueueSubscriptions(t *testing.T) {
	e := start(t)
	ctx := callToken(context.Background())
	for _, org := range []string{"acme", "other"} {
		if _, err := e.api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: org}); err != nil {
			t.Fatal(err)
		}
	}
	q := e.queue(t, "acme", 0)
	csrf := e.signIn(t)

	code, body, _ := e.post(t, "/console/orgs/acme/subscriptions", url.Values{"csrf": {csrf}, "mode": {"ping"}, "system": {"collmex"},
		"event_types": {"1, 2"}, "url": {"https://collmex.example/ping?x=1"}})
	if code != http.StatusOK {
		t.Fatalf("ping: %d %s", code, body)
	}
	shownSecret(t, body)
	_, rest, _ := strings.Cut(body, `href="/console/subscriptions/`)
	pingID, _, _ := strings.Cut(rest, `"`)
	code, body, _ = e.get(t, "/console/subscriptions/"+pingID)
	if code != http.StatusOK || !strings.Contains(body, "Unacknowledged pings") || strings.Contains(body, `name="timeout"`) {
		t.Fatalf("ping page: %d\n%s", code, body)
	}
	if code, _, _ := e.post(t, "/console/subscriptions/"+pingID, url.Values{"csrf": {csrf}, "system": {"collmex"}, "event_types": {"3"},
		"url": {"https://collmex.example/v2"}}); code != http.StatusSeeOther {
		t.Fatalf("ping update: %d", code)
	}
	if s, err := e.api.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: pingID}); err != nil || s.GetUrl() != "https://collmex.example/v2" || len(s.GetEventTypes()) != 1 {
		t.Fatalf("ping updated: %v %v", s, err)
	}

	// Another org's queue is refused, naming the field.
	if code, body, _ := e.post(t, "/console/orgs/other/subscriptions", url.Values{"csrf": {csrf}, "mode": {"queue"}, "system": {"comnorm"},
		"event_types": {"invoice.changed"}, "queue_id": {q}}); code != http.StatusBadRequest || !strings.Contains(body, "Field: <code>queue_id</code>") {
		t.Fatalf("queue of another org: %d\n%s", code, body)
	}
	code, _, h := e.post(t, "/console/orgs/acme/subscriptions", url.Values{"csrf": {csrf}, "mode": {"queue"}, "system": {"comnorm"},
		"event_types": {"invoice.changed"}, "queue_id": {q}})
	if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/console/subscriptions/") {
		t.Fatalf("queue: %d %v", code, h)
	}
	page := h.Get("Location")
	code, body, _ = e.get(t, page)
	if code != http.StatusOK || strings.Contains(body, `id="rotate"`) || strings.Contains(body, `id="test"`) || !strings.Contains(body, `<option value="`+q+`" selected>`) {
		t.Fatalf("queue page: %d\n%s", code, body)
	}
	if code, body, _ := e.post(t, page+"/rotate", url.Values{"csrf": {csrf}}); code != http.StatusBadRequest || strings.Contains(body, "whsec_") {
		t.Errorf("rotate of a queue subscription: %d\n%s", code, body)
	}
	if n, err := e.api.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: "other"}); err != nil || len(n.GetSubscriptions()) != 0 {
		t.Errorf("other org's subscriptions: %v %v", n, err)
	}
}
