package tests

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/tests/harness"
)

// CreateSubscription makes an active subscription unless the request sets
// inactive. subscription.active, a proto bool that cannot tell false from
// not given, is not read: a client that sets it true, as clients had to,
// still gets an active one, and one that sets it beside inactive is told
// the request contradicts itself.
func TestCreateSubscriptionActiveByDefault(t *testing.T) {
	k := harness.Start(t, harness.Options{})
	adm, _ := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	ctx := context.Background()
	create := func(system string, active, inactive bool) (*adminv1.Subscription, error) {
		resp, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
			OrgId: "acme", System: system, EventTypes: []string{"invoice.changed"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://" + system + ".example/hook", Active: active,
		}, Inactive: inactive})
		return resp.GetSubscription(), err
	}
	for _, c := range []struct {
		system           string
		active, inactive bool
		want             bool
	}{
		{"plain", false, false, true},
		{"old", true, false, true},
		{"off", false, true, false},
	} {
		sub, err := create(c.system, c.active, c.inactive)
		if err != nil {
			t.Fatalf("%s: %v", c.system, err)
		}
		got, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: sub.GetSubscriptionId()})
		if err != nil {
			t.Fatal(err)
		}
		if sub.GetActive() != c.want || got.GetActive() != c.want {
			t.Errorf("active %v, inactive %v: created active %v, read active %v; want %v", c.active, c.inactive, sub.GetActive(), got.GetActive(), c.want)
		}
	}

	_, err := create("both", true, true)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "inactive: ") {
		t.Errorf("active and inactive: %v", err)
	}
	list, err := adm.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: "acme"})
	if err != nil || len(list.GetSubscriptions()) != 3 {
		t.Errorf("after a refused request: %d subscriptions, %v", len(list.GetSubscriptions()), err)
	}
}

// A queue subscription signs nothing: rotating its secret is refused,
// naming the field, and changes nothing.
func TestRotateQueueSubscriptionSecret(t *testing.T) {
	k := harness.Start(t, harness.Options{})
	adm, key := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_PARTNER)
	ctx := context.Background()
	q := qCreate(t, k.HTTP, key)
	resp, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "hub", EventTypes: []string{"invoice.changed"},
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: q.QueueID,
	}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetSubscription().GetSubscriptionId()
	before, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
	if err != nil {
		t.Fatal(err)
	}
	_, err = adm.RotateSecret(ctx, &adminv1.RotateSecretRequest{SubscriptionId: id})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "subscription_id: ") {
		t.Fatalf("rotating a queue subscription's secret: %v", err)
	}
	after, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
	if err != nil {
		t.Fatal(err)
	}
	if !after.GetUpdateTime().AsTime().Equal(before.GetUpdateTime().AsTime()) {
		t.Errorf("the refused rotation changed the subscription: updated %v, was %v", after.GetUpdateTime(), before.GetUpdateTime())
	}
}
