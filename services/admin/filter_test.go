package admin_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/contract"
)

// refused fails the test unless err is the admin API's refusal naming
// field, and answers its message.
func refused(t *testing.T, err error, field string) string {
	t.Helper()
	if bad := contract.AdminInvalid(err, field, field); bad != nil {
		t.Fatal(bad)
	}
	return status.Convert(err).Message()
}

// TestFilterRefused: a filter that does not compile, is not true or false,
// or is too long is refused naming the field filter and, where there is
// one, its line and column; an update refused so changes nothing.
func TestFilterRefused(t *testing.T) {
	ctx, api := typesAdmin(t)
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	sub := func(filter string) *adminv1.Subscription {
		return &adminv1.Subscription{OrgId: "acme", System: "erp", EventTypes: []string{"invoice.changed"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://example.com/hook", Filter: filter}
	}
	for _, c := range []struct{ filter, says string }{
		{`data.total > 1000.0 &&`, "line 1, column 23"},
		{"type == \"invoice.changed\"\n && totl > 1.0", "line 2, column 5: undeclared reference to 'totl'"},
		{`data.total`, "must be true or false"},
		{strings.Repeat(" ", 3000) + "true", "at most 2048"},
	} {
		_, err := api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: sub(c.filter)})
		if msg := refused(t, err, "filter"); !strings.Contains(msg, c.says) {
			t.Errorf("%.40q: refused with %q, want it to say %q", c.filter, msg, c.says)
		}
	}

	created, err := api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: sub(`subject.startsWith("INV-")`)})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetSubscription().GetSubscriptionId()
	if got := created.GetSubscription().GetFilter(); got != `subject.startsWith("INV-")` {
		t.Fatalf("created with filter %q", got)
	}
	_, err = api.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: id, Filter: `subject.startsWith(1)`},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"filter"}},
	})
	if msg := refused(t, err, "filter"); !strings.Contains(msg, "line 1, column 19") {
		t.Errorf("update refused with %q", msg)
	}
	got, err := api.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
	if err != nil || got.GetFilter() != `subject.startsWith("INV-")` {
		t.Fatalf("after a refused update: %q, %v", got.GetFilter(), err)
	}
	// Cleared by an update naming it.
	upd, err := api.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: id},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"filter"}},
	})
	if err != nil || upd.GetFilter() != "" {
		t.Fatalf("cleared: %q, %v", upd.GetFilter(), err)
	}
}

// TestPreviewMatches: a preview says whether a sample event would be
// delivered: of the subscription's types and passing its filter; a bad
// sample event is refused naming sample_event.
func TestPreviewMatches(t *testing.T) {
	ctx, api := typesAdmin(t)
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	ids := map[adminv1.DeliveryMode]string{}
	for system, mode := range map[string]adminv1.DeliveryMode{"erp": adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, "shop": adminv1.DeliveryMode_DELIVERY_MODE_PING} {
		created, err := api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
			OrgId: "acme", System: system, EventTypes: []string{"invoice.changed"}, Mode: mode,
			Url: "https://example.com/hook", Filter: `data.total > 1000.0 && subject.startsWith("INV-")`,
		}})
		if err != nil {
			t.Fatal(err)
		}
		ids[mode] = created.GetSubscription().GetSubscriptionId()
	}
	event := func(typ, subject, data string) string {
		return `{"specversion":"1.0","id":"1","source":"/erp","type":"` + typ + `","subject":"` + subject + `","data":` + data + `}`
	}
	for _, id := range ids {
		for _, c := range []struct {
			sample string
			want   bool
		}{
			{event("invoice.changed", "INV-1", `{"total": 1500}`), true},
			{event("invoice.changed", "INV-1", `{"total": 500}`), false},
			{event("invoice.changed", "ORD-1", `{"total": 1500}`), false},
			{event("invoice.changed", "INV-1", `{}`), false}, // cannot be judged
			{event("quote.changed", "INV-1", `{"total": 1500}`), false},
			{"", false}, // the generated sample has no total
		} {
			resp, err := api.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: id, SampleEvent: c.sample})
			if err != nil {
				t.Fatalf("%s: %v", c.sample, err)
			}
			if resp.GetMatches() != c.want {
				t.Errorf("%s: matches %v, want %v", c.sample, resp.GetMatches(), c.want)
			}
		}
	}
	payloadID := ids[adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD]
	resp, err := api.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: payloadID, SampleEvent: event("invoice.changed", "INV-9", `{"total": 1500}`)})
	if err != nil || !strings.Contains(resp.GetSampleBody(), `"INV-9"`) {
		t.Errorf("the payload preview's body is not of the sample event: %v, %v", resp.GetSampleBody(), err)
	}
	for _, bad := range []string{`{"specversion":"1.0"`, `{"specversion":"1.0","id":"1","source":"/s","type":"invoice.changed"}`, `[]`} {
		_, err := api.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: payloadID, SampleEvent: bad})
		refused(t, err, "sample_event")
	}
	_, err = api.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: payloadID, EventType: "invoice.changed",
		SampleEvent: event("quote.changed", "INV-1", `{}`)})
	refused(t, err, "sample_event")
}
