package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

func payloadSub(t *testing.T, adm adminv1.AdminServiceClient, s *adminv1.Subscription) *adminv1.CreateSubscriptionResponse {
	t.Helper()
	s.OrgId, s.Mode, s.Active = "acme", adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, true
	if s.System == "" {
		s.System = "crm"
	}
	resp, err := adm.CreateSubscription(context.Background(), &adminv1.CreateSubscriptionRequest{Subscription: s})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func ms(d int) *durationpb.Duration { return durationpb.New(time.Duration(d) * time.Millisecond) }

func TestPayloadRetriesAndStatusRules(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	ctx := context.Background()
	fast := []*durationpb.Duration{ms(0), ms(300), ms(2000)}

	// 503 with Retry-After, a 302, a 500: retried with the same webhook-id, then delivered.
	rcv.script["/retry"] = []int{503, 302, 500}
	rcv.header.Set("Retry-After", "1")
	sub := payloadSub(t, adm, &adminv1.Subscription{System: "retry", EventTypes: []string{"invoice.changed"}, Url: rcv.URL + "/retry", RetrySchedule: fast})
	change(t, k, secret, "invoice.changed", "I-1", nil)
	var ids []string
	var at []time.Time
	for range 4 {
		h := rcv.next(t, 10*time.Second)
		ids = append(ids, h.Header.Get("webhook-id"))
		at = append(at, h.At)
	}
	if len(slices.Compact(slices.Clone(ids))) != 1 {
		t.Fatalf("webhook-ids across retries: %v", ids)
	}
	if gap := at[1].Sub(at[0]); gap < 900*time.Millisecond {
		t.Fatalf("Retry-After 1 honoured? second attempt %v after the first", gap)
	}
	rcv.mu.Lock()
	rcv.header = http.Header{}
	rcv.mu.Unlock()

	// Exhausted: two attempts with one retry, then a dead letter.
	rcv.script["/dead"] = []int{500, 500, 500}
	dead := payloadSub(t, adm, &adminv1.Subscription{System: "dead", EventTypes: []string{"quote.changed"}, Url: rcv.URL + "/dead", RetrySchedule: []*durationpb.Duration{ms(100)}})
	change(t, k, secret, "quote.changed", "Q-1", nil)
	rcv.next(t, 5*time.Second)
	rcv.next(t, 5*time.Second)
	select {
	case h := <-rcv.got:
		t.Fatalf("a third attempt: %s", h.Path)
	case <-time.After(time.Second):
	}
	js := jsOf(t, k)
	st, err := js.Stream(ctx, bus.StreamDeadLetters)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetLastMsgForSubject(ctx, bus.DeadSubject("acme", dead.GetSubscription().GetSubscriptionId())); err != nil {
		t.Fatalf("dead letter: %v", err)
	}

	// 410 Gone: switched off, and an operational event says so.
	rcv.script["/gone"] = []int{410}
	gone := payloadSub(t, adm, &adminv1.Subscription{System: "gone", EventTypes: []string{"stock.changed"}, Url: rcv.URL + "/gone", RetrySchedule: fast})
	change(t, k, secret, "stock.changed", "S-1", nil)
	rcv.next(t, 5*time.Second)
	var g *adminv1.Subscription
	natstest.WaitForErr(t, 5*time.Second, "the subscription switched off after 410", func() (err error) {
		g, err = adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: gone.GetSubscription().GetSubscriptionId()})
		if err == nil && g.GetActive() {
			err = fmt.Errorf("%v", g)
		}
		return err
	})
	if !strings.Contains(g.GetDisabledReason(), "410") {
		t.Fatalf("after 410: %v", g)
	}
	evs := stored(t, k, "acme")
	if last := evs[len(evs)-1]; last["type"] != "kurier.subscription.disabled" || last["subject"] != gone.GetSubscription().GetSubscriptionId() {
		t.Fatalf("operational event: %v", last)
	}
	// The retried subscription ended delivered and is not failing.
	if r, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: sub.GetSubscription().GetSubscriptionId()}); err != nil || !r.GetActive() || r.GetFailingSince() != nil {
		t.Fatalf("retried subscription: %v %v", r, err)
	}
}

func TestPayloadOrderedUnderRetries(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	rcv.script["/ordered"] = []int{500, 500}
	payloadSub(t, adm, &adminv1.Subscription{System: "ordered", EventTypes: []string{"invoice.changed"}, Url: rcv.URL + "/ordered",
		Ordering: adminv1.Ordering_ORDERING_ORDERED, RetrySchedule: []*durationpb.Duration{ms(200), ms(200), ms(200)}})
	var want []string
	for i := range 5 {
		want = append(want, change(t, k, secret, "invoice.changed", fmt.Sprint("I-", i), nil))
	}
	var seen []string
	for len(seen) < 7 { // two failed attempts of the first, then five deliveries
		h := rcv.next(t, 10*time.Second)
		var b map[string]any
		_ = json.Unmarshal(h.Body, &b)
		seen = append(seen, b["id"].(string))
	}
	if got := slices.Compact(seen); !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v (attempts %v)", got, want, seen)
	}
}

func TestPayloadSurvivesDispatcherKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := harness.Start(t, harness.Options{DataDir: dir})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	rcv.hold = make(chan struct{})
	payloadSub(t, adm, &adminv1.Subscription{System: "kill", EventTypes: []string{"invoice.changed"}, Url: rcv.URL + "/kill",
		Timeout: durationpb.New(2 * time.Second)})
	change(t, k, secret, "invoice.changed", "I-1", nil)
	first := rcv.next(t, 10*time.Second) // the request is in flight...
	k.Stop(t, syscall.SIGKILL)           // ...when the process dies
	rcv.mu.Lock()
	close(rcv.hold)
	rcv.hold = nil
	rcv.mu.Unlock()

	harness.Start(t, harness.Options{DataDir: dir})
	again := rcv.next(t, 60*time.Second)
	if again.Header.Get("webhook-id") != first.Header.Get("webhook-id") || string(again.Body) != string(first.Body) {
		t.Fatalf("redelivery differs: %q %s vs %q %s", again.Header.Get("webhook-id"), again.Body, first.Header.Get("webhook-id"), first.Body)
	}
}

// TestPayloadTimeoutAndAutoDisable: every failed attempt counts towards
// KURIER_DISABLE_AFTER, whatever it was: a 4xx, a 5xx, a 429, a timeout, a
// receiver that refuses connections. After a second of nothing but
// failures each subscription is off, and the log says why each attempt
// failed.
func TestPayloadTimeoutAndAutoDisable(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_DISABLE_AFTER=1s"}})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	ctx := context.Background()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1500 * time.Millisecond)
	}))
	t.Cleanup(slow.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // its port now refuses connections
	rcv := newReceiver(t)
	rcv.script["/bad"] = slices.Repeat([]int{400}, 100)
	rcv.script["/down"] = slices.Repeat([]int{503}, 100)
	rcv.script["/busy"] = slices.Repeat([]int{429}, 100)
	retries := slices.Repeat([]*durationpb.Duration{ms(200)}, 20)
	subs := map[string]*adminv1.CreateSubscriptionResponse{}
	for name, url := range map[string]string{"slow": slow.URL, "refused": closed.URL, "bad": rcv.URL + "/bad", "down": rcv.URL + "/down", "busy": rcv.URL + "/busy"} {
		subs[name] = payloadSub(t, adm, &adminv1.Subscription{System: name, EventTypes: []string{"invoice.changed"}, Url: url,
			Timeout: durationpb.New(time.Second), RetrySchedule: retries})
	}
	change(t, k, secret, "invoice.changed", "I-1", nil)

	got := map[string]*adminv1.Subscription{}
	natstest.WaitForErr(t, 15*time.Second, "every subscription switched off", func() error {
		var active []string
		for name, sub := range subs {
			s, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: sub.GetSubscription().GetSubscriptionId()})
			if err != nil {
				return err
			}
			if got[name] = s; s.GetActive() {
				active = append(active, name)
			}
		}
		if len(active) > 0 {
			return fmt.Errorf("still active: %v", active)
		}
		return nil
	})
	for name, s := range got {
		if !strings.Contains(s.GetDisabledReason(), "failed") || s.GetFailingSince() == nil {
			t.Errorf("%s: after a second of failures: %v", name, s)
		}
	}
	list, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme", SubscriptionId: subs["slow"].GetSubscription().GetSubscriptionId()})
	if err != nil || len(list.GetDeliveries()) == 0 || list.GetDeliveries()[0].GetError() != "timeout" {
		t.Fatalf("slow deliveries: %v %v", list, err)
	}
	list, err = adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme", SubscriptionId: subs["refused"].GetSubscription().GetSubscriptionId()})
	if err != nil || len(list.GetDeliveries()) == 0 || !strings.Contains(list.GetDeliveries()[0].GetError(), "refused") {
		t.Fatalf("deliveries to a closed port: %v %v", list, err)
	}
}

// TestOrderedSwitchedOn: a subscription switched to ORDERED starts at the
// switch. Nothing it was given before is sent again; what comes after it
// comes once each, in order.
func TestOrderedSwitchedOn(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	ctx := context.Background()
	rcv := newReceiver(t)
	sub := payloadSub(t, adm, &adminv1.Subscription{System: "switch", EventTypes: []string{"invoice.changed"}, Url: rcv.URL + "/switch"})
	id := sub.GetSubscription().GetSubscriptionId()
	eventOf := func(h hit) string {
		var b map[string]any
		_ = json.Unmarshal(h.Body, &b)
		id, _ := b["id"].(string)
		return id
	}
	var before []string
	for i := range 3 {
		before = append(before, change(t, k, secret, "invoice.changed", fmt.Sprintf("I-%d", i), nil))
	}
	got := map[string]int{}
	for range 3 {
		got[eventOf(rcv.next(t, 10*time.Second))]++
	}
	if _, err := adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: id, Ordering: adminv1.Ordering_ORDERING_ORDERED},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"ordering"}},
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the dispatcher sees the switch through its watch
	var after, order []string
	for i := range 3 {
		after = append(after, change(t, k, secret, "invoice.changed", fmt.Sprintf("J-%d", i), nil))
	}
	for range 3 {
		e := eventOf(rcv.next(t, 10*time.Second))
		got[e]++
		order = append(order, e)
	}
	rcv.none(t, 2*time.Second)
	for _, e := range append(before, after...) {
		if got[e] != 1 {
			t.Errorf("event %s delivered %d times (all: %v)", e, got[e], got)
		}
	}
	if !slices.Equal(order, after) {
		t.Errorf("after the switch: %v, want %v in order", order, after)
	}
}

// TestRedeliverWhatCameWhileOff: a subscription switched off gets nothing;
// what came meanwhile is redelivered by time range once it is on again.
// (Dead letters and their redelivery are contract.AdminAPI's; this needs a
// wait for the switch to reach the dispatcher and one for nothing to come.)
func TestRedeliverWhatCameWhileOff(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	ctx := context.Background()
	rcv := newReceiver(t)
	id := payloadSub(t, adm, &adminv1.Subscription{System: "off", EventTypes: []string{"invoice.changed"}, Url: rcv.URL + "/off",
		Ordering: adminv1.Ordering_ORDERING_ORDERED}).GetSubscription().GetSubscriptionId()
	if _, err := adm.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: id}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	since := time.Now()
	e := change(t, k, secret, "invoice.changed", "I-3", nil)
	rcv.none(t, time.Second)
	if _, err := adm.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: id, Active: true}); err != nil {
		t.Fatal(err)
	}
	r, err := adm.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: id, What: &adminv1.RedeliverRequest_Events{Events: &adminv1.TimeRange{Since: timestamppb.New(since)}}})
	if err != nil || r.GetQueued() != 1 {
		t.Fatalf("redeliver range: %v %v", r, err)
	}
	h := rcv.next(t, 5*time.Second)
	var b map[string]any
	_ = json.Unmarshal(h.Body, &b)
	if b["id"] != e {
		t.Fatalf("redelivered %s, want %s", h.Body, e)
	}
}

func TestDailyDigest(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	ctx := context.Background()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(5 * time.Second).Truncate(time.Second).In(berlin)
	sub := payloadSub(t, adm, &adminv1.Subscription{System: "daily", EventTypes: []string{"recurringinvoice.created"}, Url: rcv.URL + "/daily",
		Schedule: &adminv1.DeliverySchedule{DailyAt: at.Format("15:04:05"), TimeZone: "Europe/Berlin"}})
	id := sub.GetSubscription().GetSubscriptionId()
	if got := sub.GetSubscription().GetSchedule(); got.GetTimeZone() != "Europe/Berlin" {
		t.Fatalf("schedule %v", got)
	}
	var want []string
	for i := range 3 {
		want = append(want, change(t, k, secret, "recurringinvoice.created", fmt.Sprint("R-", i), map[string]any{"n": i}))
	}
	h := rcv.next(t, 15*time.Second)
	if h.At.Before(at.Add(-100 * time.Millisecond)) {
		t.Fatalf("digest at %v, before its time %v", h.At, at)
	}
	var bodies []map[string]any
	if err := json.Unmarshal(h.Body, &bodies); err != nil || len(bodies) != 3 {
		t.Fatalf("digest at %v (due %v) body %s: %v", h.At, at, h.Body, err)
	}
	for i, b := range bodies {
		if b["id"] != want[i] {
			t.Fatalf("digest element %d is %v, want %s", i, b, want[i])
		}
	}
	wh, _ := standardwebhooks.NewWebhook(sub.GetSigningSecret())
	if err := wh.Verify(h.Body, h.Header); err != nil {
		t.Fatalf("digest signature: %v", err)
	}
	// Later changes wait for tomorrow's digest, whose timer is set.
	change(t, k, secret, "recurringinvoice.created", "R-9", nil)
	select {
	case h := <-rcv.got:
		t.Fatalf("sent before the next digest: %s", h.Body)
	case <-time.After(2 * time.Second):
	}
	st, err := jsOf(t, k).Stream(ctx, bus.StreamNotify)
	if err != nil {
		t.Fatal(err)
	}
	timer, err := st.GetLastMsgForSubject(ctx, bus.DigestSched(id))
	if err != nil {
		t.Fatalf("next digest timer: %v", err)
	}
	next, _ := time.Parse(time.RFC3339Nano, strings.TrimPrefix(timer.Header.Get("Nats-Schedule"), "@at "))
	if d := next.Sub(at); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("next digest at %v, %v after this one", next, d)
	}
}

// TestDailyDigestRetried: a digest the receiver refuses is sent again after
// the retry schedule's wait, whole and with the same webhook-id.
func TestDailyDigestRetried(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	rcv.script["/daily"] = []int{500}
	at := time.Now().Add(4 * time.Second).Truncate(time.Second).UTC()
	payloadSub(t, adm, &adminv1.Subscription{System: "daily", EventTypes: []string{"recurringinvoice.created"}, Url: rcv.URL + "/daily",
		Schedule: &adminv1.DeliverySchedule{DailyAt: at.Format("15:04:05")}, RetrySchedule: []*durationpb.Duration{ms(300)}})
	change(t, k, secret, "recurringinvoice.created", "R-1", nil)
	change(t, k, secret, "recurringinvoice.created", "R-2", nil)
	first := rcv.next(t, 15*time.Second)
	again := rcv.next(t, 5*time.Second)
	if again.Header.Get("webhook-id") != first.Header.Get("webhook-id") || string(again.Body) != string(first.Body) {
		t.Fatalf("retry differs: %q %s vs %q %s", again.Header.Get("webhook-id"), again.Body, first.Header.Get("webhook-id"), first.Body)
	}
	var bodies []map[string]any
	if err := json.Unmarshal(again.Body, &bodies); err != nil || len(bodies) != 2 {
		t.Fatalf("retried digest %s: %v", again.Body, err)
	}
}
