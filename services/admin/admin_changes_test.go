package admin_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
)

// TestDeleteOrgDeletesDeadLetters: an org made again under a deleted
// org's id starts empty; the dead letters of the one before hold its
// events and must not show in the new one's listing.
func TestDeleteOrgDeletesDeadLetters(t *testing.T) {
	ctx, api, conn := busAdmin(t)
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	created, err := api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "erp", EventTypes: []string{"invoice.changed"},
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://erp.example/hook"}})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetSubscription().GetSubscriptionId()
	ev := `{"specversion":"1.0","id":"secret-invoice","source":"/erp","type":"invoice.changed","subject":"INV-1","data":{"total":1}}`
	d := bus.DeliveryTask(id, 1, time.Now(), []byte(ev), "")
	d.Subject = bus.DeadSubject("acme", id)
	d.Header.Del(jetstream.MsgIDHeader)
	if _, err := conn.JS.PublishMsg(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got, err := api.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: "acme"}); err != nil || len(got.GetDeadLetters()) != 1 {
		t.Fatalf("before the delete: %v, %v; want the one dead letter", got.GetDeadLetters(), err)
	}

	if _, err := api.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	got, err := api.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.GetDeadLetters()); n != 0 {
		t.Errorf("the new acme lists %d dead letters of the deleted one, first %v", n, got.GetDeadLetters()[0])
	}
}

// TestSwitchRaceKeepsDigest: switching a daily subscription off and on at
// once may end either way, but when it ends on, its digest timer must be
// set, since only a digest sets the next one: without it the subscription
// gathers its deliveries for good.
func TestSwitchRaceKeepsDigest(t *testing.T) {
	ctx, api, conn := busAdmin(t)
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	created, err := api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "erp", EventTypes: []string{"invoice.changed"},
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://erp.example/hook",
		Schedule: &adminv1.DeliverySchedule{DailyAt: "08:00", TimeZone: "Europe/Berlin"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetSubscription().GetSubscriptionId()
	notify, err := conn.JS.Stream(ctx, bus.StreamNotify)
	if err != nil {
		t.Fatal(err)
	}
	armed := func() bool {
		_, err := notify.GetLastMsgForSubject(ctx, bus.DigestSched(id))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return true
	}
	for round := range 40 {
		var wg sync.WaitGroup
		for _, on := range []bool{false, true} {
			wg.Go(func() {
				if _, err := api.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: id, Active: on}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		got, err := api.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetActive() && !armed() {
			t.Fatalf("round %d: switched off and on at once, the subscription is on without a digest timer", round)
		}
		if !got.GetActive() {
			if _, err := api.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: id, Active: true}); err != nil {
				t.Fatal(err)
			}
		}
		if !armed() {
			t.Fatalf("round %d: switched on, no digest timer", round)
		}
	}
}

// TestDeleteOrgRacingCreates: what is made for an org while it is deleted
// goes with it, so an org made again under its id inherits no key that
// authenticates as it and no subscription that receives its events.
func TestDeleteOrgRacingCreates(t *testing.T) {
	ctx, api, _ := busAdmin(t)
	for round := range 10 {
		if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, create := range []func() error{
			func() error {
				_, err := api.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}})
				return err
			},
			func() error {
				_, err := api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
					OrgId: "acme", System: "erp", EventTypes: []string{"invoice.changed"},
					Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://erp.example/hook"}})
				return err
			},
		} {
			wg.Go(func() {
				for {
					if err := create(); status.Code(err) == codes.NotFound {
						return
					} else if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		time.Sleep(20 * time.Millisecond)
		if _, err := api.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: "acme"}); err != nil {
			t.Fatal(err)
		}
		wg.Wait()

		if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
			t.Fatal(err)
		}
		keys, err := api.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		list, err := api.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		if len(keys.GetKeys()) != 0 || len(list.GetSubscriptions()) != 0 {
			t.Fatalf("round %d: the new acme has %d keys and %d subscriptions of the deleted one", round, len(keys.GetKeys()), len(list.GetSubscriptions()))
		}
		if _, err := api.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: "acme"}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTooManyEventTypes: a subscription of more types than its record can
// hold is bad input, refused naming the field at once, not a store failure
// after seconds of work.
func TestTooManyEventTypes(t *testing.T) {
	ctx, api := typesAdmin(t)
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	var types []string
	for i := range 20000 {
		types = append(types, fmt.Sprintf("invoice.changed-%06d-%s", i, strings.Repeat("x", 50)))
	}
	_, err := api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "erp", EventTypes: types,
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://erp.example/hook"}})
	refused(t, err, "event_types")
	list, err := api.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetSubscriptions()); n != 0 {
		t.Errorf("%d subscriptions after the refusal", n)
	}
}
