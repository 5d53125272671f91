package tests

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/tests/harness"
)

// TestAdminListings: ListOrgs, ListKeys and ListSubscriptions show every
// write made before them, at once: creates, updates, revocations and
// deletes, one org's keys and subscriptions apart from another's. And
// they do not read a bucket through a consumer per call, as a watch of the
// whole bucket per listing would: the admin service follows each bucket
// with one watch and lists from memory.
func TestAdminListings(t *testing.T) {
	k := harness.Start(t, harness.Options{})
	adm := k.Admin(t)
	ctx := context.Background()
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

	orgs := func() []string {
		t.Helper()
		resp, err := adm.ListOrgs(ctx, &adminv1.ListOrgsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, o := range resp.GetOrgs() {
			ids = append(ids, o.GetOrgId())
		}
		return ids
	}
	keys := func(org string) []string {
		t.Helper()
		resp, err := adm.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: org})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, k := range resp.GetKeys() {
			s := k.GetKeyId()
			if k.GetRevokeTime() != nil {
				s += " revoked"
			}
			ids = append(ids, s)
		}
		return ids
	}
	subsOf := func(org string) []string {
		t.Helper()
		resp, err := adm.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: org})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range resp.GetSubscriptions() {
			ids = append(ids, s.GetSubscriptionId()+" "+s.GetName())
		}
		return ids
	}
	check := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}

	var wantOrgs []string
	wantKeys := map[string][]string{}
	wantSubs := map[string][]string{}
	for i := range 6 {
		org := fmt.Sprintf("org%d", i)
		if _, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: org, DisplayName: org}); err != nil {
			t.Fatal(err)
		}
		wantOrgs = append(wantOrgs, org)
		check("orgs after a create", orgs(), wantOrgs)
	}
	for i := range 10 {
		org := wantOrgs[i%2]
		key, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: org, Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}})
		if err != nil {
			t.Fatal(err)
		}
		wantKeys[org] = append(wantKeys[org], key.GetKey().GetKeyId())
		slices.Sort(wantKeys[org])
		check("keys of "+org+" after a create", keys(org), wantKeys[org])

		sub, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
			OrgId: org, System: "crm", Name: "n", Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Active: true,
			EventTypes: []string{"invoice.changed"}, Url: "https://crm.example/hook"}})
		if err != nil {
			t.Fatal(err)
		}
		wantSubs[org] = append(wantSubs[org], sub.GetSubscription().GetSubscriptionId()+" n")
		check("subscriptions of "+org+" after a create", subsOf(org), wantSubs[org])
	}

	first := strings.Fields(wantSubs["org0"][0])[0]
	if _, err := adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: first, Name: "renamed"},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"name"}},
	}); err != nil {
		t.Fatal(err)
	}
	wantSubs["org0"][0] = first + " renamed"
	check("subscriptions after an update", subsOf("org0"), wantSubs["org0"])
	if _, err := adm.DeleteSubscription(ctx, &adminv1.DeleteSubscriptionRequest{SubscriptionId: first}); err != nil {
		t.Fatal(err)
	}
	wantSubs["org0"] = wantSubs["org0"][1:]
	check("subscriptions after a delete", subsOf("org0"), wantSubs["org0"])

	if _, err := adm.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: wantKeys["org1"][0]}); err != nil {
		t.Fatal(err)
	}
	wantKeys["org1"][0] += " revoked"
	check("keys after a revocation", keys("org1"), wantKeys["org1"])

	if _, err := adm.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: "org1"}); err != nil {
		t.Fatal(err)
	}
	wantOrgs = slices.DeleteFunc(wantOrgs, func(o string) bool { return o == "org1" })
	check("orgs after a delete", orgs(), wantOrgs)
	check("keys of org0 beside it", keys("org0"), wantKeys["org0"])
	check("subscriptions of org0 beside it", subsOf("org0"), wantSubs["org0"])
	check("keys of a fresh org", keys("org2"), nil)

	// Other services watch these buckets too, and may start a watch
	// meanwhile; a watch per listing would make one per call.
	consumers.Store(0)
	const calls = 20
	for range calls {
		orgs()
		keys("org0")
		subsOf("org0")
	}
	if n := consumers.Load(); n >= calls {
		t.Fatalf("%d listings of each kind made %d consumers on the buckets", calls, n)
	}
}
