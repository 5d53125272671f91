package tests

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/tests/harness"
)

// TestAdminListings: ListOrgs, ListKeys and ListSubscriptions do not read
// a bucket through a consumer per call, as a watch of the whole bucket per
// listing would: the admin service follows each bucket with one watch and
// lists from memory. (That listings show every write made before them is
// contract.AdminAPI's.)
func TestAdminListings(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	adm, _ := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	ctx := context.Background()
	if _, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "crm", Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD,
		EventTypes: []string{"invoice.changed"}, Url: "https://crm.example/hook"}}); err != nil {
		t.Fatal(err)
	}
	var consumers atomic.Int32
	if _, err := k.Conn(t).Subscribe("$JS.API.CONSUMER.CREATE.>", func(m *nats.Msg) {
		for _, b := range []string{"KV_orgs.", "KV_keys.", "KV_subscriptions."} {
			if strings.Contains(m.Subject, b) {
				consumers.Add(1)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	// Other services watch these buckets too, and may start a watch
	// meanwhile; a watch per listing would make one per call.
	const calls = 20
	for range calls {
		orgs, err := adm.ListOrgs(ctx, &adminv1.ListOrgsRequest{})
		if err != nil || len(orgs.GetOrgs()) != 1 {
			t.Fatalf("list orgs: %v %v", orgs, err)
		}
		keys, err := adm.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: "acme"})
		if err != nil || len(keys.GetKeys()) != 1 {
			t.Fatalf("list keys: %v %v", keys, err)
		}
		subs, err := adm.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: "acme"})
		if err != nil || len(subs.GetSubscriptions()) != 1 {
			t.Fatalf("list subscriptions: %v %v", subs, err)
		}
	}
	if n := consumers.Load(); n >= calls {
		t.Fatalf("%d listings of each kind made %d consumers on the buckets", calls, n)
	}
}
