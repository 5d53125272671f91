package admin_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/dispatcher/dispatchertest"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

// hooks is a receiver on loopback that counts each webhook-id it gets.
type hooks struct {
	url string
	mu  sync.Mutex
	ids map[string]int
}

func newHooks(t *testing.T) *hooks {
	t.Helper()
	h := &hooks{ids: map[string]int{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.ids[r.Header.Get("webhook-id")]++
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	h.url = "http://" + lis.Addr().String() + "/hook"
	return h
}

func (h *hooks) got() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.ids))
	for k, v := range h.ids {
		out[k] = v
	}
	return out
}

func payloadSub(t *testing.T, ctx context.Context, api adminv1.AdminServiceClient, url string) string {
	t.Helper()
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	created, err := api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "erp", EventTypes: []string{"invoice.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: url}})
	if err != nil {
		t.Fatal(err)
	}
	return created.GetSubscription().GetSubscriptionId()
}

func eventData(t *testing.T, id string) []byte {
	t.Helper()
	b, err := event.Event{ID: id, Source: "/erp", Type: "invoice.changed", Subject: "INV-" + id, Data: []byte(`{"n":1}`)}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dlogRecord(org, sub, event string) dlog.Record {
	return dlog.Record{Time: time.Now().UTC(), Org: org, Subscription: sub, Mode: "payload", EventID: event, Outcome: "delivered", Status: 200, Attempt: 1}
}

// bury stores dead letters of sub for the events ids, as the dispatcher
// stores one whose retries ran out.
func bury(t *testing.T, conn *jet.Conn, sub string, ids ...string) {
	t.Helper()
	var msgs []*nats.Msg
	for i, id := range ids {
		d := bus.DeliveryTask(sub, uint64(i+1), time.Now(), eventData(t, id), "")
		d.Subject = bus.DeadSubject("acme", sub)
		d.Header.Del(jetstream.MsgIDHeader)
		msgs = append(msgs, d)
	}
	if err := jet.PublishAll(context.Background(), conn.JS, msgs); err != nil {
		t.Fatal(err)
	}
}

// deadLetters answers every dead letter of sub, page by page.
func deadLetters(t *testing.T, ctx context.Context, api adminv1.AdminServiceClient, sub string) []*adminv1.DeadLetter {
	t.Helper()
	var all []*adminv1.DeadLetter
	token := ""
	for {
		resp, err := api.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: "acme", SubscriptionId: sub, PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, resp.GetDeadLetters()...)
		if token = resp.GetNextPageToken(); token == "" {
			return all
		}
	}
}

// TestRedeliverSwitchedOffKeepsEveryDeadLetter: the dead letters of a
// switched-off subscription, redelivered, come back as its dead letters,
// each once; a call reading more than a page of them must not read those
// that its own tasks became meanwhile.
func TestRedeliverSwitchedOffKeepsEveryDeadLetter(t *testing.T) {
	ctx, api, conn := busAdmin(t)
	h := newHooks(t)
	sub := payloadSub(t, ctx, api, h.url)
	if _, err := api.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: sub, Active: false}); err != nil {
		t.Fatal(err)
	}
	dispatchertest.Run(t, conn)
	// One first, to know the dispatcher delivers the partition and counts
	// the subscription off.
	bury(t, conn, sub, "warm-up")
	if r, err := api.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: sub, What: &adminv1.RedeliverRequest_AllDeadLetters{AllDeadLetters: true}}); err != nil || r.GetQueued() != 1 {
		t.Fatalf("redeliver warm-up: %v %v", r, err)
	}
	natstest.WaitFor(t, 20*time.Second, "the warm-up back in the dead letters", func() bool { return len(deadLetters(t, ctx, api, sub)) == 1 })

	const n = 3000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("e-%04d", i)
	}
	bury(t, conn, sub, ids...)
	r, err := api.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: sub, What: &adminv1.RedeliverRequest_AllDeadLetters{AllDeadLetters: true}})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetQueued() != n+1 {
		t.Errorf("queued %d, want %d", r.GetQueued(), n+1)
	}
	// Until the dispatcher has put back what it will.
	dl := deadLetters(t, ctx, api, sub)
	for still, deadline := 0, time.Now().Add(30*time.Second); still < 3 && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		now := deadLetters(t, ctx, api, sub)
		if len(now) == len(dl) {
			still++
		} else {
			still = 0
		}
		dl = now
	}
	count := map[string]int{}
	for _, d := range dl {
		count[d.GetEventId()]++
	}
	var missing, twice []string
	for _, id := range append(ids, "warm-up") {
		switch count[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			twice = append(twice, id)
		}
	}
	if len(missing) > 0 || len(twice) > 0 {
		t.Errorf("after the redelivery: %d dead letters, %d events lost (%v…), %d twice (%v…)", len(dl), len(missing), missing[:min(3, len(missing))], len(twice), twice[:min(3, len(twice))])
	}
	if len(h.got()) != 0 {
		t.Errorf("a switched-off subscription got requests: %v", h.got())
	}
}

// TestRedeliverRacingCallsDeliverOnce: two Redeliver calls at once for a
// subscription whose URL and secret changed since its deliveries died:
// each dead letter is delivered once, with the webhook-id it had, the
// calls' queued counts add up to the dead letters, and none is left.
func TestRedeliverRacingCallsDeliverOnce(t *testing.T) {
	ctx, api, conn := busAdmin(t)
	h := newHooks(t)
	sub := payloadSub(t, ctx, api, "https://erp.example/hook")
	if _, err := api.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: sub, Url: h.url},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"url"}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.RotateSecret(ctx, &adminv1.RotateSecretRequest{SubscriptionId: sub}); err != nil {
		t.Fatal(err)
	}
	dispatchertest.Run(t, conn)
	const n = 300
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("e-%03d", i)
	}
	bury(t, conn, sub, ids...)
	want := map[string]bool{}
	for _, d := range deadLetters(t, ctx, api, sub) {
		want[d.GetDeliveryId()] = true
	}
	if len(want) != n {
		t.Fatalf("%d dead letters, want %d", len(want), n)
	}

	var wg sync.WaitGroup
	queued := make([]uint32, 2)
	for i := range queued {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := api.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: sub, What: &adminv1.RedeliverRequest_AllDeadLetters{AllDeadLetters: true}})
			if err != nil {
				t.Errorf("redeliver %d: %v", i, err)
			}
			queued[i] = r.GetQueued()
		}()
	}
	wg.Wait()
	natstest.WaitFor(t, 30*time.Second, "every dead letter delivered", func() bool { return len(h.got()) >= n })
	time.Sleep(time.Second) // what else was queued comes meanwhile
	var twice []string
	for id, c := range h.got() {
		if !want[id] {
			t.Errorf("delivered %q, no dead letter's webhook-id", id)
		}
		if c > 1 {
			twice = append(twice, id)
		}
	}
	if len(twice) > 0 {
		t.Errorf("%d of %d dead letters delivered more than once", len(twice), n)
	}
	if queued[0]+queued[1] != n {
		t.Errorf("the calls queued %d and %d, %d dead letters", queued[0], queued[1], n)
	}
	if left := deadLetters(t, ctx, api, sub); len(left) != 0 {
		t.Errorf("%d dead letters left", len(left))
	}
	// Again: nothing is left to queue.
	if _, err := api.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: sub, What: &adminv1.RedeliverRequest_DeliveryId{DeliveryId: bus.WebhookID(sub, "/erp", ids[0])}}); status.Code(err) != codes.NotFound {
		t.Errorf("redeliver a redelivered one again: %v, want NotFound", err)
	}
}

// TestRedeliverRangeBeyondLimit: a time range with more events than one
// call may queue is not cut short unnoticed: the call either queues all
// of them or queues none and says where to split the range, and the parts
// it names queue each event once.
func TestRedeliverRangeBeyondLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 100,001 events")
	}
	const limit = 100000 // admin's maxRedeliver
	ctx, api, conn := busAdmin(t)
	sub := payloadSub(t, ctx, api, "https://erp.example/hook")
	since := time.Now().Add(-time.Minute)
	msgs := make([]*nats.Msg, 0, limit+1)
	for i := range limit + 1 {
		m := nats.NewMsg(bus.EventsSubject("acme", "invoice.changed"))
		m.Data = eventData(t, fmt.Sprintf("e-%06d", i))
		msgs = append(msgs, m)
	}
	if err := jet.PublishAll(ctx, conn.JS, msgs); err != nil {
		t.Fatal(err)
	}
	tasks := func() uint64 {
		t.Helper()
		got, err := natstest.Tasks(ctx, conn.JS)
		if err != nil {
			t.Fatal(err)
		}
		return got[bus.DeliverSubject(sub)]
	}
	redeliver := func(r *adminv1.TimeRange) (uint32, error) {
		resp, err := api.Redeliver(ctx, &adminv1.RedeliverRequest{SubscriptionId: sub, What: &adminv1.RedeliverRequest_Events{Events: r}})
		return resp.GetQueued(), err
	}
	q, err := redeliver(&adminv1.TimeRange{Since: timestamppb.New(since)})
	if err == nil {
		if q != limit+1 {
			t.Fatalf("queued %d of %d events in the range and answered no more", q, limit+1)
		}
		return
	}
	if n := tasks(); n != 0 {
		t.Fatalf("refused (%v) after queueing %d", err, n)
	}
	// The answer names where the first part ends and the next begins.
	msg := status.Convert(err).Message()
	var until, from string
	for f := range strings.FieldsSeq(msg) {
		f = strings.Trim(f, ",.;()")
		if _, perr := time.Parse(time.RFC3339Nano, f); perr == nil {
			if until == "" {
				until = f
			} else if from == "" {
				from = f
			}
		}
	}
	if until == "" || from == "" {
		t.Fatalf("refused without saying where to split: %v", err)
	}
	u, _ := time.Parse(time.RFC3339Nano, until)
	f, _ := time.Parse(time.RFC3339Nano, from)
	q1, err := redeliver(&adminv1.TimeRange{Since: timestamppb.New(since), Until: timestamppb.New(u)})
	if err != nil {
		t.Fatalf("the first part (until %s): %v", until, err)
	}
	q2, err := redeliver(&adminv1.TimeRange{Since: timestamppb.New(f)})
	if err != nil {
		t.Fatalf("the rest (since %s): %v", from, err)
	}
	if q1+q2 != limit+1 || tasks() != limit+1 {
		t.Errorf("the parts queued %d and %d (%d tasks), want %d together", q1, q2, tasks(), limit+1)
	}
}

// TestTailEndsWithItsClient: a tail whose client went away leaves no
// consumer of the log behind, and a tail of one org never sends
// another's records.
func TestTailEndsWithItsClient(t *testing.T) {
	ctx, api, conn := busAdmin(t)
	sub := payloadSub(t, ctx, api, "https://erp.example/hook")
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme2"}); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithCancel(ctx)
	tail, err := api.TailDeliveries(tctx, &adminv1.TailDeliveriesRequest{OrgId: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tail.Header(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []dlog.Record{dlogRecord("acme2", "other", "x"), dlogRecord("acme", sub, "mine")} {
		m, err := dlog.Message(r)
		if err == nil {
			_, err = conn.JS.PublishMsg(ctx, m)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if d, err := tail.Recv(); err != nil || d.GetEventId() != "mine" {
		t.Fatalf("tail: %v %v", d, err)
	}
	cancel()
	log, err := conn.JS.Stream(ctx, bus.StreamDeliveryLog)
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 20*time.Second, "no consumer of the log left", func() bool {
		info, err := log.Info(ctx)
		return err == nil && info.State.Consumers == 0
	})
}
