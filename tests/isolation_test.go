package tests

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/contract"
	"kurier.dev/tests/harness"
)

// Tenant isolation: credentials of one org against another's resources are
// refused with the very answer a resource that does not exist gets, and
// change nothing; every key works only where its scope allows.

var scopeNames = map[adminv1.KeyScope]string{
	adminv1.KeyScope_KEY_SCOPE_INGEST:      "ingest",
	adminv1.KeyScope_KEY_SCOPE_CHANGES:     "changes",
	adminv1.KeyScope_KEY_SCOPE_PARTNER:     "partner",
	adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK: "addressbook",
}

// tenant is an org with a key of each scope, its address-book sync on.
type tenant struct {
	org  string
	keys map[string]string // by scope name
	adm  adminv1.AdminServiceClient
}

func newTenant(t *testing.T, k *harness.Kurier, org string) tenant {
	t.Helper()
	ctx := context.Background()
	adm := k.Admin(t)
	if _, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: org}); err != nil {
		t.Fatal(err)
	}
	updateOrg(t, adm, &adminv1.Org{OrgId: org, AddressbookSyncEnabled: true, AllowPersonDeletion: true},
		"addressbook_sync_enabled", "allow_person_deletion")
	tn := tenant{org: org, keys: map[string]string{}, adm: adm}
	for scope, name := range scopeNames {
		key, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: org, Scopes: []adminv1.KeyScope{scope}})
		if err != nil {
			t.Fatal(err)
		}
		tn.keys[name] = key.GetSecret()
	}
	return tn
}

// natsIngest posts an event over NATS, answering as over HTTP: the status
// from Kurier-Status, Retry-After, X-Request-Id and the JSON. The request
// id is made of the event's, so that requests of the same event have the
// same answers.
func natsIngest(t *testing.T, nc *nats.Conn, org, key, id string) contract.Answer {
	t.Helper()
	m := nats.NewMsg("kurier.ingest." + org)
	m.Header.Set("Kurier-Key", key)
	m.Header.Set("X-Request-Id", "nats-"+id)
	m.Data = []byte(structured(id, "invoice.changed", ""))
	reply, err := nc.RequestMsg(m, 10*time.Second)
	if err != nil {
		t.Fatalf("nats ingest on %s: %v", org, err)
	}
	status, err := strconv.Atoi(reply.Header.Get("Kurier-Status"))
	if err != nil {
		t.Fatalf("nats ingest on %s: status %q", org, reply.Header.Get("Kurier-Status"))
	}
	h := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {reply.Header.Get("X-Request-Id")}}
	if ra := reply.Header.Get("Retry-After"); ra != "" {
		h.Set("Retry-After", ra)
	}
	return contract.Answer{Status: status, Header: h, Body: reply.Data}
}

func TestIsolation(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	ctx := context.Background()
	alpha, bravo := newTenant(t, k, "alpha"), newTenant(t, k, "bravo")
	adm := alpha.adm
	nc := k.Conn(t)

	// Bravo's resources: a queue with a message, a synced person, a
	// subscription, an event.
	qb := contract.CreateQueue(t, k.HTTP, bravo.keys["partner"])
	if a := qb.Send(t, `{"secret":"bravo's"}`); a.Status != http.StatusOK {
		t.Fatal(a.Status)
	}
	_, msgs := qb.Peek(t, "")
	mb := msgs[0].MessageID
	if a := pushSync(t, k, bravo.keys["addressbook"], contract.FE2Person("bravo-1", "Berta")); a.Status != http.StatusOK {
		t.Fatal(a)
	}
	sb := pingSub(t, adm, "bravo", "shop", "https://shop.example/ping", "invoice.changed").GetSubscription().GetSubscriptionId()
	if a := post(t, k, bravo.keys["ingest"], "application/cloudevents+json", []byte(structured("bravo-ev", "invoice.changed", `,"data":{"owner":"bravo"}`)), nil); a.Status != http.StatusAccepted {
		t.Fatalf("bravo's event: %+v", a)
	}
	// Alpha's own: a queue with a message, a queue subscription on it.
	qa := contract.CreateQueue(t, k.HTTP, alpha.keys["partner"])
	if a := qa.Send(t, `{"n":1}`); a.Status != http.StatusOK {
		t.Fatal(a.Status)
	}
	sa, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{OrgId: "alpha",
		System: "erp", EventTypes: []string{"invoice.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: qa.QueueID}})
	if err != nil {
		t.Fatal(err)
	}
	tr := newTraces(t, k)

	// What does not exist, in the same forms.
	absentQueue, absentSub, absentPerson, absentMsg := strings.Repeat("0f", 16), strings.Repeat("0e", 10), "nobody-1", "999999999"
	cases := 0

	// HTTP: alpha's credentials on bravo's resources answer as on
	// resources that do not exist.
	partner := hdr("X-PARTNER-KEY", alpha.keys["partner"])
	book := hdr("Authorization", alpha.keys["addressbook"])
	sender := hdr("X-COMNORM-NOTIFICATION-SECRET", qa.NotificationSecret)
	for _, c := range []struct {
		name                 string
		method, theirs, none string
		h                    map[string]string
		body                 string
	}{
		{"delete bravo's queue", http.MethodDelete, "/api/queues/" + qb.QueueID, "/api/queues/" + absentQueue, partner, ""},
		{"peek at bravo's queue", http.MethodGet, "/api/queues/" + qb.QueueID + "/messages?count=100", "/api/queues/" + absentQueue + "/messages?count=100", partner, ""},
		{"wait on bravo's queue", http.MethodGet, "/api/queues/" + qb.QueueID + "/messages?timeout=5", "/api/queues/" + absentQueue + "/messages?timeout=5", partner, ""},
		{"delete bravo's message in bravo's queue", http.MethodDelete, "/api/queues/" + qb.QueueID + "/messages/" + mb, "/api/queues/" + absentQueue + "/messages/" + mb, partner, ""},
		{"delete bravo's message through alpha's queue", http.MethodDelete, "/api/queues/" + qa.QueueID + "/messages/" + mb, "/api/queues/" + qa.QueueID + "/messages/" + absentMsg, partner, ""},
		{"delete bravo's synced person", http.MethodDelete, "/rest/addressbook/external/persons/bravo-1", "/rest/addressbook/external/persons/" + absentPerson, book, ""},
	} {
		what := "isolation: " + c.name
		tr.none(t, what, "", func() {
			// One request id for both, which the error bodies name.
			h := maps.Clone(c.h)
			h["X-Request-Id"] = fmt.Sprintf("isolation-%d", cases)
			start := time.Now()
			theirs := contract.Do(t, contract.Request{Method: c.method, URL: k.HTTP + c.theirs, Header: h, Body: []byte(c.body)})
			if time.Since(start) > 2*time.Second {
				t.Errorf("%s: took %v: the request waited on bravo's resource", what, time.Since(start))
			}
			none := contract.Do(t, contract.Request{Method: c.method, URL: k.HTTP + c.none, Header: h, Body: []byte(c.body)})
			if _, ok := theirs.ErrorForm(); !ok || theirs.Status < 400 || theirs.Status != none.Status || string(theirs.Body) != string(none.Body) {
				t.Errorf("%s: %d %s; on nothing: %d %s", what, theirs.Status, theirs.Body, none.Status, none.Body)
			}
		})
		cases++
	}

	// A queue secret opens its own queue only. (An unknown queue id is 404
	// to a sender, as ComNorm answers; queue ids are 128 random bits.)
	tr.none(t, "isolation: post to bravo's queue with alpha's queue secret", "", func() {
		a := contract.Do(t, contract.Request{Method: http.MethodPost, URL: k.HTTP + "/api/queues/" + qb.QueueID + "/messages", Header: sender, Body: []byte(`{"from":"alpha"}`)})
		if e, ok := a.ErrorForm(); !ok || a.Status != http.StatusUnauthorized || e.Field != "X-COMNORM-NOTIFICATION-SECRET" {
			t.Errorf("post to bravo's queue with alpha's queue secret: %d %s", a.Status, a.Body)
		}
	})
	cases++

	// Alpha's change feed has none of bravo's events, though bravo has one
	// of the type asked for.
	tr.none(t, "isolation: alpha's change feed", "", func() {
		if c := feed(t, k, alpha.keys["changes"], "system=shop&type=invoice.changed"); len(c.Changes) != 0 {
			t.Errorf("alpha's feed shows %v", c.docs())
		}
	})
	cases++

	// Over NATS, alpha's ingest key on bravo's subject is refused as on an
	// org that does not exist, and as a key that does not exist is: the
	// answer does not tell that the key is alpha's.
	// (The request itself is a NATS message: only the streams are checked.)
	tr.none(t, "isolation: nats ingest as bravo", "", func() {
		theirs := natsIngest(t, nc, "bravo", alpha.keys["ingest"], "alpha-into-bravo")
		none := natsIngest(t, nc, "nosuchorg", alpha.keys["ingest"], "alpha-into-bravo")
		unknown := natsIngest(t, nc, "bravo", "kur_0123456789abcdef_"+strings.Repeat("A", 43), "alpha-into-bravo")
		if theirs.Status != http.StatusUnauthorized || theirs.Status != none.Status || string(theirs.Body) != string(none.Body) ||
			theirs.Status != unknown.Status || string(theirs.Body) != string(unknown.Body) {
			t.Errorf("nats ingest with alpha's key as bravo: %d %s; as an org that does not exist: %d %s; with an unknown key: %d %s",
				theirs.Status, theirs.Body, none.Status, none.Body, unknown.Status, unknown.Body)
		}
	})
	cases++

	// Admin: RPCs that name an org and one of its resources answer for
	// bravo's resource under alpha as for one that does not exist (the id
	// aside, which NotFound messages repeat).
	same := func(name, theirsID, noneID string, call func(id string) error) {
		t.Helper()
		what := "isolation: admin " + name
		tr.none(t, what, "", func() {
			theirs, none := status.Convert(call(theirsID)), status.Convert(call(noneID))
			tm, nm := strings.ReplaceAll(theirs.Message(), theirsID, "<id>"), strings.ReplaceAll(none.Message(), noneID, "<id>")
			if theirs.Code() == 0 || theirs.Code() != none.Code() || tm != nm {
				t.Errorf("%s: %v %q; on nothing: %v %q", what, theirs.Code(), tm, none.Code(), nm)
			}
		})
		cases++
	}
	same("ListDeliveries of bravo's subscription", sb, absentSub, func(id string) error {
		_, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "alpha", SubscriptionId: id})
		return err
	})
	same("TailDeliveries of bravo's subscription", sb, absentSub, func(id string) error {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := adm.TailDeliveries(tctx, &adminv1.TailDeliveriesRequest{OrgId: "alpha", SubscriptionId: id})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	})
	same("ListDeadLetters of bravo's subscription", sb, absentSub, func(id string) error {
		_, err := adm.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: "alpha", SubscriptionId: id})
		return err
	})
	same("DeleteQueue of bravo's queue", qb.QueueID, absentQueue, func(id string) error {
		_, err := adm.DeleteQueue(ctx, &adminv1.DeleteQueueRequest{OrgId: "alpha", QueueId: id})
		return err
	})
	same("GetPerson of bravo's person", "bravo-1", absentPerson, func(id string) error {
		_, err := adm.GetPerson(ctx, &adminv1.GetPersonRequest{OrgId: "alpha", ExternalDbId: id})
		return err
	})
	same("DeletePerson of bravo's person", "bravo-1", absentPerson, func(id string) error {
		_, err := adm.DeletePerson(ctx, &adminv1.DeletePersonRequest{OrgId: "alpha", ExternalDbId: id})
		return err
	})
	same("CreateSubscription on bravo's queue", qb.QueueID, absentQueue, func(id string) error {
		_, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{OrgId: "alpha",
			System: "erp2", EventTypes: []string{"invoice.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: id}})
		return err
	})
	same("UpdateSubscription onto bravo's queue", qb.QueueID, absentQueue, func(id string) error {
		_, err := adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{
			SubscriptionId: sa.GetSubscription().GetSubscriptionId(), QueueId: id}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"queue_id"}}})
		return err
	})

	// That alpha's listings show nothing of bravo's is contract.AdminAPI's.

	// FE2's contract makes one exception: a sync listing an id that another
	// org's sync brought in is refused 412, which tells that the id is
	// taken. It names only what the caller sent, and changes nothing but
	// the lock that the sync took and gave back.
	before := harness.ReadStreams(t, tr.js)
	if a := pushSync(t, k, alpha.keys["addressbook"], contract.FE2Person("bravo-1", "Mallory")); a.Status != http.StatusPreconditionFailed ||
		a.Error.Code != "person_of_other_org" || a.Error.Field != "personList[0].externalDbId" {
		t.Errorf("alpha syncing bravo's id: %s", a)
	}
	after := harness.ReadStreams(t, tr.js)
	delete(before, "KV_locks")
	delete(after, "KV_locks")
	if changed := after.Changed(before); changed != nil {
		t.Errorf("alpha syncing bravo's id changed %v", changed)
	}
	t.Logf("isolation: %d cases (alpha's credentials against bravo's resources)", cases)

	// Bravo still has everything.
	if _, msgs := qb.Peek(t, "?count=10"); len(msgs) != 1 || msgs[0].MessageID != mb {
		t.Fatalf("bravo's queue holds %v", msgs)
	}
	if p := persons(t, adm, "bravo", true); len(p) != 1 || p["bravo-1"].GetFirstName() != "Berta" {
		t.Fatalf("bravo's book holds %v", p)
	}
}

// endpoint is an endpoint that takes a credential, as the scope matrix
// calls it.
type endpoint struct {
	name  string
	takes string // the credential it is for: a scope, or "queue secret"
	// allowed is the status the credential it takes gets.
	allowed int
	// allowedCode is the error code the allowed call gets ("" for none):
	// some are asked of things that do not exist, so as to change nothing.
	allowedCode string
	// refused is what a live credential it does not take gets: 403 where
	// the API tells a wrong scope apart, 401 where it does not (FE2's API,
	// the sender's secret).
	refused int
	call    func(t *testing.T, credential string) (int, string)
}

func TestKeyScopes(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	ctx := context.Background()
	alpha := newTenant(t, k, "alpha")
	nc := k.Conn(t)
	q := contract.CreateQueue(t, k.HTTP, alpha.keys["partner"])
	all, err := alpha.adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "alpha", Scopes: slices.Collect(maps.Keys(scopeNames))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alpha.adm.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: all.GetKey().GetKeyId()}); err != nil {
		t.Fatal(err)
	}

	viaHTTP := func(method, path, header, prefix, body, ct string) func(*testing.T, string) (int, string) {
		return func(t *testing.T, credential string) (int, string) {
			h := hdr(header, prefix+credential)
			if ct != "" {
				h["Content-Type"] = ct
			}
			a := contract.Do(t, contract.Request{Method: method, URL: k.HTTP + path, Header: h, Body: []byte(body)})
			e, _ := a.ErrorForm()
			return a.Status, e.Code
		}
	}
	n := 0
	nextID := func() string { n++; return fmt.Sprint("scope-", n) }
	absent := strings.Repeat("0f", 16)
	endpoints := []endpoint{
		{"POST /v1/events", "ingest", 202, "", 403, func(t *testing.T, c string) (int, string) {
			return viaHTTP(http.MethodPost, "/v1/events", "Authorization", "Bearer ", structured(nextID(), "invoice.changed", ""), "application/cloudevents+json")(t, c)
		}},
		{"GET /v1/changes", "changes", 200, "", 403, viaHTTP(http.MethodGet, "/v1/changes?system=shop&type=5", "Authorization", "Bearer ", "", "")},
		{"POST /api/queues", "partner", 200, "", 403, viaHTTP(http.MethodPost, "/api/queues", "X-PARTNER-KEY", "", "", "")},
		{"DELETE /api/queues/{queueId}", "partner", 404, "not_found", 403, viaHTTP(http.MethodDelete, "/api/queues/"+absent, "X-PARTNER-KEY", "", "", "")},
		{"GET /api/queues/{queueId}/messages", "partner", 200, "", 403, viaHTTP(http.MethodGet, "/api/queues/"+q.QueueID+"/messages", "X-PARTNER-KEY", "", "", "")},
		{"DELETE /api/queues/{queueId}/messages/{messageId}", "partner", 404, "not_found", 403, viaHTTP(http.MethodDelete, "/api/queues/"+q.QueueID+"/messages/1", "X-PARTNER-KEY", "", "", "")},
		{"POST /api/queues/{queueId}/messages", "queue secret", 200, "", 401, viaHTTP(http.MethodPost, "/api/queues/"+q.QueueID+"/messages", "X-COMNORM-NOTIFICATION-SECRET", "", `{"a":1}`, "")},
		{"POST /rest/addressbook/sync", "addressbook", 200, "", 401, viaHTTP(http.MethodPost, "/rest/addressbook/sync", "Authorization", "", `{"personList":[]}`, "application/json")},
		{"DELETE /rest/addressbook/external/persons/{externalDbId}", "addressbook", 404, "not_found", 401, viaHTTP(http.MethodDelete, "/rest/addressbook/external/persons/nobody", "Authorization", "", "", "")},
		{"NATS kurier.ingest.<org>", "ingest", 202, "", 403, func(t *testing.T, c string) (int, string) {
			a := natsIngest(t, nc, "alpha", c, nextID())
			e, _ := a.ErrorForm()
			return a.Status, e.Code
		}},
	}
	credentials := map[string]string{"queue secret": q.NotificationSecret, "revoked key of every scope": all.GetSecret(), "admin token": k.Token}
	for name, key := range alpha.keys {
		credentials[name] = key
	}
	cases := 0
	for _, ep := range endpoints {
		for cred, secret := range credentials {
			status, code := ep.call(t, secret)
			want, wantCode := ep.refused, map[int]string{401: "unauthenticated", 403: "forbidden"}[ep.refused]
			switch _, live := alpha.keys[cred]; {
			case ep.takes == cred:
				want, wantCode = ep.allowed, ep.allowedCode
			case !live: // revoked, the admin token, a queue secret as a key
				want, wantCode = 401, "unauthenticated"
			}
			if status != want || code != wantCode {
				t.Errorf("scopes: %s with the %s: %d %q, want %d %q", ep.name, cred, status, code, want, wantCode)
			}
			cases++
		}
	}
	// The admin API takes the admin token only.
	for cred, secret := range credentials {
		if cred == "admin token" {
			continue
		}
		_, err := k.AdminWith(t, secret).ListOrgs(ctx, &adminv1.ListOrgsRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("scopes: admin ListOrgs with the %s: %v", cred, err)
		}
		cases++
	}
	t.Logf("scopes: %d cases (%d credentials × %d endpoints, and the admin API)", cases, len(credentials), len(endpoints))
}
