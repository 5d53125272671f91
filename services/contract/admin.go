package contract

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/natstest"
)

// AdminAPI is the contract of the admin gRPC API.
func AdminAPI(t *testing.T, tg Target) {
	t.Run("Auth", func(t *testing.T) { t.Parallel(); adminAuth(t, tg) })
	t.Run("Orgs", func(t *testing.T) { t.Parallel(); adminOrgs(t, tg) })
	t.Run("Keys", func(t *testing.T) { t.Parallel(); adminKeys(t, tg) })
	t.Run("Subscriptions", func(t *testing.T) { t.Parallel(); adminSubscriptions(t, tg) })
	t.Run("PingClaims", func(t *testing.T) { t.Parallel(); adminPingClaims(t, tg) })
	t.Run("SignedPayload", func(t *testing.T) { t.Parallel(); adminSignedPayload(t, tg) })
	t.Run("RotatedSecretSigns", func(t *testing.T) { t.Parallel(); adminRotatedSecretSigns(t, tg) })
	t.Run("DeliveredRightAfterCreate", func(t *testing.T) { t.Parallel(); adminDeliveredRightAfterCreate(t, tg) })
	t.Run("DeadLetters", func(t *testing.T) { t.Parallel(); adminDeadLetters(t, tg) })
	t.Run("Isolation", func(t *testing.T) { t.Parallel(); adminIsolation(t, tg) })
	t.Run("BadInput", func(t *testing.T) { t.Parallel(); adminBadInput(t, tg) })
}

// adminAuth: every call needs the admin token; the health service and
// reflection, which probes and tools use, need none.
func adminAuth(t *testing.T, tg Target) {
	ctx := context.Background()
	for _, tok := range []string{"wrong-token-wrong-token", ""} {
		if _, err := Dial(t, tg.GRPC, tok).ListOrgs(ctx, &adminv1.ListOrgsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("token %q: %v, want Unauthenticated", tok, err)
		}
	}
	cc, err := grpc.NewClient(tg.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "kurier.admin.v1.AdminService"})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v %v", hr, err)
	}
	rc, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if rr, err := rc.Recv(); err != nil || !strings.Contains(rr.String(), "kurier.admin.v1.AdminService") {
		t.Errorf("reflection: %v %v", rr, err)
	}
}

// AdminInvalid answers nil if err is the admin API's refusal of an invalid
// argument: InvalidArgument whose message begins with the field at fault
// and ": ", carrying a BadRequest detail that names detail.
func AdminInvalid(err error, field, detail string) error {
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), field+": ") {
		return fmt.Errorf("%v %q, want InvalidArgument naming %s", st.Code(), st.Message(), field)
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == detail && v.GetDescription() != "" {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("%q: no BadRequest detail naming %s among %v", st.Message(), detail, st.Details())
}

// adminCode fails the test unless err has the code want.
func adminCode(t testing.TB, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

// adminRefused fails the test unless err refuses field as invalid.
func adminRefused(t testing.TB, what string, err error, field string) {
	t.Helper()
	if e := AdminInvalid(err, field, field); e != nil {
		t.Fatalf("%s: %v", what, e)
	}
}

// adminOrgID makes an org id no one has used.
func adminOrgID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "ct-" + hex.EncodeToString(b)
}

// adminQueue makes a pull queue of the org the partner key is of, through
// the queue API, and answers its id.
func adminQueue(t testing.TB, tg Target, key string) string {
	t.Helper()
	a := Do(t, Request{Method: http.MethodPost, URL: tg.HTTP + "/api/queues", Header: map[string]string{"X-PARTNER-KEY": key}})
	var q struct {
		QueueID string `json:"queueId"`
	}
	if a.Status != http.StatusOK || json.Unmarshal(a.Body, &q) != nil || q.QueueID == "" {
		t.Fatalf("POST /api/queues: %d %s", a.Status, a.Body)
	}
	return q.QueueID
}

// adminSub creates a subscription, failing the test if it cannot.
func adminSub(t testing.TB, tg Target, s *adminv1.Subscription) *adminv1.CreateSubscriptionResponse {
	t.Helper()
	resp, err := tg.Admin.CreateSubscription(context.Background(), &adminv1.CreateSubscriptionRequest{Subscription: s})
	if err != nil {
		t.Fatalf("create subscription %v: %v", s, err)
	}
	return resp
}

// adminSubIDs lists the ids of an org's subscriptions, in the order listed.
func adminSubIDs(t testing.TB, tg Target, org string) []string {
	t.Helper()
	l, err := tg.Admin.ListSubscriptions(context.Background(), &adminv1.ListSubscriptionsRequest{OrgId: org})
	if err != nil {
		t.Fatalf("list subscriptions of %s: %v", org, err)
	}
	ids := []string{}
	for _, s := range l.GetSubscriptions() {
		ids = append(ids, s.GetSubscriptionId())
	}
	return ids
}

// adminKeyIDs lists an org's keys as "id" or "id revoked".
func adminKeyIDs(t testing.TB, tg Target, org string) []string {
	t.Helper()
	l, err := tg.Admin.ListKeys(context.Background(), &adminv1.ListKeysRequest{OrgId: org})
	if err != nil {
		t.Fatalf("list keys of %s: %v", org, err)
	}
	ids := []string{}
	for _, k := range l.GetKeys() {
		s := k.GetKeyId()
		if k.GetRevokeTime() != nil {
			s += " revoked"
		}
		ids = append(ids, s)
	}
	return ids
}

// adminOrgIDs lists every org's id, in the order listed.
func adminOrgIDs(t testing.TB, tg Target) []string {
	t.Helper()
	l, err := tg.Admin.ListOrgs(context.Background(), &adminv1.ListOrgsRequest{})
	if err != nil {
		t.Fatalf("list orgs: %v", err)
	}
	var ids []string
	for _, o := range l.GetOrgs() {
		ids = append(ids, o.GetOrgId())
	}
	return ids
}

// adminSame fails the test unless got equals want.
func adminSame(t testing.TB, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

func adminOrgs(t *testing.T, tg Target) {
	ctx := context.Background()
	id, other := adminOrgID(), adminOrgID()
	created, err := tg.Admin.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: id, DisplayName: "Kontor Müller GmbH"})
	if err != nil || created.GetOrgId() != id || created.GetDisplayName() != "Kontor Müller GmbH" ||
		time.Since(created.GetCreateTime().AsTime()).Abs() > time.Hour ||
		created.GetAddressbookSyncEnabled() || created.GetPersonQuota() != 0 || created.GetAllowPersonDeletion() {
		t.Fatalf("create org: %v %v", created, err)
	}
	got, err := tg.Admin.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: id})
	if err != nil {
		t.Fatalf("get org: %v", err)
	}
	adminSame(t, "get org", got, created)
	_, err = tg.Admin.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: id, DisplayName: "again"})
	adminCode(t, "create an org id taken", err, codes.AlreadyExists)
	_, err = tg.Admin.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: adminOrgID()})
	adminCode(t, "get an org that does not exist", err, codes.NotFound)

	// Listings show every write made before them, at once, ordered by id.
	if _, err := tg.Admin.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: other}); err != nil {
		t.Fatalf("create org: %v", err)
	}
	orgs := adminOrgIDs(t, tg)
	if !slices.Contains(orgs, id) || !slices.Contains(orgs, other) || !slices.IsSorted(orgs) {
		t.Fatalf("list orgs after creating %s and %s: %v, want both, ordered by id", id, other, orgs)
	}

	t.Run("Update", func(t *testing.T) {
		// The mask names what changes; the rest stays as it was.
		upd, err := tg.Admin.UpdateOrg(ctx, &adminv1.UpdateOrgRequest{
			Org:        &adminv1.Org{OrgId: id, DisplayName: "Kontor Schulz", PersonQuota: 7, AllowPersonDeletion: true},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}},
		})
		want := proto.CloneOf(created)
		want.DisplayName = "Kontor Schulz"
		if err != nil {
			t.Fatalf("update display_name: %v", err)
		}
		adminSame(t, "update display_name", upd, want)
		// No mask: every field it can change.
		upd, err = tg.Admin.UpdateOrg(ctx, &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: id, DisplayName: "Alles neu",
			AddressbookSyncEnabled: true, PersonQuota: 5, AllowPersonDeletion: true}})
		want.DisplayName, want.AddressbookSyncEnabled, want.PersonQuota, want.AllowPersonDeletion = "Alles neu", true, 5, true
		if err != nil {
			t.Fatalf("update without a mask: %v", err)
		}
		adminSame(t, "update without a mask", upd, want)
		got, err := tg.Admin.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: id})
		if err != nil {
			t.Fatalf("get org: %v", err)
		}
		adminSame(t, "get after updates", got, want)
		_, err = tg.Admin.UpdateOrg(ctx, &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: adminOrgID(), DisplayName: "x"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
		adminCode(t, "update an org that does not exist", err, codes.NotFound)
	})

	t.Run("Delete", func(t *testing.T) {
		org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
		tg.Publish(t, key, Event("del-1", "invoice.changed", "I-1", nil))
		if _, err := tg.Admin.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: org}); err != nil {
			t.Fatalf("delete org: %v", err)
		}
		_, err := tg.Admin.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: org})
		adminCode(t, "get a deleted org", err, codes.NotFound)
		_, err = tg.Admin.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: org})
		adminCode(t, "list keys of a deleted org", err, codes.NotFound)
		_, err = tg.Admin.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: org})
		adminCode(t, "delete a deleted org", err, codes.NotFound)
		if p := tg.Post(t, key, "application/cloudevents+json", JSON(t, Event("del-2", "invoice.changed", "I-2", nil)), nil); p.Status != http.StatusUnauthorized {
			t.Fatalf("key of a deleted org: %d %s, want 401", p.Status, p.Body)
		}
		orgs := adminOrgIDs(t, tg)
		if slices.Contains(orgs, org) || !slices.Contains(orgs, id) || !slices.Contains(orgs, other) {
			t.Fatalf("list orgs after deleting %s: %v, want it gone and %s, %s kept", org, orgs, id, other)
		}
	})
}

func adminKeys(t *testing.T, tg Target) {
	ctx := context.Background()
	org, _ := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_CHANGES)
	first := adminKeyIDs(t, tg, org)
	if len(first) != 1 {
		t.Fatalf("keys of a new org with one key: %v", first)
	}
	_, err := tg.Admin.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: adminOrgID(), Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}})
	adminCode(t, "key of an org that does not exist", err, codes.NotFound)

	created, err := tg.Admin.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: org, Description: "erp",
		Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_CHANGES, adminv1.KeyScope_KEY_SCOPE_INGEST}})
	key := created.GetKey()
	if err != nil || !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(key.GetKeyId()) || key.GetOrgId() != org || key.GetDescription() != "erp" ||
		!slices.Equal(key.GetScopes(), []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_CHANGES}) ||
		key.GetCreateTime() == nil || key.GetRevokeTime() != nil {
		t.Fatalf("create key: %v %v", created, err)
	}
	secret := created.GetSecret()
	if !strings.HasPrefix(secret, "kur_") || len(secret) < 40 {
		t.Fatalf("create key: secret %q, want kur_… of at least 40 characters", secret)
	}

	// Listed at once, by id, without the secret.
	want := slices.Concat(first, []string{key.GetKeyId()})
	slices.Sort(want)
	if got := adminKeyIDs(t, tg, org); !slices.Equal(got, want) {
		t.Fatalf("keys after a create: %v, want %v", got, want)
	}
	list, err := tg.Admin.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: org})
	if err != nil {
		t.Fatalf("list keys: %v", err)
	}
	if text := prototext.Format(list); strings.Contains(text, secret[len(secret)-20:]) {
		t.Fatalf("the key listing shows the secret: %s", text)
	}
	for _, k := range list.GetKeys() {
		if k.GetKeyId() == key.GetKeyId() {
			adminSame(t, "listed key", k, key)
		}
	}

	// The key works until it is revoked, and not a moment after.
	tg.Publish(t, secret, Event("rev-1", "invoice.changed", "I-1", nil))
	revoked, err := tg.Admin.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: key.GetKeyId()})
	if err != nil || revoked.GetKeyId() != key.GetKeyId() || revoked.GetRevokeTime() == nil {
		t.Fatalf("revoke: %v %v", revoked, err)
	}
	if p := tg.Post(t, secret, "application/cloudevents+json", JSON(t, Event("rev-2", "invoice.changed", "I-2", nil)), nil); p.Status != http.StatusUnauthorized {
		t.Fatalf("a revoked key right after RevokeKey: %d %s, want 401", p.Status, p.Body)
	}
	for i, k := range want {
		if k == key.GetKeyId() {
			want[i] += " revoked"
		}
	}
	if got := adminKeyIDs(t, tg, org); !slices.Equal(got, want) {
		t.Fatalf("keys after a revocation: %v, want %v", got, want)
	}
	_, err = tg.Admin.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: "0123456789abcdef"})
	adminCode(t, "revoke a key that does not exist", err, codes.NotFound)
}

// adminMode is how the subscriptions section makes a subscription of one
// delivery mode in an org.
type adminMode struct {
	name string
	mode adminv1.DeliveryMode
	// scope is the key scope the org needs to make what the mode needs.
	scope adminv1.KeyScope
	sub   func(t *testing.T, tg Target, org, key string) *adminv1.Subscription
}

var adminModes = []adminMode{
	{"Ping", adminv1.DeliveryMode_DELIVERY_MODE_PING, adminv1.KeyScope_KEY_SCOPE_INGEST, func(_ *testing.T, tg Target, org, _ string) *adminv1.Subscription {
		return &adminv1.Subscription{OrgId: org, System: "shop", Name: "Shop", EventTypes: []string{"5"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: tg.Hooks.URL + "/" + org + "/ping?x=1"}
	}},
	{"Payload", adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, adminv1.KeyScope_KEY_SCOPE_INGEST, func(_ *testing.T, tg Target, org, _ string) *adminv1.Subscription {
		return &adminv1.Subscription{OrgId: org, System: "crm", Name: "CRM", EventTypes: []string{"invoice.changed"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: tg.Hooks.URL + "/" + org + "/post"}
	}},
	{"Queue", adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, adminv1.KeyScope_KEY_SCOPE_PARTNER, func(t *testing.T, tg Target, org, key string) *adminv1.Subscription {
		return &adminv1.Subscription{OrgId: org, System: "hub", Name: "Hub", EventTypes: []string{"invoice.changed"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: adminQueue(t, tg, key)}
	}},
}

func adminSubscriptions(t *testing.T, tg Target) {
	for _, m := range adminModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			adminSubscriptionLife(t, tg, m)
		})
	}
	t.Run("ActiveByDefault", func(t *testing.T) {
		t.Parallel()
		adminActiveByDefault(t, tg)
	})
}

// adminSubscriptionLife takes a subscription of one mode through its life:
// create, read, list, update, switch, preview, rotate and delete.
func adminSubscriptionLife(t *testing.T, tg Target, m adminMode) {
	ctx := context.Background()
	org, key := tg.Org(t, m.scope)
	in := m.sub(t, tg, org, key)
	created := adminSub(t, tg, in)
	sub, secret := created.GetSubscription(), created.GetSigningSecret()
	id := sub.GetSubscriptionId()
	if !regexp.MustCompile(`^[0-9a-f]{20}$`).MatchString(id) || sub.GetOrgId() != org || sub.GetMode() != m.mode || !sub.GetActive() ||
		sub.GetSystem() != in.GetSystem() || sub.GetName() != in.GetName() || sub.GetUrl() != in.GetUrl() || sub.GetQueueId() != in.GetQueueId() ||
		!slices.Equal(sub.GetEventTypes(), []string{"invoice.changed"}) || sub.GetCreateTime() == nil || sub.GetUpdateTime() == nil {
		t.Fatalf("create: %v, from %v", sub, in)
	}
	if m.mode != adminv1.DeliveryMode_DELIVERY_MODE_QUEUE && !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("create: signing secret %q, want whsec_…", secret)
	}
	got, err := tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	adminSame(t, "get", got, sub)
	list, err := tg.Admin.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: org})
	if err != nil || len(list.GetSubscriptions()) != 1 {
		t.Fatalf("list right after the create: %v %v, want the one subscription", list, err)
	}
	adminSame(t, "listed", list.GetSubscriptions()[0], sub)
	if secret != "" && (strings.Contains(prototext.Format(got), secret) || strings.Contains(prototext.Format(list), secret)) {
		t.Fatalf("the signing secret is shown again: get %v, list %v", got, list)
	}

	t.Run("Update", func(t *testing.T) {
		upd, err := tg.Admin.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
			Subscription: &adminv1.Subscription{SubscriptionId: id, Name: "renamed", System: "ignored", EventTypes: []string{"6"}},
			UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"name"}},
		})
		if err != nil || upd.GetName() != "renamed" || upd.GetSystem() != sub.GetSystem() || !slices.Equal(upd.GetEventTypes(), sub.GetEventTypes()) ||
			upd.GetUpdateTime().AsTime().Before(sub.GetUpdateTime().AsTime()) {
			t.Fatalf("update name: %v %v", upd, err)
		}
		if m.mode != adminv1.DeliveryMode_DELIVERY_MODE_QUEUE {
			url := sub.GetUrl() + "&v=2"
			if upd, err = tg.Admin.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
				Subscription: &adminv1.Subscription{SubscriptionId: id, Url: url},
				UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"url"}},
			}); err != nil || upd.GetUrl() != url || upd.GetName() != "renamed" {
				t.Fatalf("update url: %v %v", upd, err)
			}
		}
		got, err := tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		adminSame(t, "get after the updates", got, upd)
		_, err = tg.Admin.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
			Subscription: &adminv1.Subscription{SubscriptionId: id, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING},
			UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"mode"}},
		})
		adminRefused(t, "update the mode", err, "update_mask")
		_, err = tg.Admin.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
			Subscription: &adminv1.Subscription{SubscriptionId: "0123456789abcdef0123", Name: "x"},
			UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"name"}},
		})
		adminCode(t, "update a subscription that does not exist", err, codes.NotFound)
	})

	t.Run("SetActive", func(t *testing.T) {
		for _, active := range []bool{false, true} {
			s, err := tg.Admin.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: id, Active: active})
			if err != nil || s.GetActive() != active {
				t.Fatalf("switch to active %v: %v %v", active, s, err)
			}
			if g, err := tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id}); err != nil || g.GetActive() != active {
				t.Fatalf("get after switching to active %v: %v %v", active, g, err)
			}
		}
	})

	t.Run("Preview", func(t *testing.T) {
		cur, err := tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		prev, err := tg.Admin.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: id})
		if err != nil {
			t.Fatalf("preview: %v", err)
		}
		var sample map[string]any
		switch m.mode {
		case adminv1.DeliveryMode_DELIVERY_MODE_PING:
			// A ping is a GET on the URL exactly as configured.
			if prev.GetMethod() != http.MethodGet || prev.GetUrl() != cur.GetUrl() || prev.GetSampleBody() != "" {
				t.Fatalf("preview of a ping subscription: %v, want GET %s without a body", prev, cur.GetUrl())
			}
		case adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD:
			if prev.GetMethod() != http.MethodPost || !strings.HasPrefix(prev.GetUrl(), cur.GetUrl()+"?event=invoice.changed&") ||
				json.Unmarshal([]byte(prev.GetSampleBody()), &sample) != nil || sample["type"] != "invoice.changed" {
				t.Fatalf("preview of a payload subscription: %v, want POST %s?event=invoice.changed&… with an event", prev, cur.GetUrl())
			}
		case adminv1.DeliveryMode_DELIVERY_MODE_QUEUE:
			if prev.GetMethod() != "" || prev.GetUrl() != "" || json.Unmarshal([]byte(prev.GetSampleBody()), &sample) != nil || sample["type"] != "invoice.changed" {
				t.Fatalf("preview of a queue subscription: %v, want no method or URL, a message of type invoice.changed", prev)
			}
		}
		_, err = tg.Admin.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: id, EventType: "quote.changed"})
		adminRefused(t, "preview a type the subscription lacks", err, "event_type")
	})

	t.Run("RotateSecret", func(t *testing.T) {
		before, err := tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		rot, err := tg.Admin.RotateSecret(ctx, &adminv1.RotateSecretRequest{SubscriptionId: id})
		if m.mode == adminv1.DeliveryMode_DELIVERY_MODE_QUEUE {
			// A queue subscription signs nothing: refused, and nothing changes.
			adminRefused(t, "rotate the secret of a queue subscription", err, "subscription_id")
			after, err := tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			adminSame(t, "after a refused rotation", after, before)
			return
		}
		// The previous secret still signs for the default grace of 24 h.
		grace := time.Until(rot.GetPreviousValidUntil().AsTime())
		if err != nil || !strings.HasPrefix(rot.GetSigningSecret(), "whsec_") || rot.GetSigningSecret() == secret ||
			grace < 24*time.Hour-5*time.Minute || grace > 24*time.Hour+5*time.Minute {
			t.Fatalf("rotate: %v %v, want a new whsec_… secret and the old one valid for 24 h", rot, err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		if _, err := tg.Admin.DeleteSubscription(ctx, &adminv1.DeleteSubscriptionRequest{SubscriptionId: id}); err != nil {
			t.Fatalf("delete: %v", err)
		}
		_, err := tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
		adminCode(t, "get a deleted subscription", err, codes.NotFound)
		if ids := adminSubIDs(t, tg, org); len(ids) != 0 {
			t.Fatalf("list right after the delete: %v", ids)
		}
		_, err = tg.Admin.DeleteSubscription(ctx, &adminv1.DeleteSubscriptionRequest{SubscriptionId: id})
		adminCode(t, "delete a deleted subscription", err, codes.NotFound)
	})
}

// adminActiveByDefault: a subscription is created active unless the
// request sets inactive. subscription.active, a proto bool that cannot tell
// false from not given, is not read: a client that sets it true still gets
// an active one, and one that sets it beside inactive is told the request
// contradicts itself.
func adminActiveByDefault(t *testing.T, tg Target) {
	ctx := context.Background()
	org, _ := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
	create := func(system string, active, inactive bool) (*adminv1.Subscription, error) {
		resp, err := tg.Admin.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
			OrgId: org, System: system, EventTypes: []string{"invoice.changed"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: tg.Hooks.URL + "/" + org + "/" + system, Active: active,
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
		got, err := tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: sub.GetSubscriptionId()})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if sub.GetActive() != c.want || got.GetActive() != c.want {
			t.Errorf("active %v, inactive %v: created active %v, read active %v; want %v", c.active, c.inactive, sub.GetActive(), got.GetActive(), c.want)
		}
	}
	_, err := create("both", true, true)
	adminRefused(t, "active and inactive", err, "inactive")
	if ids := adminSubIDs(t, tg, org); len(ids) != 3 {
		t.Errorf("after a refused request: subscriptions %v, want the 3 made before", ids)
	}
}

// adminPingClaims: a system has one ping subscription per event type;
// another system may have the same type; deleting the org frees its pairs.
func adminPingClaims(t *testing.T, tg Target) {
	ctx := context.Background()
	org, _ := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
	base := func() *adminv1.Subscription {
		return &adminv1.Subscription{OrgId: org, System: "shop", EventTypes: []string{"invoice.changed", "6"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: "https://shop.example/hook"}
	}
	create := func(s *adminv1.Subscription) error {
		_, err := tg.Admin.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: s})
		return err
	}
	first := adminSub(t, tg, base()).GetSubscription()
	id := first.GetSubscriptionId()
	if !slices.Equal(first.GetEventTypes(), []string{"invoice.changed", "quote.changed"}) {
		t.Fatalf("Collmex code 6 stored as %v, want quote.changed", first.GetEventTypes())
	}
	adminCode(t, "same system and types again", create(base()), codes.AlreadyExists)
	other := base()
	other.EventTypes = []string{"quote.changed"} // what 6 stands for: taken too
	adminCode(t, "a type the system has", create(other), codes.AlreadyExists)
	other.System = "crm"
	if err := create(other); err != nil {
		t.Fatalf("another system with the type: %v", err)
	}

	upd, err := tg.Admin.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: id, EventTypes: []string{"5"}},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"event_types"}},
	})
	if err != nil || !slices.Equal(upd.GetEventTypes(), []string{"invoice.changed"}) {
		t.Fatalf("update types to 5: %v %v", upd, err)
	}
	freed := base()
	freed.EventTypes = []string{"quote.changed"}
	if err := create(freed); err != nil {
		t.Fatalf("a type given up by an update is free again: %v", err)
	}
	_, err = tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: "0123456789abcdef0123"})
	adminCode(t, "get a subscription that does not exist", err, codes.NotFound)

	// Deleting the org deletes its subscriptions and frees their pairs.
	if _, err := tg.Admin.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: org}); err != nil {
		t.Fatalf("delete org: %v", err)
	}
	_, err = tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
	adminCode(t, "subscription of a deleted org", err, codes.NotFound)
	_, err = tg.Admin.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: org})
	adminCode(t, "list subscriptions of a deleted org", err, codes.NotFound)
	if _, err := tg.Admin.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: org}); err != nil {
		t.Fatalf("create the org again: %v", err)
	}
	if err := create(base()); err != nil {
		t.Fatalf("pair of a deleted org not freed: %v", err)
	}
	if ids := adminSubIDs(t, tg, org); len(ids) != 1 {
		t.Fatalf("the org made again lists %v, want only its new subscription", ids)
	}
}

// adminVerify fails the test unless the webhook request h is signed with
// secret, as Standard Webhooks verifies it.
func adminVerify(t testing.TB, what string, h Hit, secret string) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("%s: secret %q: %v", what, secret, err)
	}
	if err := wh.Verify([]byte(h.Body), h.Header); err != nil {
		t.Fatalf("%s: signature (headers %v): %v", what, h.Header, err)
	}
}

// adminPath is a hit's path without its query.
func adminPath(h Hit) string {
	p, _, _ := strings.Cut(h.Path, "?")
	return p
}

// adminSignedPayload: a payload subscription POSTs the event, signed as
// Standard Webhooks signs, with the GET part, headers and body its
// settings ask for, and the delivery log shows it with secret attributes
// masked.
func adminSignedPayload(t *testing.T, tg Target) {
	ctx := context.Background()
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
	base := tg.Hooks.URL + "/" + org
	payload := func(s *adminv1.Subscription) *adminv1.CreateSubscriptionResponse {
		s.OrgId, s.Mode = org, adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD
		return adminSub(t, tg, s)
	}
	std := payload(&adminv1.Subscription{System: "std", EventTypes: []string{"project.created"}, Url: base + "/std?x=1",
		Table: "Auftrag", Conditions: "status = offen & typ=A",
		Attributes: []*adminv1.Attribute{{Name: "token", Value: "a b&c"}, {Name: "mandant", Value: "7", Secret: true}},
		Headers:    []*adminv1.Header{{Name: "X-Tenant", Value: "acme"}}})
	flat := payload(&adminv1.Subscription{System: "flat", EventTypes: []string{"project.created"}, Url: base + "/flat",
		Table: "Auftrag", Fields: []string{"number", "total"}, PayloadFormat: adminv1.PayloadFormat_PAYLOAD_FORMAT_FLAT,
		Attributes: []*adminv1.Attribute{{Name: "source", Value: "kurier"}}})
	stdID := std.GetSubscription().GetSubscriptionId()

	wantStd := "/" + org + "/std?x=1&event=project.created&table=Auftrag&conditions=status+%3D+offen+%26+typ%3DA&token=a+b%26c&mandant=7"
	prev, err := tg.Admin.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: stdID})
	if err != nil || prev.GetMethod() != http.MethodPost || prev.GetUrl() != tg.Hooks.URL+wantStd || !json.Valid([]byte(prev.GetSampleBody())) {
		t.Fatalf("preview: %v %v, want POST %s with a JSON body", prev, err, tg.Hooks.URL+wantStd)
	}

	tg.Publish(t, key, Event("pay-1", "project.created", "P-1", json.RawMessage(`{"number":"P-1","total":1.50,"customer":"Müller"}`)))
	got := map[string]Hit{}
	for _, h := range tg.Hooks.WaitUnder(t, 30*time.Second, "/"+org+"/", 2) {
		got[adminPath(h)] = h
	}
	h := got["/"+org+"/std"]
	if h.Method != http.MethodPost || h.Path != wantStd {
		t.Fatalf("standard request %s %s, want POST %s (all: %v)", h.Method, h.Path, wantStd, got)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(h.Body), &body); err != nil || body["id"] != "pay-1" || body["type"] != "project.created" || body["subject"] != "P-1" ||
		body["timestamp"] == nil || fmt.Sprint(body["data"]) != "map[customer:Müller number:P-1 total:1.5]" {
		t.Fatalf("standard body %s", h.Body)
	}
	if h.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(h.Header.Get("User-Agent"), "kurier/") || h.Header.Get("X-Tenant") != "acme" ||
		h.Header.Get("webhook-timestamp") == "" || !strings.HasPrefix(h.Header.Get("webhook-signature"), "v1,") {
		t.Fatalf("standard headers %v", h.Header)
	}
	if !strings.HasPrefix(h.Header.Get("webhook-id"), "msg_"+stdID+"_") {
		t.Fatalf("webhook-id %q, want msg_%s_…", h.Header.Get("webhook-id"), stdID)
	}
	adminVerify(t, "standard request", h, std.GetSigningSecret())
	if wh, _ := standardwebhooks.NewWebhook(flat.GetSigningSecret()); wh.Verify([]byte(h.Body), h.Header) == nil {
		t.Fatal("another subscription's secret verifies the standard request")
	}

	f := got["/"+org+"/flat"]
	if f.Path != "/"+org+"/flat?event=project.created&table=Auftrag&conditions=&source=kurier" || f.Body != `{"number":"P-1","total":1.50,"source":"kurier"}` {
		t.Fatalf("flat request %s %s", f.Path, f.Body)
	}
	adminVerify(t, "flat request", f, flat.GetSigningSecret())

	// The delivery log shows the delivery, its secret attribute masked.
	var list *adminv1.ListDeliveriesResponse
	natstest.WaitForErr(t, 30*time.Second, "the delivery in the log", func() (err error) {
		list, err = tg.Admin.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: org, SubscriptionId: stdID})
		if err == nil && len(list.GetDeliveries()) != 1 {
			err = fmt.Errorf("log: %v", list.GetDeliveries())
		}
		return err
	})
	d := list.GetDeliveries()[0]
	if d.GetStatusCode() != 200 || d.GetOrgId() != org || d.GetSubscriptionId() != stdID || d.GetSystem() != "std" ||
		d.GetMode() != adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD || d.GetEventId() != "pay-1" || d.GetAttempt() != 1 || d.GetOutcome() != "delivered" ||
		!strings.Contains(d.GetUrl(), "mandant=%2A%2A%2A") && !strings.Contains(d.GetUrl(), "mandant=***") {
		t.Fatalf("logged as %v", d)
	}
	all, err := tg.Admin.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: org})
	if err != nil || len(all.GetDeliveries()) != 2 {
		t.Fatalf("the org's log: %v %v, want both deliveries", all, err)
	}
}

// adminRotatedSecretSigns: after RotateSecret, requests carry a signature
// with each secret, so receivers holding either verify them.
func adminRotatedSecretSigns(t *testing.T, tg Target) {
	ctx := context.Background()
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
	created := adminSub(t, tg, &adminv1.Subscription{OrgId: org, System: "shop", EventTypes: []string{"invoice.changed"},
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: tg.Hooks.URL + "/" + org + "/p?x=1"})
	rot, err := tg.Admin.RotateSecret(ctx, &adminv1.RotateSecretRequest{SubscriptionId: created.GetSubscription().GetSubscriptionId()})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	// A change right after the calls answered: its ping comes, signed with
	// both secrets.
	tg.Publish(t, key, Event("rot-1", "invoice.changed", "INV-1", nil))
	h := tg.Hooks.WaitUnder(t, 30*time.Second, "/"+org+"/", 1)[0]
	if sigs := strings.Fields(h.Header.Get("webhook-signature")); len(sigs) != 2 {
		t.Fatalf("ping signed %q, want a signature with each secret", h.Header.Get("webhook-signature"))
	}
	if h.Method != http.MethodGet || h.Path != "/"+org+"/p?x=1" {
		t.Fatalf("ping %s %s", h.Method, h.Path)
	}
	adminVerify(t, "with the previous secret", h, created.GetSigningSecret())
	adminVerify(t, "with the new secret", h, rot.GetSigningSecret())
	if wh, _ := standardwebhooks.NewWebhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); wh.Verify([]byte(h.Body), h.Header) == nil {
		t.Fatal("a secret not in use verifies the ping")
	}
}

// adminDeliveredRightAfterCreate: an event posted right after
// CreateSubscription answered is delivered, in every mode: the ping comes,
// the payload is POSTed, the message is queued. So is one posted right
// after UpdateSubscription gave the subscriptions a new type, and one
// posted right after SetSubscriptionActive switched them on again. No
// call waits for the dispatchers to learn of a change.
func adminDeliveredRightAfterCreate(t *testing.T, tg Target) {
	ctx := context.Background()
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	pings, posts := "/"+org+"/ping", "/"+org+"/post"
	q := CreateQueue(t, tg.HTTP, key)
	var ids []string
	for _, s := range []*adminv1.Subscription{
		{System: "shop", Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: tg.Hooks.URL + pings},
		{System: "crm", Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: tg.Hooks.URL + posts},
		{System: "hub", Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: q.QueueID},
	} {
		s.OrgId, s.EventTypes = org, []string{"invoice.changed"}
		ids = append(ids, adminSub(t, tg, s).GetSubscription().GetSubscriptionId())
	}
	// delivered posts an event at once and fails the test unless it
	// reaches all three: the n-th ping after the post, a POST and a
	// message of the event.
	delivered := func(what string, n int, id, typ string) {
		t.Helper()
		posted := time.Now()
		tg.Publish(t, key, Event(id, typ, "DOC-1", nil))
		if h := tg.Hooks.WaitUnder(t, 30*time.Second, pings, n)[n-1]; !h.At.After(posted) {
			t.Fatalf("%s: ping %d came at %v, before the event was posted at %v", what, n, h.At, posted)
		}
		natstest.WaitForErr(t, 30*time.Second, what+": the event POSTed", func() error {
			for _, h := range tg.Hooks.Under(t, posts) {
				var b struct{ ID string }
				if json.Unmarshal([]byte(h.Body), &b) == nil && b.ID == id {
					return nil
				}
			}
			return fmt.Errorf("not among %d requests", len(tg.Hooks.Under(t, posts)))
		})
		q.WaitFor(t, 30*time.Second, []string{id}, EventKey)
	}

	delivered("right after CreateSubscription", 1, "now-created", "invoice.changed")
	for _, id := range ids {
		if _, err := tg.Admin.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
			Subscription: &adminv1.Subscription{SubscriptionId: id, EventTypes: []string{"invoice.changed", "quote.changed"}},
			UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"event_types"}},
		}); err != nil {
			t.Fatalf("add quote.changed to %s: %v", id, err)
		}
	}
	delivered("a new type right after UpdateSubscription", 2, "now-typed", "quote.changed")
	for _, id := range ids {
		for _, on := range []bool{false, true} {
			if _, err := tg.Admin.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: id, Active: on}); err != nil {
				t.Fatalf("switch %s active=%v: %v", id, on, err)
			}
		}
	}
	delivered("right after SetSubscriptionActive switched on", 3, "now-on", "invoice.changed")
}

// adminDeadLetters: a payload subscription whose receiver fails retries
// on its schedule and then gives the delivery up as a dead letter, which
// Redeliver sends again, with its webhook-id, once the receiver is healthy.
func adminDeadLetters(t *testing.T, tg Target) {
	ctx := context.Background()
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST)
	// The receiver answers a path beginning /status/500/ with 500. Ordered,
	// as the log's attempts are checked in order: dl-1's give up before
	// dl-2's begin.
	failing, healthy := "/status/500/"+org+"/dl", "/"+org+"/ok"
	sub := adminSub(t, tg, &adminv1.Subscription{OrgId: org, System: "dl", EventTypes: []string{"invoice.changed"},
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: tg.Hooks.URL + failing,
		RetrySchedule: []*durationpb.Duration{durationpb.New(100 * time.Millisecond)}, Ordering: adminv1.Ordering_ORDERING_ORDERED}).GetSubscription()
	id := sub.GetSubscriptionId()
	since := time.Now().Add(-time.Minute) // before the events, whatever the target's clock says
	tg.Publish(t, key, Event("dl-1", "invoice.changed", "I-1", nil), Event("dl-2", "invoice.changed", "I-2", nil))

	// Each event: the first attempt and one retry.
	webhookIDs := map[string]string{} // event id -> webhook-id
	for _, h := range tg.Hooks.WaitUnder(t, 30*time.Second, failing, 4) {
		var b struct{ ID string }
		if err := json.Unmarshal([]byte(h.Body), &b); err != nil {
			t.Fatalf("body %s: %v", h.Body, err)
		}
		if w, ok := webhookIDs[b.ID]; ok && w != h.Header.Get("webhook-id") {
			t.Fatalf("the retry of %s came as %q, the first attempt as %q", b.ID, h.Header.Get("webhook-id"), w)
		}
		webhookIDs[b.ID] = h.Header.Get("webhook-id")
	}
	var log []*adminv1.Delivery
	natstest.WaitForErr(t, 30*time.Second, "4 attempts in the log", func() error {
		l, err := tg.Admin.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: org, SubscriptionId: id})
		if err != nil {
			return err
		}
		if log = l.GetDeliveries(); len(log) != 4 {
			return fmt.Errorf("logged %v", log)
		}
		return nil
	})
	var attempts []string
	for _, d := range log {
		attempts = append(attempts, fmt.Sprintf("%s#%d %d %s", d.GetEventId(), d.GetAttempt(), d.GetStatusCode(), d.GetOutcome()))
		if d.GetOutcome() == "retry" && d.GetNextAttempt() == nil {
			t.Errorf("a retry without its next attempt: %v", d)
		}
	}
	if want := []string{"dl-1#1 500 retry", "dl-1#2 500 dead", "dl-2#1 500 retry", "dl-2#2 500 dead"}; !slices.Equal(attempts, want) {
		t.Fatalf("logged attempts %v, want %v", attempts, want)
	}
	var dl []*adminv1.DeadLetter
	natstest.WaitForErr(t, 30*time.Second, "2 dead letters", func() error {
		l, err := tg.Admin.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: org, SubscriptionId: id})
		if err != nil {
			return err
		}
		if dl = l.GetDeadLetters(); len(dl) != 2 {
			return fmt.Errorf("dead letters: %v", dl)
		}
		return nil
	})
	for i, e := range []string{"dl-1", "dl-2"} {
		if d := dl[i]; d.GetEventId() != e || d.GetDeliveryId() != webhookIDs[e] || d.GetSubscriptionId() != id || d.GetEventType() != "invoice.changed" {
			t.Fatalf("dead letter %d: %v, want %s with webhook-id %s", i, d, e, webhookIDs[e])
		}
	}

	if _, err := tg.Admin.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: id, Url: tg.Hooks.URL + healthy},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"url"}},
	}); err != nil {
		t.Fatalf("update url: %v", err)
	}
	// One, by its delivery id: it comes again with its webhook-id.
	r, err := tg.Admin.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: id, What: &adminv1.RedeliverRequest_DeliveryId{DeliveryId: webhookIDs["dl-1"]}})
	if err != nil || r.GetQueued() != 1 {
		t.Fatalf("redeliver one: %v %v", r, err)
	}
	if h := tg.Hooks.WaitUnder(t, 30*time.Second, healthy, 1)[0]; h.Header.Get("webhook-id") != webhookIDs["dl-1"] {
		t.Fatalf("redelivered %q, want %q", h.Header.Get("webhook-id"), webhookIDs["dl-1"])
	}
	// The rest.
	if r, err := tg.Admin.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: id, What: &adminv1.RedeliverRequest_AllDeadLetters{AllDeadLetters: true}}); err != nil || r.GetQueued() != 1 {
		t.Fatalf("redeliver all: %v %v", r, err)
	}
	if h := tg.Hooks.WaitUnder(t, 30*time.Second, healthy, 2)[1]; h.Header.Get("webhook-id") != webhookIDs["dl-2"] {
		t.Fatalf("redelivered %q, want %q", h.Header.Get("webhook-id"), webhookIDs["dl-2"])
	}
	natstest.WaitForErr(t, 30*time.Second, "no dead letters left", func() error {
		l, err := tg.Admin.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: org})
		if err == nil && len(l.GetDeadLetters()) != 0 {
			err = fmt.Errorf("dead letters left: %v", l.GetDeadLetters())
		}
		return err
	})
	_, err = tg.Admin.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: id, What: &adminv1.RedeliverRequest_DeliveryId{DeliveryId: "msg_nope_1"}})
	adminCode(t, "redeliver a dead letter that does not exist", err, codes.NotFound)

	// Every event stored in a time range, delivered or not.
	r, err = tg.Admin.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: id, What: &adminv1.RedeliverRequest_Events{Events: &adminv1.TimeRange{Since: timestamppb.New(since)}}})
	if err != nil || r.GetQueued() != 2 {
		t.Fatalf("redeliver the range: %v %v, want 2 queued", r, err)
	}
	var again []string
	for _, h := range tg.Hooks.WaitUnder(t, 30*time.Second, healthy, 4)[2:] {
		var b struct{ ID string }
		_ = json.Unmarshal([]byte(h.Body), &b)
		again = append(again, b.ID)
	}
	if slices.Sort(again); !slices.Equal(again, []string{"dl-1", "dl-2"}) {
		t.Fatalf("redelivered the range as %v, want dl-1 and dl-2", again)
	}
}

// adminIsolation: what an org has stays out of every other org's
// listings, and naming one org's subscription under another answers as
// a subscription that does not exist.
func adminIsolation(t *testing.T, tg Target) {
	ctx := context.Background()
	alpha, _ := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_CHANGES)
	bravo, bravoKey := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	alphaKeys := adminKeyIDs(t, tg, alpha)

	// Bravo has one of everything: a queue, a person, a ping subscription,
	// and a payload subscription with deliveries and a dead letter, of an
	// event posted right after the subscriptions are created.
	queue := adminQueue(t, tg, bravoKey)
	if _, err := tg.Admin.CreatePerson(ctx, &adminv1.CreatePersonRequest{OrgId: bravo, Person: &adminv1.Person{ExternalDbId: "bravo-1", FirstName: "Berta"}}); err != nil {
		t.Fatalf("create bravo's person: %v", err)
	}
	ping := adminSub(t, tg, &adminv1.Subscription{OrgId: bravo, System: "shop", EventTypes: []string{"invoice.changed"},
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: tg.Hooks.URL + "/" + bravo + "/ping"}).GetSubscription().GetSubscriptionId()
	dead := adminSub(t, tg, &adminv1.Subscription{OrgId: bravo, System: "crm", EventTypes: []string{"invoice.changed"},
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: tg.Hooks.URL + "/status/500/" + bravo + "/",
		RetrySchedule: []*durationpb.Duration{durationpb.New(100 * time.Millisecond)}}).GetSubscription().GetSubscriptionId()
	tg.Publish(t, bravoKey, Event("bravo-ev", "invoice.changed", "I-1", nil))
	natstest.WaitForErr(t, 60*time.Second, "bravo's deliveries and dead letter", func() error {
		d, err := tg.Admin.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: bravo})
		if err != nil {
			return err
		}
		l, err := tg.Admin.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: bravo})
		if err != nil {
			return err
		}
		if len(d.GetDeliveries()) < 2 || len(l.GetDeadLetters()) != 1 {
			return fmt.Errorf("deliveries %v, dead letters %v", d.GetDeliveries(), l.GetDeadLetters())
		}
		return nil
	})

	// Alpha's listings are as a new org's.
	for name, list := range map[string]func() (proto.Message, int, error){
		"ListSubscriptions": func() (proto.Message, int, error) {
			r, err := tg.Admin.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: alpha})
			return r, len(r.GetSubscriptions()), err
		},
		"ListQueues": func() (proto.Message, int, error) {
			r, err := tg.Admin.ListQueues(ctx, &adminv1.ListQueuesRequest{OrgId: alpha})
			return r, len(r.GetQueues()), err
		},
		"ListPersons": func() (proto.Message, int, error) {
			r, err := tg.Admin.ListPersons(ctx, &adminv1.ListPersonsRequest{OrgId: alpha, IncludeDeleted: true})
			return r, len(r.GetPersons()), err
		},
		"ListDeliveries": func() (proto.Message, int, error) {
			r, err := tg.Admin.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: alpha})
			return r, len(r.GetDeliveries()), err
		},
		"ListDeadLetters": func() (proto.Message, int, error) {
			r, err := tg.Admin.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: alpha})
			return r, len(r.GetDeadLetters()), err
		},
	} {
		if r, n, err := list(); err != nil || n != 0 {
			t.Errorf("%s of alpha: %v %v, want none", name, r, err)
		}
	}
	if got := adminKeyIDs(t, tg, alpha); !slices.Equal(got, alphaKeys) {
		t.Errorf("ListKeys of alpha: %v, want only its own %v", got, alphaKeys)
	}

	// Bravo's subscriptions named under alpha are as ones that do not
	// exist.
	for _, sub := range []string{ping, dead} {
		_, err := tg.Admin.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: alpha, SubscriptionId: sub})
		adminCode(t, "ListDeliveries of bravo's subscription under alpha", err, codes.NotFound)
		_, err = tg.Admin.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: alpha, SubscriptionId: sub})
		adminCode(t, "ListDeadLetters of bravo's subscription under alpha", err, codes.NotFound)
	}
	_, err := tg.Admin.DeleteQueue(ctx, &adminv1.DeleteQueueRequest{OrgId: alpha, QueueId: queue})
	adminCode(t, "DeleteQueue of bravo's queue under alpha", err, codes.NotFound)
	_, err = tg.Admin.GetPerson(ctx, &adminv1.GetPersonRequest{OrgId: alpha, ExternalDbId: "bravo-1"})
	adminCode(t, "GetPerson of bravo's person under alpha", err, codes.NotFound)
	if q, err := tg.Admin.ListQueues(ctx, &adminv1.ListQueuesRequest{OrgId: bravo}); err != nil || len(q.GetQueues()) != 1 || q.GetQueues()[0].GetQueueId() != queue {
		t.Fatalf("bravo's queues after alpha's attempt: %v %v", q, err)
	}
}

// AdminBadCall is an admin call with one invalid argument, which the admin
// API refuses (AdminInvalid) before it reads or writes anything.
type AdminBadCall struct {
	RPC, Name string
	// Field is what the error message begins with; Detail is the field
	// the BadRequest detail names, Field when empty.
	Field, Detail string
	Call          func(context.Context) error
}

// Check fails the test unless the call is refused as invalid.
func (c AdminBadCall) Check(t testing.TB, ctx context.Context) {
	t.Helper()
	detail := c.Detail
	if detail == "" {
		detail = c.Field
	}
	if err := AdminInvalid(c.Call(ctx), c.Field, detail); err != nil {
		t.Errorf("%s: %s: %v", c.RPC, c.Name, err)
	}
}

// AdminBadFixture is what the calls of AdminBadCalls refer to: an org with
// a ping subscription, a payload subscription and a queue.
type AdminBadFixture struct {
	Org, Ping, Payload, Queue string
}

// AdminBadCalls answers calls of every admin RPC with invalid arguments:
// malformed ids of each kind, and every other argument one at a time.
// marker is in what the calls send wherever the field allows, so that a
// test that sees the target's insides can check none of it got there.
func AdminBadCalls(adm adminv1.AdminServiceClient, f AdminBadFixture, marker string) []AdminBadCall {
	var cases []AdminBadCall
	add := func(rpc, name, field string, call func(context.Context) error) {
		cases = append(cases, AdminBadCall{RPC: rpc, Name: name, Field: field, Call: call})
	}
	org, ping, pay, q := f.Org, f.Ping, f.Payload, f.Queue
	// org_id: it names subjects and keys, so anything but the pattern is
	// refused before it is looked up, by every RPC that takes one.
	for _, id := range []string{"", "x", "A", "Acme", marker + "*", marker + ".>", marker + ".x", ">", "*", "-" + marker,
		marker + strings.Repeat("a", 32), marker + "\x00", marker + " x", "../" + marker, "ac/" + marker} {
		name := fmt.Sprintf("org_id %q", id)
		orgCalls := map[string]func(context.Context) error{
			"CreateOrg": func(ctx context.Context) error {
				_, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: id})
				return err
			},
			"GetOrg": func(ctx context.Context) error {
				_, err := adm.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: id})
				return err
			},
			"DeleteOrg": func(ctx context.Context) error {
				_, err := adm.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: id})
				return err
			},
			"UpdateOrg": func(ctx context.Context) error {
				_, err := adm.UpdateOrg(ctx, &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: id}})
				return err
			},
			"CreateKey": func(ctx context.Context) error {
				_, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: id, Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}})
				return err
			},
			"ListKeys": func(ctx context.Context) error {
				_, err := adm.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: id})
				return err
			},
			"CreateSubscription": func(ctx context.Context) error {
				_, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{OrgId: id,
					System: "shop", EventTypes: []string{"5"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: "https://shop.example/"}})
				return err
			},
			"ListSubscriptions": func(ctx context.Context) error {
				_, err := adm.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: id})
				return err
			},
			"ApplyApiNotification": func(ctx context.Context) error {
				_, err := adm.ApplyApiNotification(ctx, &adminv1.ApplyApiNotificationRequest{OrgId: id, Records: "API_NOTIFICATION;shop;5;https://shop.example/;0"})
				return err
			},
			"ListDeliveries": func(ctx context.Context) error {
				_, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: id})
				return err
			},
			"TailDeliveries": func(ctx context.Context) error {
				s, err := adm.TailDeliveries(ctx, &adminv1.TailDeliveriesRequest{OrgId: id})
				if err == nil {
					_, err = s.Recv()
				}
				return err
			},
			"ListDeadLetters": func(ctx context.Context) error {
				_, err := adm.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: id})
				return err
			},
			"ListQueues": func(ctx context.Context) error {
				_, err := adm.ListQueues(ctx, &adminv1.ListQueuesRequest{OrgId: id})
				return err
			},
			"DeleteQueue": func(ctx context.Context) error {
				_, err := adm.DeleteQueue(ctx, &adminv1.DeleteQueueRequest{OrgId: id, QueueId: q})
				return err
			},
			"ListPersons": func(ctx context.Context) error {
				_, err := adm.ListPersons(ctx, &adminv1.ListPersonsRequest{OrgId: id})
				return err
			},
			"GetPerson": func(ctx context.Context) error {
				_, err := adm.GetPerson(ctx, &adminv1.GetPersonRequest{OrgId: id, ExternalDbId: "p1"})
				return err
			},
			"CreatePerson": func(ctx context.Context) error {
				_, err := adm.CreatePerson(ctx, &adminv1.CreatePersonRequest{OrgId: id, Person: &adminv1.Person{ExternalDbId: "p1"}})
				return err
			},
			"DeletePerson": func(ctx context.Context) error {
				_, err := adm.DeletePerson(ctx, &adminv1.DeletePersonRequest{OrgId: id, ExternalDbId: "p1"})
				return err
			},
		}
		for rpc, call := range orgCalls {
			add(rpc, name, "org_id", call)
		}
	}
	// Subscription ids: 20 lower-case hex characters, nothing else looked up.
	for _, id := range []string{"", "*", marker, "../" + marker, ping[:19], ping + "0", strings.ToUpper(ping), ping[:19] + ">"} {
		name := fmt.Sprintf("subscription_id %q", id)
		subCalls := map[string]func(context.Context) error{
			"GetSubscription": func(ctx context.Context) error {
				_, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id})
				return err
			},
			"UpdateSubscription": func(ctx context.Context) error {
				_, err := adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: id}})
				return err
			},
			"DeleteSubscription": func(ctx context.Context) error {
				_, err := adm.DeleteSubscription(ctx, &adminv1.DeleteSubscriptionRequest{SubscriptionId: id})
				return err
			},
			"SetSubscriptionActive": func(ctx context.Context) error {
				_, err := adm.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: id, Active: true})
				return err
			},
			"RotateSecret": func(ctx context.Context) error {
				_, err := adm.RotateSecret(ctx, &adminv1.RotateSecretRequest{SubscriptionId: id})
				return err
			},
			"PreviewSubscription": func(ctx context.Context) error {
				_, err := adm.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: id})
				return err
			},
			"Redeliver": func(ctx context.Context) error {
				_, err := adm.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: id, What: &adminv1.RedeliverRequest_AllDeadLetters{AllDeadLetters: true}})
				return err
			},
		}
		if id != "" { // an empty one lists the whole org's
			subCalls["ListDeliveries"] = func(ctx context.Context) error {
				_, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: org, SubscriptionId: id})
				return err
			}
			subCalls["ListDeadLetters"] = func(ctx context.Context) error {
				_, err := adm.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: org, SubscriptionId: id})
				return err
			}
		}
		for rpc, call := range subCalls {
			add(rpc, name, "subscription_id", call)
		}
	}
	for _, id := range []string{"", "*", marker, "0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF", "../0123456789abc"} {
		add("RevokeKey", fmt.Sprintf("key_id %q", id), "key_id", func(ctx context.Context) error {
			_, err := adm.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: id})
			return err
		})
	}
	for _, id := range []string{"", "*", marker + ">", strings.ToUpper(q), q[:31], "..%2F" + q} {
		add("DeleteQueue", fmt.Sprintf("queue_id %q", id), "queue_id", func(ctx context.Context) error {
			_, err := adm.DeleteQueue(ctx, &adminv1.DeleteQueueRequest{OrgId: org, QueueId: id})
			return err
		})
	}

	// Field by field: the other arguments of each RPC.
	createOrg := func(name, field string, r *adminv1.CreateOrgRequest) {
		add("CreateOrg", name, field, func(ctx context.Context) error { _, err := adm.CreateOrg(ctx, r); return err })
	}
	createOrg("display_name with LF", "display_name", &adminv1.CreateOrgRequest{OrgId: "new", DisplayName: marker + "\nX"})
	createOrg("display_name with NUL", "display_name", &adminv1.CreateOrgRequest{OrgId: "new", DisplayName: marker + "\x00"})
	createOrg("display_name of 201 characters", "display_name", &adminv1.CreateOrgRequest{OrgId: "new", DisplayName: strings.Repeat("d", 201)})
	updateOrg := func(name, field string, r *adminv1.UpdateOrgRequest) {
		add("UpdateOrg", name, field, func(ctx context.Context) error { _, err := adm.UpdateOrg(ctx, r); return err })
	}
	updateOrg("no org", "org", &adminv1.UpdateOrgRequest{})
	updateOrg("an unknown field in the mask", "update_mask", &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: org}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{marker}}})
	updateOrg("org_id in the mask", "update_mask", &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: org}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"org_id"}}})
	updateOrg("display_name with CR LF", "display_name", &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: org, DisplayName: marker + "\r\n"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
	createKey := func(name, field string, r *adminv1.CreateKeyRequest) {
		add("CreateKey", name, field, func(ctx context.Context) error { _, err := adm.CreateKey(ctx, r); return err })
	}
	createKey("no scopes", "scopes", &adminv1.CreateKeyRequest{OrgId: org})
	createKey("scope 0", "scopes", &adminv1.CreateKeyRequest{OrgId: org, Scopes: []adminv1.KeyScope{0}})
	createKey("scope 99", "scopes", &adminv1.CreateKeyRequest{OrgId: org, Scopes: []adminv1.KeyScope{99}})
	createKey("description with LF", "description", &adminv1.CreateKeyRequest{OrgId: org, Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}, Description: marker + "\n"})

	// CreateSubscription: payload, ping and queue subscriptions with one
	// field wrong at a time, CR and LF in custom headers among them.
	payloadWith := func(change func(*adminv1.Subscription)) *adminv1.Subscription {
		s := &adminv1.Subscription{OrgId: org, System: "crm", EventTypes: []string{"invoice.changed"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://crm.example/hook", Active: true}
		change(s)
		return s
	}
	header := func(name, value string) func(*adminv1.Subscription) {
		return func(s *adminv1.Subscription) { s.Headers = []*adminv1.Header{{Name: name, Value: value}} }
	}
	add("CreateSubscription", "no subscription", "subscription", func(ctx context.Context) error {
		_, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{})
		return err
	})
	add("CreateSubscription", "inactive beside active", "inactive", func(ctx context.Context) error {
		_, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: payloadWith(func(*adminv1.Subscription) {}), Inactive: true})
		return err
	})
	for _, c := range []struct {
		name, field string
		change      func(*adminv1.Subscription)
	}{
		{"no mode", "mode", func(s *adminv1.Subscription) { s.Mode = 0 }},
		{"mode 99", "mode", func(s *adminv1.Subscription) { s.Mode = 99 }},
		{"no system", "system", func(s *adminv1.Subscription) { s.System = "" }},
		{"a system over 20 characters", "system", func(s *adminv1.Subscription) { s.System = marker + strings.Repeat("s", 21) }},
		{"a system with LF", "system", func(s *adminv1.Subscription) { s.System = marker + "\n" }},
		{"a name with NUL", "name", func(s *adminv1.Subscription) { s.Name = marker + "\x00" }},
		{"no event types", "event_types", func(s *adminv1.Subscription) { s.EventTypes = nil }},
		{"event type *", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{"*"} }},
		{"event type >", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{">"} }},
		{"an event type with capitals", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{"Invoice" + marker} }},
		{"an event type ending in .>", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{marker + ".>"} }},
		{"an event type ending in .*", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{marker + ".*"} }},
		{"an event type with ..", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{marker + "..x"} }},
		{"Collmex code 10", "event_types", func(s *adminv1.Subscription) { s.EventTypes = []string{"10"} }},
		{"no URL", "url", func(s *adminv1.Subscription) { s.Url = "" }},
		{"an ftp: URL", "url", func(s *adminv1.Subscription) { s.Url = "ftp://crm.example/" + marker }},
		{"a javascript: URL", "url", func(s *adminv1.Subscription) { s.Url = "javascript:" + marker }},
		{"a URL with CR LF", "url", func(s *adminv1.Subscription) { s.Url = "https://crm.example/" + marker + "\r\nX-Injected: 1" }},
		{"a URL with a space", "url", func(s *adminv1.Subscription) { s.Url = "https://crm.example/a b" }},
		{"a URL with credentials", "url", func(s *adminv1.Subscription) { s.Url = "https://user:" + marker + "@crm.example/" }},
		{"a URL of 2049 characters", "url", func(s *adminv1.Subscription) { s.Url = "https://crm.example/" + strings.Repeat("a", 2029) }},
		{"a ping URL of 256 characters", "url", func(s *adminv1.Subscription) {
			s.Mode, s.Url = adminv1.DeliveryMode_DELIVERY_MODE_PING, "https://shop.example/"+strings.Repeat("a", 235)
		}},
		{"CR LF in a header value", "headers[0].value", header("X-Api-Key", marker+"\r\nX-Injected: 1")},
		{"LF in a header value", "headers[0].value", header("X-Api-Key", marker+"\nX-Injected: 1")},
		{"CR in a header value", "headers[0].value", header("X-Api-Key", marker+"\r")},
		{"NUL in a header value", "headers[0].value", header("X-Api-Key", marker+"\x00")},
		{"CR LF in a header name", "headers[0].name", header("X-"+marker+"\r\nX-Injected", "1")},
		{"a colon in a header name", "headers[0].name", header("X-"+marker+":", "1")},
		{"a space in a header name", "headers[0].name", header("X "+marker, "1")},
		{"an empty header name", "headers[0].name", header("", marker)},
		{"a header Kurier sets", "headers[0].name", header("Webhook-Signature", marker)},
		{"a hop-by-hop header", "headers[0].name", header("Transfer-Encoding", marker)},
		{"a header value of 1025 bytes", "headers[0].value", header("X-Api-Key", strings.Repeat("v", 1025))},
		{"21 headers", "headers[20].name", func(s *adminv1.Subscription) {
			for i := range 21 {
				s.Headers = append(s.Headers, &adminv1.Header{Name: fmt.Sprint("X-", i), Value: marker})
			}
		}},
		{"an attribute named event", "attributes[0].name", func(s *adminv1.Subscription) {
			s.Attributes = []*adminv1.Attribute{{Name: "event", Value: marker}}
		}},
		{"LF in an attribute value", "attributes[0].value", func(s *adminv1.Subscription) {
			s.Attributes = []*adminv1.Attribute{{Name: "a", Value: marker + "\n"}}
		}},
		{"LF in conditions", "conditions", func(s *adminv1.Subscription) { s.Conditions = marker + "\n" }},
		{"LF in the table", "table", func(s *adminv1.Subscription) { s.Table = marker + "\n" }},
		{"an empty field name", "fields", func(s *adminv1.Subscription) { s.Fields = []string{""} }},
		{"timeout 500ms", "timeout", func(s *adminv1.Subscription) { s.Timeout = durationpb.New(500 * time.Millisecond) }},
		{"timeout 61s", "timeout", func(s *adminv1.Subscription) { s.Timeout = durationpb.New(61 * time.Second) }},
		{"a negative timeout", "timeout", func(s *adminv1.Subscription) { s.Timeout = durationpb.New(-time.Second) }},
		{"max_in_flight 101", "max_in_flight", func(s *adminv1.Subscription) { s.MaxInFlight = 101 }},
		{"max_in_flight 2^32-1", "max_in_flight", func(s *adminv1.Subscription) { s.MaxInFlight = 1<<32 - 1 }},
		{"a negative retry delay", "retry_schedule", func(s *adminv1.Subscription) { s.RetrySchedule = []*durationpb.Duration{durationpb.New(-time.Second)} }},
		{"a retry delay of 8 days", "retry_schedule", func(s *adminv1.Subscription) {
			s.RetrySchedule = []*durationpb.Duration{durationpb.New(8 * 24 * time.Hour)}
		}},
		{"21 retries", "retry_schedule", func(s *adminv1.Subscription) {
			for range 21 {
				s.RetrySchedule = append(s.RetrySchedule, durationpb.New(time.Second))
			}
		}},
		{"daily at 25:00", "schedule.daily_at", func(s *adminv1.Subscription) { s.Schedule = &adminv1.DeliverySchedule{DailyAt: "25:00"} }},
		{"an unknown time zone", "schedule.time_zone", func(s *adminv1.Subscription) {
			s.Schedule = &adminv1.DeliverySchedule{DailyAt: "07:00", TimeZone: marker + "/Zone"}
		}},
		{"a time zone of ..", "schedule.time_zone", func(s *adminv1.Subscription) {
			s.Schedule = &adminv1.DeliverySchedule{DailyAt: "07:00", TimeZone: "../../etc/passwd"}
		}},
		{"a queue subscription with a URL", "url", func(s *adminv1.Subscription) {
			s.Mode, s.QueueId = adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, q
		}},
		{"a queue id with >", "queue_id", func(s *adminv1.Subscription) {
			s.Mode, s.Url, s.QueueId = adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, "", marker+">"
		}},
		{"an unknown queue", "queue_id", func(s *adminv1.Subscription) {
			s.Mode, s.Url, s.QueueId = adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, "", strings.Repeat("0f", 16)
		}},
	} {
		s := payloadWith(c.change)
		add("CreateSubscription", c.name, c.field, func(ctx context.Context) error {
			_, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: s})
			return err
		})
	}
	updateSub := func(name, field string, r *adminv1.UpdateSubscriptionRequest) {
		add("UpdateSubscription", name, field, func(ctx context.Context) error { _, err := adm.UpdateSubscription(ctx, r); return err })
	}
	updateSub("no subscription", "subscription", &adminv1.UpdateSubscriptionRequest{})
	updateSub("an unknown field in the mask", "update_mask", &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: pay},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{marker}}})
	updateSub("a payload field of a ping subscription", "update_mask", &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: ping},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"headers"}}})
	updateSub("a URL with CR LF", "url", &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: pay, Url: "https://crm.example/" + marker + "\r\n"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"url"}}})
	updateSub("CR LF in a header value", "headers[0].value", &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: pay,
		Headers: []*adminv1.Header{{Name: "X-Api-Key", Value: marker + "\r\nX-Injected: 1"}}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"headers"}}})
	updateSub("event type >", "event_types", &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{SubscriptionId: pay, EventTypes: []string{">"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"event_types"}}})
	add("PreviewSubscription", "an event type the subscription lacks", "event_type", func(ctx context.Context) error {
		_, err := adm.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: pay, EventType: marker + ".changed"})
		return err
	})
	redeliver := func(name, field string, r *adminv1.RedeliverRequest) {
		add("Redeliver", name, field, func(ctx context.Context) error { _, err := adm.Redeliver(ctx, r); return err })
	}
	redeliver("nothing named", "what", &adminv1.RedeliverRequest{SubscriptionId: pay})
	redeliver("all_dead_letters false", "all_dead_letters", &adminv1.RedeliverRequest{SubscriptionId: pay, What: &adminv1.RedeliverRequest_AllDeadLetters{}})
	redeliver("a range without since", "events.since", &adminv1.RedeliverRequest{SubscriptionId: pay, What: &adminv1.RedeliverRequest_Events{Events: &adminv1.TimeRange{}}})
	redeliver("a range ending before it begins", "events.until", &adminv1.RedeliverRequest{SubscriptionId: pay, What: &adminv1.RedeliverRequest_Events{Events: &adminv1.TimeRange{
		Since: timestamppb.Now(), Until: timestamppb.New(time.Now().Add(-time.Hour))}}})
	redeliver("a ping subscription", "subscription_id", &adminv1.RedeliverRequest{SubscriptionId: ping, What: &adminv1.RedeliverRequest_AllDeadLetters{AllDeadLetters: true}})
	// Collmex records name the line and Collmex's field.
	for _, c := range []struct {
		name, line, field, records string
	}{
		{"not a record", "1", "Satzart", marker},
		{"a javascript: URL", "1", "URL", "API_NOTIFICATION;shop;5;javascript:" + marker + ";0"},
		{"event 10", "1", "Ereignis", "API_NOTIFICATION;shop;10;https://shop.example/" + marker + ";0"},
		{"an unclosed quote", "1", "record", `API_NOTIFICATION;shop;5;"https://shop.example/` + marker + `;0`},
		{"Inaktiv 3", "1", "Inaktiv", "API_NOTIFICATION;shop;5;https://shop.example/" + marker + ";3"},
		{"a second line with a system over 20 characters", "2", "System",
			"API_NOTIFICATION;shop;5;https://shop.example/;0\nAPI_NOTIFICATION;" + marker + strings.Repeat("s", 21) + ";5;https://shop.example/;0"},
	} {
		cases = append(cases, AdminBadCall{RPC: "ApplyApiNotification", Name: c.name,
			Field: "records: line " + c.line + ": " + c.field, Detail: "records[line " + c.line + "]." + c.field,
			Call: func(ctx context.Context) error {
				_, err := adm.ApplyApiNotification(ctx, &adminv1.ApplyApiNotificationRequest{OrgId: org, Records: c.records})
				return err
			}})
	}
	for _, c := range []struct {
		name, field string
		size        int32
		token       string
	}{
		{"page_size -1", "page_size", -1, ""},
		{"page_size 1001", "page_size", 1001, ""},
		{"page_size 2^31-1", "page_size", 1<<31 - 1, ""},
		{"a page_token that is not one", "page_token", 0, marker},
		{"page_token 0", "page_token", 0, "0"},
		{"page_token -1", "page_token", 0, "-1"},
	} {
		add("ListDeliveries", c.name, c.field, func(ctx context.Context) error {
			_, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: org, PageSize: c.size, PageToken: c.token})
			return err
		})
		add("ListDeadLetters", c.name, c.field, func(ctx context.Context) error {
			_, err := adm.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: org, PageSize: c.size, PageToken: c.token})
			return err
		})
		add("ListPersons", c.name, c.field, func(ctx context.Context) error {
			_, err := adm.ListPersons(ctx, &adminv1.ListPersonsRequest{OrgId: org, PageSize: c.size, PageToken: c.token})
			return err
		})
	}
	for _, id := range []string{"", strings.Repeat("x", 257)} {
		name := fmt.Sprintf("external_db_id of %d characters", len(id))
		add("GetPerson", name, "external_db_id", func(ctx context.Context) error {
			_, err := adm.GetPerson(ctx, &adminv1.GetPersonRequest{OrgId: org, ExternalDbId: id})
			return err
		})
		add("DeletePerson", name, "external_db_id", func(ctx context.Context) error {
			_, err := adm.DeletePerson(ctx, &adminv1.DeletePersonRequest{OrgId: org, ExternalDbId: id})
			return err
		})
	}
	createPerson := func(name, field string, p *adminv1.Person) {
		add("CreatePerson", name, field, func(ctx context.Context) error {
			_, err := adm.CreatePerson(ctx, &adminv1.CreatePersonRequest{OrgId: org, Person: p})
			return err
		})
	}
	createPerson("no person", "person", nil)
	createPerson("no external_db_id", "person.external_db_id", &adminv1.Person{FirstName: marker})
	createPerson("an external_db_id of 257 characters", "person.external_db_id", &adminv1.Person{ExternalDbId: marker + strings.Repeat("x", 257)})
	createPerson("NUL in a name", "person.first_name", &adminv1.Person{ExternalDbId: marker, FirstName: "a\x00"})
	createPerson("LF in a name", "person.last_name", &adminv1.Person{ExternalDbId: marker, LastName: "a\nb"})
	createPerson("a mobile number that is not one", "person.mobil", &adminv1.Person{ExternalDbId: marker, Mobil: marker})
	createPerson("an e-mail address with a name", "person.email", &adminv1.Person{ExternalDbId: marker, Email: "Max <max@example.com>"})
	createPerson("101 groups", "person.os_groups", &adminv1.Person{ExternalDbId: marker, OsGroups: slices.Repeat([]string{"g"}, 101)})
	createPerson("an unknown mode", "person.a_pager_pro_field_mode", &adminv1.Person{ExternalDbId: marker, APagerProFieldMode: 99})
	return cases
}

// adminBadInput: every admin RPC refuses invalid arguments as
// InvalidArgument naming the field at fault, and changes nothing.
// (Strings that are not UTF-8 do not get this far: the protobuf encoding
// refuses them in the client, and gRPC in the server.)
func adminBadInput(t *testing.T, tg Target) {
	ctx := context.Background()
	org, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	f := AdminBadFixture{Org: org, Queue: adminQueue(t, tg, key),
		Ping: adminSub(t, tg, &adminv1.Subscription{OrgId: org, System: "shop", EventTypes: []string{"invoice.changed"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: "https://shop.example/ping"}).GetSubscription().GetSubscriptionId(),
		Payload: adminSub(t, tg, &adminv1.Subscription{OrgId: org, System: "crm", EventTypes: []string{"invoice.changed"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://crm.example/hook"}).GetSubscription().GetSubscriptionId(),
	}
	subsBefore, keysBefore := adminSubIDs(t, tg, org), adminKeyIDs(t, tg, org)
	orgBefore, err := tg.Admin.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: org})
	if err != nil {
		t.Fatalf("get org: %v", err)
	}
	calls := AdminBadCalls(tg.Admin, f, "adminbadinput")
	for _, c := range calls {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c.Check(t, cctx)
		cancel()
	}
	t.Logf("%d refused calls", len(calls))

	if got := adminSubIDs(t, tg, org); !slices.Equal(got, subsBefore) {
		t.Errorf("subscriptions after the refused calls: %v, want %v", got, subsBefore)
	}
	if got := adminKeyIDs(t, tg, org); !slices.Equal(got, keysBefore) {
		t.Errorf("keys after the refused calls: %v, want %v", got, keysBefore)
	}
	orgAfter, err := tg.Admin.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: org})
	if err != nil {
		t.Fatalf("get org: %v", err)
	}
	adminSame(t, "org after the refused calls", orgAfter, orgBefore)
	for _, sub := range []string{f.Ping, f.Payload} {
		s, err := tg.Admin.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: sub})
		if err != nil || !s.GetActive() || !s.GetCreateTime().AsTime().Equal(s.GetUpdateTime().AsTime()) {
			t.Errorf("subscription %s after the refused calls: %v %v, want it active and never updated", sub, s, err)
		}
	}
	if q, err := tg.Admin.ListQueues(ctx, &adminv1.ListQueuesRequest{OrgId: org}); err != nil || len(q.GetQueues()) != 1 || q.GetQueues()[0].GetQueueId() != f.Queue {
		t.Errorf("queues after the refused calls: %v %v, want only %s", q, err, f.Queue)
	}
}
