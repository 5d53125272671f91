package tests

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// TestFilter runs subscription filters through the binary: a filter that
// does not compile is refused naming its place; a payload subscription
// gets the events its filter passes and no other; a ping subscription is
// pinged for a change its filter passes and not for the others; the
// preview says the same of a sample event.
func TestFilter(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	k := harness.Start(t, harness.Options{Env: []string{fmt.Sprintf("KURIER_NOTIFY_DELAY=%v", delay)}})
	hooks := httptest.NewServer(&contract.Recorder{})
	t.Cleanup(hooks.Close)
	rcv := &contract.Receiver{URL: hooks.URL, API: hooks.URL}
	tg := contract.Target{HTTP: k.HTTP, Admin: k.Admin(t), Hooks: rcv, NotifyDelay: delay}
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
	ctx := context.Background()
	const filter = `data.total > 1000.0 && subject.startsWith("INV-")`

	_, err := tg.Admin.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: org, System: "erp", EventTypes: []string{"invoice.changed"}, Url: rcv.URL + "/refused",
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Filter: "data.total >\n  && true",
	}})
	if bad := contract.AdminInvalid(err, "filter", "filter"); bad != nil {
		t.Fatal(bad)
	}
	if msg := fmt.Sprint(err); !strings.Contains(msg, "line 2, column 3") {
		t.Errorf("the refusal does not name the place: %s", msg)
	}

	var ids []string
	for _, s := range []*adminv1.Subscription{
		{System: "erp", Url: rcv.URL + "/payload", Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD},
		{System: "shop", Url: rcv.URL + "/ping", Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING},
	} {
		s.OrgId, s.EventTypes, s.Filter = org, []string{"invoice.changed"}, filter
		created, err := tg.Admin.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: s})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, created.GetSubscription().GetSubscriptionId())
	}
	payload, ping := ids[0], ids[1]
	results := func() (passed, filtered float64) {
		m := scrapeMetrics(t, k.HTTP)
		passed, _ = m.value("kurier_filter_results_total", map[string]string{"result": "passed"})
		filtered, _ = m.value("kurier_filter_results_total", map[string]string{"result": "filtered"})
		return passed, filtered
	}
	natstest.WaitFor(t, 10*time.Second, "the dispatcher to know the subscriptions", func() bool {
		v, ok := scrapeMetrics(t, k.HTTP).value("kurier_dispatch_subscriptions", nil)
		return ok && v >= 2
	})

	// Left out by both: no delivery, no ping timer. The counts say the
	// router has judged them, and it sets a timer before it counts the
	// next event.
	tg.Publish(t, key,
		contract.Event("small", "invoice.changed", "INV-1", map[string]any{"total": 500}),
		contract.Event("order", "invoice.changed", "ORD-1", map[string]any{"total": 5000}))
	natstest.WaitFor(t, 10*time.Second, "both events judged by both filters", func() bool {
		_, filtered := results()
		return filtered == 4
	})
	sub, err := tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: ping})
	if err != nil {
		t.Fatal(err)
	}
	if sub.GetPendingSince() != nil || sub.GetFilter() != filter {
		t.Fatalf("after changes the filter leaves out, the ping subscription is %v", sub)
	}

	tg.Publish(t, key, contract.Event("big", "invoice.changed", "INV-2", map[string]any{"total": 1500}))
	rcv.WaitUnder(t, 10*time.Second, "/ping", 1)
	hits := rcv.WaitUnder(t, 10*time.Second, "/payload", 1)
	if passed, filtered := results(); passed != 2 || filtered != 4 {
		t.Errorf("filters passed %v and left out %v events, want 2 and 4", passed, filtered)
	}
	if len(hits) != 1 || !strings.Contains(hits[0].Body, `"INV-2"`) {
		t.Errorf("payload deliveries: %v", hits)
	}

	for sample, want := range map[string]bool{
		`{"specversion":"1.0","id":"p","source":"/erp","type":"invoice.changed","subject":"INV-3","data":{"total":2000}}`: true,
		`{"specversion":"1.0","id":"p","source":"/erp","type":"invoice.changed","subject":"INV-3","data":{"total":20}}`:   false,
	} {
		p, err := tg.Admin.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: payload, SampleEvent: sample})
		if err != nil || p.GetMatches() != want {
			t.Errorf("preview of %s: %v, %v; want matches %v", sample, p, err, want)
		}
	}
}
