package console

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/dlog"
)

// hostile is data a receiver or a sender chose, which must stay text.
const hostile = `<script>alert(1)</script>`

// payloadSub makes an org (unless it exists) and a payload subscription
// of it named name, and answers its id.
func payloadSub(t *testing.T, e *env, org, name string) string {
	t.Helper()
	ctx := callToken(context.Background())
	if _, err := e.api.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: org}); err != nil {
		if _, err := e.api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: org}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := e.api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: org, Name: name, System: "erp", EventTypes: []string{"invoice.changed"},
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://erp.example/hook"}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetSubscription().GetSubscriptionId()
}

// attempt is a payload delivery attempt of org's subscription sub, as the
// dispatcher logs it.
func attempt(org, sub, event, outcome string, status int) dlog.Record {
	r := dlog.Record{Org: org, Subscription: sub, Mode: "payload", URL: "https://erp.example/hook", EventTypes: []string{"invoice.changed"},
		EventID: event, Attempt: 1, Outcome: outcome, Status: status, LatencyMS: 12.5}
	if outcome == "retry" {
		r.Error, r.Response = "answered "+fmt.Sprint(status)+": "+hostile, hostile
		next := time.Now().Add(time.Minute)
		r.NextAttempt = &next
	}
	return r
}

// logAttempts puts records into the delivery log, as the dispatcher does.
func (e *env) logAttempts(t *testing.T, recs ...dlog.Record) {
	t.Helper()
	for _, r := range recs {
		r.Time = time.Now().UTC()
		m, err := dlog.Message(r)
		if err == nil {
			_, err = e.conn.JS.PublishMsg(context.Background(), m)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

var rowAttrs = regexp.MustCompile(`<tr data-([a-z-]+)="([^"]*)" data-([a-z-]+)="([^"]*)">`)

// rows answers the rows of the table with id in a page, each as its two
// data attributes' values, unescaped, joined with ":".
func rows(t *testing.T, page, id string) []string {
	t.Helper()
	_, table, ok := strings.Cut(page, `<table id="`+id+`">`)
	if !ok {
		t.Fatalf("no table %s in\n%s", id, page)
	}
	table, _, _ = strings.Cut(table, "</table>")
	var out []string
	for _, m := range rowAttrs.FindAllStringSubmatch(table, -1) {
		out = append(out, html.UnescapeString(m[2])+":"+html.UnescapeString(m[4]))
	}
	return out
}

// TestDeliveryLog: the log shows the org's attempts, newest page links on,
// and the filters (subscription, outcome, time range, event id) narrow it;
// hostile data stays text; bad filters are refused naming the field.
func TestDeliveryLog(t *testing.T) {
	e := start(t)
	erp := payloadSub(t, e, "acme", "ERP")
	shop := payloadSub(t, e, "acme", "Shop")
	other := payloadSub(t, e, "other", "Other")
	e.logAttempts(t, attempt("acme", erp, "e1", "retry", 500), attempt("acme", erp, "e1", "delivered", 200),
		attempt("acme", shop, hostile, "dead", 410), attempt("other", other, "o1", "delivered", 200))
	// The next batch is logged in a later second than the first, so that a
	// time range (to the second) tells them apart.
	boundary := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(boundary) + 20*time.Millisecond)
	e.logAttempts(t, attempt("acme", shop, "e3", "delivered", 200))
	e.signIn(t)

	log := func(query string) []string {
		t.Helper()
		code, body, _ := e.get(t, "/console/orgs/acme/deliveries?"+query)
		if code != http.StatusOK {
			t.Fatalf("log ?%s: %d %s", query, code, body)
		}
		if strings.Contains(body, "<script>alert") {
			t.Fatalf("log ?%s: hostile data as markup:\n%s", query, body)
		}
		return rows(t, body, "deliveries")
	}
	at := boundary.Format("2006-01-02T15:04:05")
	for _, c := range []struct{ query, want string }{
		{"", "[e1:retry e1:delivered " + hostile + ":dead e3:delivered]"},
		{"subscription=" + shop, "[" + hostile + ":dead e3:delivered]"},
		{"outcome=delivered", "[e1:delivered e3:delivered]"},
		{"event=e1", "[e1:retry e1:delivered]"},
		{"event=" + url.QueryEscape(hostile), "[" + hostile + ":dead]"},
		{"to=" + at, "[e1:retry e1:delivered " + hostile + ":dead]"},
		{"from=" + at, "[e3:delivered]"},
		{"from=" + at + "&outcome=retry", "[]"},
		{"subscription=" + erp + "&outcome=retry&to=" + boundary.Add(time.Minute).Format("2006-01-02T15:04"), "[e1:retry]"},
	} {
		if got := fmt.Sprint(log(c.query)); got != c.want {
			t.Errorf("log ?%s = %s, want %s", c.query, got, c.want)
		}
	}

	_, body, _ := e.get(t, "/console/orgs/acme/deliveries?subscription="+erp)
	for _, want := range []string{
		`href="/console/subscriptions/` + erp + `"`,                        // the subscription, linked
		`answered 500: &lt;script&gt;alert(1)&lt;/script&gt;`,              // the error, as text
		`/console/orgs/acme/plots/deliveries.svg?subscription=` + erp,      // the plots of what is shown
		`data-src="/console/orgs/acme/deliveries/tail?subscription=` + erp, // the tail, of the same
		`<script src="/console/static/tail.js"></script>`,
		`The live tail needs JavaScript`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("log page lacks %s:\n%s", want, body)
		}
	}
	if code, body, _ := e.get(t, "/console/static/tail.js"); code != http.StatusOK || !strings.Contains(body, "EventSource") || strings.Contains(body, "innerHTML") {
		t.Errorf("tail.js: %d", code)
	}

	// Pages: the first holds a page's worth and links on to the rest.
	var many []dlog.Record
	for i := range logPage + 5 {
		many = append(many, attempt("acme", erp, fmt.Sprintf("bulk-%d", i), "delivered", 200))
	}
	e.logAttempts(t, many...)
	code, body, _ := e.get(t, "/console/orgs/acme/deliveries?event=&outcome=delivered&subscription="+erp)
	first := rows(t, body, "deliveries")
	next := regexp.MustCompile(`<a href="([^"]+)" rel="next">`).FindStringSubmatch(body)
	if code != http.StatusOK || len(first) != logPage || next == nil {
		t.Fatalf("first page: %d, %d rows, next %v", code, len(first), next)
	}
	_, body, _ = e.get(t, html.UnescapeString(next[1]))
	if rest := rows(t, body, "deliveries"); fmt.Sprint(rest) != "[bulk-99:delivered bulk-100:delivered bulk-101:delivered bulk-102:delivered bulk-103:delivered bulk-104:delivered]" ||
		strings.Contains(body, `rel="next"`) {
		t.Errorf("second page: %v", rest)
	}

	// Another org's attempts are not shown, nor its subscription's.
	if code, _, _ := e.get(t, "/console/orgs/acme/deliveries?subscription="+other); code != http.StatusNotFound {
		t.Errorf("log of another org's subscription: %d, want 404", code)
	}
	if code, _, _ := e.get(t, "/console/orgs/nope/deliveries"); code != http.StatusNotFound {
		t.Errorf("log of no org: %d", code)
	}

	for _, c := range []struct{ query, field string }{
		{"from=yesterday", "from"},
		{"to=2025-13-01T00:00", "to"},
		{"from=2025-01-31T08:00&to=2025-01-31T07:00", "to"},
		{"outcome=lost", "outcome"},
		{"after=x", "after"},
	} {
		code, body, _ := e.get(t, "/console/orgs/acme/deliveries?"+c.query)
		if code != http.StatusBadRequest || !strings.Contains(body, "<code>"+c.field+"</code>") {
			t.Errorf("log ?%s: %d, want 400 naming %s:\n%s", c.query, code, c.field, body)
		}
	}
}

// sse reads a Server-Sent Events stream's data lines.
func sse(t *testing.T, resp *http.Response) <-chan string {
	t.Helper()
	out := make(chan string)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				out <- data
			}
		}
	}()
	return out
}

// TestDeliveryTail: the tail streams, as JSON with its data inert, the
// matching attempts logged after it opened; without a session it is 401
// (an EventSource follows no sign-in), with a bad filter 400.
func TestDeliveryTail(t *testing.T) {
	e := start(t)
	sub := payloadSub(t, e, "acme", "ERP")
	e.logAttempts(t, attempt("acme", sub, "before", "delivered", 200))

	if code, _, h := e.get(t, "/console/orgs/acme/deliveries/tail"); code != http.StatusUnauthorized || h.Get("Location") != "" {
		t.Fatalf("tail without a session: %d %v", code, h)
	}
	e.signIn(t)
	for query, want := range map[string]int{"outcome=lost": http.StatusBadRequest, "from=soon": http.StatusBadRequest, "subscription=0123456789abcdef0123": http.StatusNotFound} {
		if code, body, _ := e.get(t, "/console/orgs/acme/deliveries/tail?"+query); code != want {
			t.Errorf("tail ?%s: %d %s, want %d", query, code, body, want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/console/orgs/acme/deliveries/tail?outcome=delivered", nil)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("tail: %d %v", resp.StatusCode, resp.Header)
	}
	events := sse(t, resp)
	// The answer came once the tail was in place: what is logged now is sent.
	retry := attempt("acme", sub, "e1", "retry", 500)
	e.logAttempts(t, retry, attempt("acme", sub, hostile, "delivered", 200))
	var data string
	select {
	case data = <-events:
	case <-ctx.Done():
		t.Fatal("no event from the tail")
	}
	if strings.Contains(data, "<") || !strings.Contains(data, `\u003cscript\u003e`) {
		t.Errorf("tail data not inert: %s", data)
	}
	var row logRow
	if err := json.Unmarshal([]byte(data), &row); err != nil {
		t.Fatal(err)
	}
	if row.Event != hostile || row.Outcome != "delivered" || row.Subscription != sub || row.SubscriptionTo != "/console/subscriptions/"+sub || row.Status != 200 || row.Time == "" {
		t.Errorf("tail row %+v", row)
	}
}

// TestTailEndsOnStop: a stop ends the live tails at once, so that the
// server's wait for requests in flight does not last its whole grace.
func TestTailEndsOnStop(t *testing.T) {
	e := start(t)
	payloadSub(t, e, "acme", "ERP")
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- e.console.Run(ctx) }()
	e.signIn(t)
	resp := e.openTail(t, "acme")
	defer resp.Body.Close()
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); ended <- err }()
	stop()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the tail did not end within 5 s of the stop")
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// openTail opens an org's live tail, which must answer 200.
func (e *env) openTail(t *testing.T, org string) *http.Response {
	t.Helper()
	resp, err := e.client.Get(e.url + "/console/orgs/" + org + "/deliveries/tail")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("tail: %d", resp.StatusCode)
	}
	return resp
}
