package tests

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// startWithOrg starts kurier all with opts and makes the org, and answers
// the instance and its admin client.
func startWithOrg(t *testing.T, opts harness.Options, org string) (*harness.Kurier, adminv1.AdminServiceClient) {
	t.Helper()
	k := harness.Start(t, opts)
	adm := k.Admin(t)
	if _, err := adm.CreateOrg(context.Background(), &adminv1.CreateOrgRequest{OrgId: org}); err != nil {
		t.Fatal(err)
	}
	return k, adm
}

// TestSendTestEvent runs kurier all and tests subscriptions through the
// admin API: the receiver gets a signed kurier.test event that the
// Standard Webhooks library verifies, and the call answers its status and
// body; a receiver answering 500 is answered as such, not as an error of
// the call; one that hangs is a "timeout" within the subscription's
// timeout; a ping subscription gets its GET; a queue one is refused.
func TestSendTestEvent(t *testing.T) {
	t.Parallel()
	_, adm := startWithOrg(t, harness.Options{}, "acme")
	ctx := context.Background()
	var mu sync.Mutex
	got := map[string]*http.Request{}
	bodies := map[string][]byte{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path], bodies[r.URL.Path] = r, b
		mu.Unlock()
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":"database down"}`)
		case "/hang":
			<-r.Context().Done()
		default:
			_, _ = io.WriteString(w, `{"ok":true}`)
		}
	}))
	t.Cleanup(srv.Close)
	create := func(s *adminv1.Subscription) *adminv1.CreateSubscriptionResponse {
		t.Helper()
		s.OrgId, s.System = "acme", "erp"
		if s.Mode == adminv1.DeliveryMode_DELIVERY_MODE_UNSPECIFIED {
			s.Mode = adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD
		}
		resp, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: s})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	send := func(id string) *adminv1.SendTestEventResponse {
		t.Helper()
		resp, err := adm.SendTestEvent(ctx, &adminv1.SendTestEventRequest{SubscriptionId: id})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	ok := create(&adminv1.Subscription{EventTypes: []string{"invoice.changed"}, Url: srv.URL + "/ok"})
	var resp *adminv1.SendTestEventResponse
	// The dispatcher may still be starting.
	natstest.WaitForErr(t, 10*time.Second, "a dispatcher answering", func() error {
		var err error
		resp, err = adm.SendTestEvent(ctx, &adminv1.SendTestEventRequest{SubscriptionId: ok.GetSubscription().GetSubscriptionId()})
		return err
	})
	if resp.GetStatus() != http.StatusOK || resp.GetResponse() != `{"ok":true}` || resp.GetMethod() != http.MethodPost ||
		!strings.HasPrefix(resp.GetUrl(), srv.URL+"/ok?event=kurier.test") || resp.GetError() != "" || resp.GetLatency().AsDuration() <= 0 {
		t.Errorf("test of a healthy receiver answered %v", resp)
	}
	mu.Lock()
	req, body := got["/ok"], bodies["/ok"]
	mu.Unlock()
	wh, err := standardwebhooks.NewWebhook(ok.GetSigningSecret())
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(body, req.Header); err != nil {
		t.Errorf("the test event's signature does not verify: %v", err)
	}
	var ev struct{ ID, Type string }
	if err := json.Unmarshal(body, &ev); err != nil || ev.Type != "kurier.test" || ev.ID != resp.GetEventId() {
		t.Errorf("test event %s, answered event id %q", body, resp.GetEventId())
	}

	fail := create(&adminv1.Subscription{EventTypes: []string{"invoice.changed"}, Url: srv.URL + "/fail"})
	if r := send(fail.GetSubscription().GetSubscriptionId()); r.GetStatus() != http.StatusInternalServerError || r.GetResponse() != `{"error":"database down"}` {
		t.Errorf("test of a failing receiver answered %v", r)
	}
	if s, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: fail.GetSubscription().GetSubscriptionId()}); err != nil || s.GetFailingSince() != nil {
		t.Errorf("a failed test marked the subscription failing: %v, %v", s.GetFailingSince(), err)
	}

	hang := create(&adminv1.Subscription{EventTypes: []string{"invoice.changed"}, Url: srv.URL + "/hang", Timeout: durationpb.New(time.Second)})
	began := time.Now()
	if r := send(hang.GetSubscription().GetSubscriptionId()); r.GetError() != "timeout" || r.GetStatus() != 0 {
		t.Errorf("test of a hanging receiver answered %v", r)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("test of a hanging receiver with a 1 s timeout took %v", took)
	}

	ping := create(&adminv1.Subscription{Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, EventTypes: []string{"invoice.changed"}, Url: srv.URL + "/ping"})
	if r := send(ping.GetSubscription().GetSubscriptionId()); r.GetStatus() != http.StatusOK || r.GetMethod() != http.MethodGet {
		t.Errorf("test of a ping subscription answered %v", r)
	}
	mu.Lock()
	req, body = got["/ping"], bodies["/ping"]
	mu.Unlock()
	pwh, _ := standardwebhooks.NewWebhook(ping.GetSigningSecret())
	if err := pwh.Verify(body, req.Header); err != nil {
		t.Errorf("the test ping's signature does not verify: %v", err)
	}

	_, err = adm.SendTestEvent(ctx, &adminv1.SendTestEventRequest{SubscriptionId: "nope"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "subscription_id") {
		t.Errorf("a malformed id: %v", err)
	}
}

// TestRateLimitSettings: the rate limit is a payload subscription's, within
// its bounds, and a burst needs a limit; each refusal names its field and
// changes nothing.
func TestRateLimitSettings(t *testing.T) {
	t.Parallel()
	_, adm := startWithOrg(t, harness.Options{}, "acme")
	ctx := context.Background()
	sub := func(mode adminv1.DeliveryMode, rate, burst uint32) *adminv1.Subscription {
		return &adminv1.Subscription{OrgId: "acme", System: "erp", Mode: mode, EventTypes: []string{"invoice.changed"},
			Url: "https://erp.example/hook", RateLimitPerSecond: rate, RateLimitBurst: burst}
	}
	payload, ping := adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, adminv1.DeliveryMode_DELIVERY_MODE_PING
	for _, c := range []struct {
		sub   *adminv1.Subscription
		field string
	}{
		{sub(payload, 10001, 0), "rate_limit_per_second"},
		{sub(payload, 5, 10001), "rate_limit_burst"},
		{sub(payload, 0, 3), "rate_limit_burst"},
		{sub(ping, 5, 0), "rate_limit_per_second"},
		{sub(ping, 0, 5), "rate_limit_burst"},
	} {
		_, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: c.sub})
		if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), c.field+":") {
			t.Errorf("rate %d burst %d (%v): %v, want InvalidArgument naming %s", c.sub.GetRateLimitPerSecond(), c.sub.GetRateLimitBurst(), c.sub.GetMode(), err, c.field)
		}
	}
	created, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: sub(payload, 5, 2)})
	if err != nil {
		t.Fatal(err)
	}
	s := created.GetSubscription()
	if s.GetRateLimitPerSecond() != 5 || s.GetRateLimitBurst() != 2 {
		t.Errorf("created with %d/s burst %d", s.GetRateLimitPerSecond(), s.GetRateLimitBurst())
	}
	// Removing the limit but not the burst is refused, and changes nothing.
	_, err = adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: s.GetSubscriptionId()},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"rate_limit_per_second"}},
	})
	if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), "rate_limit_burst:") {
		t.Errorf("limit removed under a burst: %v", err)
	}
	got, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: s.GetSubscriptionId()})
	if err != nil || got.GetRateLimitPerSecond() != 5 || got.GetRateLimitBurst() != 2 {
		t.Errorf("after a refused update: %d/s burst %d, %v", got.GetRateLimitPerSecond(), got.GetRateLimitBurst(), err)
	}
	up, err := adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: s.GetSubscriptionId()},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"rate_limit_per_second", "rate_limit_burst"}},
	})
	if err != nil || up.GetRateLimitPerSecond() != 0 || up.GetRateLimitBurst() != 0 {
		t.Errorf("limit removed: %v, %v", up, err)
	}
}
