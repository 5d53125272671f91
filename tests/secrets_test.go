package tests

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// secretCore is the part of a secret that only it has: the random rest of
// an API key after kur_<key id>_, of a signing secret after whsec_, or
// the whole secret.
func secretCore(s string) string {
	if rest, ok := strings.CutPrefix(s, "whsec_"); ok {
		return rest
	}
	if rest, ok := strings.CutPrefix(s, "kur_"); ok {
		// kur_<hex id>_<base64url secret>: the secret itself may hold '_'.
		_, secret, _ := strings.Cut(rest, "_")
		return secret
	}
	return s
}

// TestNoSecretsLeak runs a full flow (keys of every scope, subscriptions of
// every mode with deliveries that succeed, fail and die, a queue with its
// senders, a sync, credentials sent where they do not belong) and scans
// every log line, every delivery-log record and every error answer for the
// secrets it issued.
func TestNoSecretsLeak(t *testing.T) {
	t.Parallel()
	k := pingKurier(t)
	ctx := context.Background()
	rcv := newReceiver(t)
	rcv.script["/fail"] = slices.Repeat([]int{http.StatusInternalServerError}, 10)
	adm := k.Admin(t)
	secrets := map[string]string{"the admin token": k.Token}
	var answers []string // every error answer and message of the run
	refused := func(what string, a contract.Answer) {
		t.Helper()
		if a.Status < 400 {
			t.Fatalf("%s: %d, want a refusal", what, a.Status)
		}
		answers = append(answers, what+": "+string(a.Body))
	}
	grpcRefused := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: accepted", what)
		}
		answers = append(answers, what+": "+status.Convert(err).Message())
	}

	if _, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	updateOrg(t, adm, &adminv1.Org{OrgId: "acme", AddressbookSyncEnabled: true, AllowPersonDeletion: true},
		"addressbook_sync_enabled", "allow_person_deletion")
	keys := map[string]string{}
	for scope, name := range scopeNames {
		key, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{scope}})
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = key.GetSecret()
		secrets["the "+name+" key"] = key.GetSecret()
	}

	// Subscriptions of every mode; the payload ones carry a receiver's API
	// key in a custom header and a secret attribute, one is answered 500
	// until its retries run out, one reaches nobody.
	receiverKey, attrSecret := rand.Text(), rand.Text()
	secrets["a receiver's key in a custom header"], secrets["a secret attribute"] = receiverKey, attrSecret
	ping := pingSub(t, adm, "acme", "shop", rcv.URL+"/ping", "invoice.changed")
	secrets["the ping subscription's signing secret"] = ping.GetSigningSecret()
	withSecrets := func(s *adminv1.Subscription) *adminv1.Subscription {
		s.EventTypes = []string{"invoice.changed"}
		s.Headers = []*adminv1.Header{{Name: "X-Api-Key", Value: receiverKey}}
		s.Attributes = []*adminv1.Attribute{{Name: "token", Value: attrSecret, Secret: true}}
		return s
	}
	ok := payloadSub(t, adm, withSecrets(&adminv1.Subscription{System: "ok", Url: rcv.URL + "/ok"}))
	failing := payloadSub(t, adm, withSecrets(&adminv1.Subscription{System: "failing", Url: rcv.URL + "/fail", RetrySchedule: []*durationpb.Duration{ms(50), ms(50)}}))
	unreachable := payloadSub(t, adm, withSecrets(&adminv1.Subscription{System: "nobody", Url: "http://127.0.0.1:1/hook", RetrySchedule: []*durationpb.Duration{ms(50)}}))
	for name, s := range map[string]*adminv1.CreateSubscriptionResponse{"delivered": ok, "failing": failing, "unreachable": unreachable} {
		secrets["the "+name+" payload subscription's signing secret"] = s.GetSigningSecret()
	}
	rotated, err := adm.RotateSecret(ctx, &adminv1.RotateSecretRequest{SubscriptionId: ok.GetSubscription().GetSubscriptionId()})
	if err != nil {
		t.Fatal(err)
	}
	secrets["a rotated signing secret"] = rotated.GetSigningSecret()
	q := contract.CreateQueue(t, k.HTTP, keys["partner"])
	secrets["the queue's notification secret"] = q.NotificationSecret
	if _, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{OrgId: "acme",
		System: "queue", EventTypes: []string{"invoice.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: q.QueueID, Active: true}}); err != nil {
		t.Fatal(err)
	}

	// The traffic: events over HTTP and NATS, the change feed, a sender's
	// message peeked and deleted, a sync and a person deleted.
	change(t, k, keys["ingest"], "invoice.changed", "INV-1", map[string]any{"total": 1})
	if a := natsIngest(t, k.Conn(t), "acme", keys["ingest"], "over-nats"); a.Status != http.StatusAccepted {
		t.Fatalf("nats ingest: %d %s", a.Status, a.Body)
	}
	if a := q.Send(t, `{"article":"4711"}`); a.Status != http.StatusOK {
		t.Fatal(a.Status)
	}
	if a := pushSync(t, k, keys["addressbook"], contract.FE2Person("p1", "Max"), contract.FE2Person("p2", "Erika")); a.Status != http.StatusOK {
		t.Fatal(a)
	}
	if a := fe2(t, k.HTTP, keys["addressbook"], http.MethodDelete, "/rest/addressbook/external/persons/p2", nil); a.Status != http.StatusOK {
		t.Fatal(a)
	}
	if c := feed(t, k, keys["changes"], "system=shop&type=invoice.changed"); c.Status != http.StatusOK {
		t.Fatalf("change feed: %d", c.Status)
	}
	_, msgs := q.Peek(t, "?count=10")
	for _, m := range msgs {
		if s := q.DeleteMessage(t, m.MessageID).Status; s != http.StatusOK {
			t.Fatalf("delete message: %d", s)
		}
	}

	// Credentials where they do not belong: the answers must not repeat
	// them.
	for _, c := range []struct {
		what string
		req  contract.Request
	}{
		{"ingest with the partner key", contract.Request{Method: http.MethodPost, URL: "/v1/events", Header: hdr("Authorization", "Bearer "+keys["partner"], "Content-Type", "application/cloudevents+json"), Body: []byte(structured("x", "invoice.changed", ""))}},
		{"ingest with the queue secret", contract.Request{Method: http.MethodPost, URL: "/v1/events", Header: hdr("Authorization", "Bearer "+q.NotificationSecret, "Content-Type", "application/cloudevents+json"), Body: []byte(structured("x", "invoice.changed", ""))}},
		{"ingest with the admin token", contract.Request{Method: http.MethodPost, URL: "/v1/events", Header: hdr("Authorization", "Bearer "+k.Token, "Content-Type", "application/cloudevents+json"), Body: []byte(structured("x", "invoice.changed", ""))}},
		{"the change feed with the ingest key", contract.Request{Method: http.MethodGet, URL: "/v1/changes?system=shop&type=5", Header: hdr("Authorization", "Bearer "+keys["ingest"])}},
		{"a queue made with the addressbook key", contract.Request{Method: http.MethodPost, URL: "/api/queues", Header: hdr("X-PARTNER-KEY", keys["addressbook"])}},
		{"a sender posting with the partner key", contract.Request{Method: http.MethodPost, URL: "/api/queues/" + q.QueueID + "/messages", Header: hdr("X-COMNORM-NOTIFICATION-SECRET", keys["partner"]), Body: []byte(`{}`)}},
		{"a sync with the ingest key", contract.Request{Method: http.MethodPost, URL: "/rest/addressbook/sync", Header: hdr("Authorization", keys["ingest"], "Content-Type", "application/json"), Body: []byte(`{"personList":[]}`)}},
		{"a sync with the key as a bearer token", contract.Request{Method: http.MethodPost, URL: "/rest/addressbook/sync", Header: hdr("Authorization", "Bearer "+keys["addressbook"], "Content-Type", "application/json"), Body: []byte(`{"personList":[]}`)}},
		{"a peek with the queue secret", contract.Request{Method: http.MethodGet, URL: "/api/queues/" + q.QueueID + "/messages", Header: hdr("X-PARTNER-KEY", q.NotificationSecret)}},
	} {
		c.req.URL = k.HTTP + c.req.URL
		refused(c.what, contract.Do(t, c.req))
	}
	_, err = k.AdminWith(t, keys["ingest"]).ListOrgs(ctx, &adminv1.ListOrgsRequest{})
	grpcRefused("the admin API with the ingest key", err)
	_, err = adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{
		SubscriptionId: ok.GetSubscription().GetSubscriptionId(), Headers: []*adminv1.Header{{Name: "X-Api-Key", Value: receiverKey + "\r\n"}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"headers"}}})
	grpcRefused("a custom header holding a secret and CR LF", err)
	_, err = adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{
		SubscriptionId: ok.GetSubscription().GetSubscriptionId(), Url: "https://user:" + attrSecret + "@crm.example/"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"url"}}})
	grpcRefused("a URL with a password", err)
	_, err = adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{Subscription: &adminv1.Subscription{
		SubscriptionId: ok.GetSubscription().GetSubscriptionId(), Attributes: []*adminv1.Attribute{{Name: "token", Value: attrSecret + "\n", Secret: true}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"attributes"}}})
	grpcRefused("a secret attribute with LF", err)

	// Every subscription's deliveries are in the log: the ping, a second
	// after the change; payloads delivered, dead after a 500 three times,
	// dead after nobody answered twice.
	want := map[string]string{ping.GetSubscription().GetSubscriptionId(): "", ok.GetSubscription().GetSubscriptionId(): "delivered",
		failing.GetSubscription().GetSubscriptionId(): "dead", unreachable.GetSubscription().GetSubscriptionId(): "dead"}
	var listed string // the delivery log as ListDeliveries answers it
	natstest.WaitForErr(t, 30*time.Second, "every subscription's deliveries done", func() error {
		list, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme", PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		done := map[string]bool{}
		for _, d := range list.GetDeliveries() {
			if want[d.GetSubscriptionId()] == d.GetOutcome() {
				done[d.GetSubscriptionId()] = true
			}
		}
		if len(done) != len(want) {
			return fmt.Errorf("%v", list)
		}
		listed = fmt.Sprint(list)
		return nil
	})

	// What is scanned: the process's every log line and its stdout, every
	// record of the delivery log as stored and as listed, every refusal.
	var records []string
	for _, m := range harness.Messages(t, jsOf(t, k), bus.StreamDeliveryLog) {
		records = append(records, fmt.Sprint(m.Headers())+" "+string(m.Data()))
	}
	corpus := map[string]string{"stdout": k.Stdout(), "ListDeliveries": listed}
	lines := strings.Split(strings.TrimSpace(k.Logs()), "\n")
	for i, l := range lines {
		corpus[fmt.Sprintf("log line %d", i+1)] = l
	}
	for i, r := range records {
		corpus[fmt.Sprintf("delivery-log record %d", i+1)] = r
	}
	for i, a := range answers {
		corpus[fmt.Sprintf("answer %d", i+1)] = a
	}
	for what, secret := range secrets {
		for where, text := range corpus {
			if strings.Contains(text, secretCore(secret)) {
				t.Errorf("%s is in %s: %s", what, where, text)
			}
		}
	}
	// The scan can find what it looks for: the log names the ingest key by
	// its id, the part of the secret that is no secret, and the delivery
	// log shows where the secret attribute was masked.
	if id := keys["ingest"][len("kur_") : len("kur_")+16]; !strings.Contains(k.Logs(), `"key_id":"`+id+`"`) {
		t.Fatalf("no log line names the key %s", id)
	}
	if !strings.Contains(strings.Join(records, "\n"), "token=***") {
		t.Fatalf("no delivery-log record shows the masked attribute: %v", records)
	}
	t.Logf("secrets: %d secrets scanned for in %d log lines, %d delivery-log records (stored and listed) and %d refusals",
		len(secrets), len(lines), len(records), len(answers))
}
