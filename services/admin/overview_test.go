package admin_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/addresssync"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/natstest"
)

// TestGetAddressBook: the person counts and how the last sync through the
// sync API ended; an org without a sync has none.
func TestGetAddressBook(t *testing.T) {
	ctx, api, conn := busAdmin(t)

	sync, err := addresssync.New(context.Background(), addresssync.DefaultConfig(), conn, natstest.Log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	sync.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.UpdateOrg(ctx, &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: "acme", AddressbookSyncEnabled: true}}); err != nil {
		t.Fatal(err)
	}
	key, err := api.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK}})
	if err != nil {
		t.Fatal(err)
	}
	book := func() *adminv1.AddressBook {
		t.Helper()
		b, err := api.GetAddressBook(ctx, &adminv1.GetAddressBookRequest{OrgId: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if b := book(); b.GetPersons() != 0 || b.GetLastSync() != nil {
		t.Fatalf("before any sync: %v", b)
	}
	post := func(body string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/rest/addressbook/sync", bytes.NewBufferString(body))
		req.Header.Set("Authorization", key.GetSecret())
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	before := time.Now().Add(-time.Second)
	if code := post(`{"source":"dir","personList":[{"externalDbId":"1","lastName":"A"},{"externalDbId":"2","lastName":"B"}]}`); code != http.StatusOK {
		t.Fatalf("sync: %d", code)
	}
	b := book()
	ls := b.GetLastSync()
	if b.GetPersons() != 2 || ls.GetStatus() != http.StatusOK || ls.GetCreated() != 2 || ls.GetSource() != "dir" || ls.GetError() != "" || ls.GetTime().AsTime().Before(before) {
		t.Fatalf("after a sync: %v", b)
	}
	// One person left out is marked deleted: the org does not allow deleting.
	if code := post(`{"source":"dir","personList":[{"externalDbId":"1","lastName":"A"}]}`); code != http.StatusOK {
		t.Fatalf("sync: %d", code)
	}
	if b := book(); b.GetPersons() != 1 || b.GetMarkedDeleted() != 1 || b.GetLastSync().GetMarkedDeleted() != 1 || b.GetLastSync().GetUnchanged() != 1 {
		t.Fatalf("after marking: %v", b)
	}
	// A sync refused for what it sent leaves no trace: bad input changes
	// nothing, the last sync's outcome included.
	if code := post(`{"source":"dir","personList":[{"externalDbId":"1","lastName":"A","mobil":"not a number"}]}`); code != http.StatusBadRequest {
		t.Fatalf("bad sync: %d", code)
	}
	if b := book(); b.GetPersons() != 1 || b.GetLastSync().GetStatus() != http.StatusOK || b.GetLastSync().GetMarkedDeleted() != 1 {
		t.Fatalf("after a refused sync: %v", b)
	}
	if _, err := api.GetAddressBook(ctx, &adminv1.GetAddressBookRequest{OrgId: "nobody"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown org: %v", err)
	}
	// Deleting the org forgets its last sync with its persons.
	if _, err := api.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if b := book(); b.GetPersons() != 0 || b.GetMarkedDeleted() != 0 || b.GetLastSync() != nil {
		t.Fatalf("org made again: %v", b)
	}
}

// TestInFlight: a payload subscription's tasks waiting in DELIVERIES are
// its deliveries in flight, and its newest logged attempt is its last
// delivery; other subscriptions' are not.
func TestInFlight(t *testing.T) {
	ctx, api, conn := busAdmin(t)
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 2 {
		resp, err := api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
			OrgId: "acme", System: "erp", EventTypes: []string{"invoice.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD,
			Url: "https://erp.example/hook"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.GetSubscription().GetSubscriptionId())
	}
	for seq := range uint64(3) {
		if _, err := conn.JS.PublishMsg(context.Background(), bus.DeliveryTask(ids[0], seq+1, time.Now(), []byte(`{}`), "")); err != nil {
			t.Fatal(err)
		}
	}
	for _, outcome := range []string{"retry", "delivered"} {
		m, err := dlog.Message(dlog.Record{Time: time.Now(), Org: "acme", Subscription: ids[0], Mode: "payload", Status: 200, Outcome: outcome, EventID: "ev-" + outcome})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.JS.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []uint64{3, 0} {
		sub, err := api.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: ids[i]})
		if err != nil {
			t.Fatal(err)
		}
		if sub.GetInFlight() != want {
			t.Fatalf("subscription %d: %d in flight, want %d", i, sub.GetInFlight(), want)
		}
		if last := sub.GetLastDelivery(); (i == 0) != (last != nil) || i == 0 && (last.GetOutcome() != "delivered" || last.GetEventId() != "ev-delivered") {
			t.Fatalf("subscription %d: last delivery %v", i, last)
		}
	}
}
