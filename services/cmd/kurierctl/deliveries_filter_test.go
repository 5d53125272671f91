package main

import (
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/dlog"
)

// payloadAttempts are logged attempts of sub's payload deliveries: evt-1
// retried then delivered, evt-2 given up.
func payloadAttempts(sub string) []dlog.Record {
	a := dlog.Record{Org: "acme", Subscription: sub, System: "erp", EventTypes: []string{"invoice.changed"},
		Mode: "payload", URL: "https://example.com/hook", LatencyMS: 10}
	retry, delivered, dead := a, a, a
	retry.EventID, retry.Attempt, retry.Status, retry.Outcome = "evt-1", 1, 503, "retry"
	delivered.EventID, delivered.Attempt, delivered.Status, delivered.Outcome = "evt-1", 2, 204, "delivered"
	dead.EventID, dead.Attempt, dead.Status, dead.Outcome = "evt-2", 1, 410, "dead"
	return []dlog.Record{retry, delivered, dead}
}

// TestDeliveriesListFilters: --outcome, --event and --until choose what
// deliveries list shows, pings counted as the server counts them.
func TestDeliveriesListFilters(t *testing.T) {
	addr, conn := startAdminBus(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	r := ctlAt(t, addr, "sub", "create", "--mode", "ping", "--org", "acme", "--system", "shop", "--type", "5", "--url", "https://example.com/hook", "-o", "json").ok(t)
	ping := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription().GetSubscriptionId()
	payload := createPayload(t, addr).GetSubscription().GetSubscriptionId()

	at := time.Date(2025, 1, 31, 8, 0, 0, 0, time.UTC)
	logDeliveries(t, conn, at, append(attempts(ping), payloadAttempts(payload)...)...)
	// until compares with when the log took a record, not the record's
	// own time: this is after all of them.
	logged := time.Now().UTC().Add(time.Second).Truncate(time.Second).Add(time.Second)

	events := func(args ...string) []string {
		t.Helper()
		r := ctlAt(t, addr, append([]string{"deliveries", "list", "--org", "acme", "--all", "-o", "json"}, args...)...).ok(t)
		var got []string
		for _, d := range unmarshal[adminv1.ListDeliveriesResponse](t, r.stdout).GetDeliveries() {
			got = append(got, or(d.GetEventId(), "ping")+"/"+or(d.GetOutcome(), "-"))
		}
		return got
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "ping/- ping/- ping/- evt-1/retry evt-1/delivered evt-2/dead"},
		// A ping answered 2xx counts as delivered, any other as dropped.
		{[]string{"--outcome", "delivered"}, "ping/- evt-1/delivered"},
		{[]string{"--outcome", "dropped"}, "ping/- ping/-"},
		{[]string{"--outcome", "dead", "--sub", payload}, "evt-2/dead"},
		{[]string{"--outcome", "test"}, ""},
		{[]string{"--event", "evt-1"}, "evt-1/retry evt-1/delivered"},
		{[]string{"--event", "evt-1", "--outcome", "retry"}, "evt-1/retry"},
		{[]string{"--event", "evt-9"}, ""},
		{[]string{"--until", logged.Format(time.RFC3339)}, "ping/- ping/- ping/- evt-1/retry evt-1/delivered evt-2/dead"},
		{[]string{"--until", "1h"}, ""},
		{[]string{"--since", "1h", "--until", logged.Format(time.RFC3339), "--outcome", "dead"}, "evt-2/dead"},
	} {
		if got := strings.Join(events(c.args...), " "); got != c.want {
			t.Errorf("deliveries list %s: %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}

	// The table shows the same; an empty result says what was asked.
	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme", "--outcome", "dead").ok(t)
	matchLines(t, r.stdout, `TIME .*`, `2025-01-31T08:00:05Z  `+payload+`  erp +invoice\.changed +evt-2 +410 +10ms +- +1 +dead +-`)
	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme", "--event", "evt-9", "--outcome", "retry", "--until", "2025-02-01T00:00:00Z").ok(t)
	if r.stdout != "" || !strings.Contains(r.stderr, "No deliveries logged for org acme until 2025-02-01T00:00:00Z with outcome retry of event evt-9;") {
		t.Errorf("empty filtered list: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	// One a page: --all still finds every match.
	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme", "--outcome", "delivered", "--limit", "1", "--all").ok(t)
	matchLines(t, r.stdout, `TIME .*`, `2025-01-31T08:00:00Z  `+ping+` .* 200 .*`, `2025-01-31T08:00:04Z  `+payload+` .*evt-1 .* delivered .*`)
}

// TestDeliveriesTailFilters: tail passes --outcome and --event on, for
// what is logged already and for what comes.
func TestDeliveriesTailFilters(t *testing.T) {
	addr, conn := startAdminBus(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	payload := createPayload(t, addr).GetSubscription().GetSubscriptionId()
	recs := payloadAttempts(payload)
	at := time.Date(2025, 1, 31, 8, 0, 0, 0, time.UTC)
	logDeliveries(t, conn, at, recs[0])

	event := ctlBackground(t, addr, "deliveries", "tail", "--org", "acme", "--since", "1h", "--event", "evt-1", "-o", "json")
	dead := ctlBackground(t, addr, "deliveries", "tail", "--org", "acme", "--since", "1h", "--outcome", "dead")
	event.waitLines(t, 1)
	dead.waitLines(t, 1) // the header
	logDeliveries(t, conn, at.Add(time.Second), recs[1:]...)
	event.waitLines(t, 2)
	dead.waitLines(t, 2)

	r := event.stop(t)
	if r.code != 0 {
		t.Fatalf("tail --event exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	got := lines(r.stdout)
	if len(got) != 2 {
		t.Fatalf("tail --event printed %d lines, want 2:\n%s", len(got), r.stdout)
	}
	for i, want := range []string{"retry", "delivered"} {
		if d := unmarshal[adminv1.Delivery](t, got[i]); d.GetEventId() != "evt-1" || d.GetOutcome() != want {
			t.Errorf("tail --event line %d = %v, want evt-1 %s", i+1, d, want)
		}
	}
	r = dead.stop(t)
	if r.code != 0 {
		t.Fatalf("tail --outcome exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	matchLines(t, r.stdout, `TIME .*`, `2025-01-31T08:00:02Z  `+payload+` .*evt-2 .* 410 .* dead .*`)
}
