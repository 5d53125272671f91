package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// receiver is a test's webhook endpoint: it records every request and
// answers with the next status of a script per path (200 once the script
// is used up).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	hits   []hit
	got    chan hit
	script map[string][]int
	hold   chan struct{} // when set, requests wait for it before answering
	header http.Header   // sent with every answer
}

type hit struct {
	At     time.Time
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{got: make(chan hit, 1000), script: map[string][]int{}, header: http.Header{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		h := hit{At: time.Now(), Method: req.Method, Path: req.URL.RequestURI(), Header: req.Header.Clone(), Body: b}
		r.mu.Lock()
		r.hits = append(r.hits, h)
		code := http.StatusOK
		if s := r.script[req.URL.Path]; len(s) > 0 {
			code, r.script[req.URL.Path] = s[0], s[1:]
		}
		hold := r.hold
		for k, v := range r.header {
			w.Header()[k] = v
		}
		r.mu.Unlock()
		r.got <- h
		if hold != nil {
			<-hold
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"answer":%d}`, code)
	}))
	t.Cleanup(r.Close)
	return r
}

// next waits for the next request, failing after d.
func (r *receiver) next(t *testing.T, d time.Duration) hit {
	t.Helper()
	select {
	case h := <-r.got:
		return h
	case <-time.After(d):
		t.Fatalf("no request within %v", d)
		return hit{}
	}
}

// none asserts that no request comes within d.
func (r *receiver) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case h := <-r.got:
		t.Fatalf("unexpected request %s %s", h.Method, h.Path)
	case <-time.After(d):
	}
}

const delay = time.Second

func pingKurier(t *testing.T, env ...string) *harness.Kurier {
	return harness.Start(t, harness.Options{Env: append([]string{"KURIER_NOTIFY_DELAY=" + delay.String()}, env...)})
}

func pingSub(t *testing.T, adm adminv1.AdminServiceClient, org, system, url string, types ...string) *adminv1.CreateSubscriptionResponse {
	t.Helper()
	resp, err := adm.CreateSubscription(context.Background(), &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: org, System: system, Name: system + " hook", EventTypes: types,
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: url, Active: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

var evSeq struct {
	sync.Mutex
	n int
}

// change posts one change of a document and answers its event id.
func change(t *testing.T, k *harness.Kurier, secret, typ, doc string, data any) string {
	t.Helper()
	evSeq.Lock()
	evSeq.n++
	id := fmt.Sprintf("ev-%d", evSeq.n)
	evSeq.Unlock()
	if a := post(t, k, secret, "application/cloudevents+json", mustJSON(t, ev(id, typ, doc, data)), nil); a.Status != 202 {
		t.Fatalf("post: %+v", a)
	}
	return id
}

func TestPingCapAndResets(t *testing.T) {
	t.Parallel()
	k := pingKurier(t, "KURIER_NOTIFY_MAX_UNACKED=2")
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_CHANGES)
	rcv := newReceiver(t)
	sub := pingSub(t, adm, "acme", "shop", rcv.URL, "invoice.changed")
	id := sub.GetSubscription().GetSubscriptionId()
	ctx := context.Background()

	pingOnce := func() {
		t.Helper()
		change(t, k, secret, "invoice.changed", "INV-1", nil)
		rcv.next(t, 5*time.Second)
	}
	pingOnce()
	time.Sleep(delay)
	pingOnce()
	// Two unacknowledged pings: the cap. A change gets no ping.
	change(t, k, secret, "invoice.changed", "INV-1", nil)
	rcv.none(t, 2*delay+500*time.Millisecond)
	if got, _ := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id}); got.GetUnacked() != 2 {
		t.Fatalf("unacked %d, want 2", got.GetUnacked())
	}

	// Reading the change feed resets the counter; a change is pinged again.
	feed(t, k, secret, "system=shop&type=invoice.changed")
	if got, _ := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id}); got.GetUnacked() != 0 {
		t.Fatalf("unacked %d after the feed query, want 0", got.GetUnacked())
	}
	pingOnce()
	time.Sleep(delay)
	pingOnce()
	change(t, k, secret, "invoice.changed", "INV-1", nil)
	rcv.none(t, 2*delay+500*time.Millisecond)

	// So does switching the subscription off and on.
	for _, on := range []bool{false, true} {
		if _, err := adm.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: id, Active: on}); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id}); got.GetUnacked() != 0 || !got.GetActive() {
		t.Fatalf("after off and on: unacked %d active %v", got.GetUnacked(), got.GetActive())
	}
	time.Sleep(300 * time.Millisecond) // the dispatcher sees the switch through its watch
	pingOnce()
}

// TestPendingPingSurvivesRestart kills kurier while a ping is pending: the
// timer lives in JetStream, so the ping comes after the restart.
func TestPendingPingSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := []string{"KURIER_NOTIFY_DELAY=3s"}
	k := harness.Start(t, harness.Options{DataDir: dir, Env: env})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	pingSub(t, adm, "acme", "shop", rcv.URL, "invoice.changed")
	changed := time.Now()
	change(t, k, secret, "invoice.changed", "INV-1", nil)
	// Killed once the ping's timer is in NOTIFY: a change whose dispatcher
	// dies before that comes again only after the consumer's ack wait.
	notify, err := jsOf(t, k).Stream(context.Background(), bus.StreamNotify)
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitForErr(t, 10*time.Second, "a ping timer", func() error {
		info, err := notify.Info(context.Background())
		if err == nil && info.State.Msgs == 0 {
			err = errors.New("NOTIFY is empty")
		}
		return err
	})
	k.Stop(t, syscall.SIGKILL)

	harness.Start(t, harness.Options{DataDir: dir, Env: env})
	h := rcv.next(t, 15*time.Second)
	if h.At.Sub(changed) < 3*time.Second {
		t.Fatalf("ping %v after the change, before the delay", h.At.Sub(changed))
	}
	rcv.none(t, 4*time.Second)
}

// feed queries the change feed, its changes' data decoded as objects.
func feed(t *testing.T, k *harness.Kurier, secret, query string) changes {
	t.Helper()
	a := contract.Target{HTTP: k.HTTP}.Changes(t, secret, query).Answer
	var c changes
	if err := json.Unmarshal(a.Body, &c); err != nil {
		t.Fatalf("feed answer %d: %s", a.Status, a.Body)
	}
	c.Status = a.Status
	return c
}

type changes struct {
	Status  int
	Changes []struct {
		ID, Type, Subject, Time string
		Data                    map[string]any
	} `json:"changes"`
	Cursor string `json:"cursor"`
	More   bool   `json:"more"`
	Error  *struct {
		Code, Field string
	} `json:"error"`
}

func (c changes) docs() []string {
	var out []string
	for _, ch := range c.Changes {
		out = append(out, ch.Subject+"="+fmt.Sprint(ch.Data["v"]))
	}
	return out
}

func TestDeliveryLog(t *testing.T) {
	t.Parallel()
	k := pingKurier(t)
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	ctx := context.Background()
	ok := pingSub(t, adm, "acme", "shop", rcv.URL, "invoice.changed").GetSubscription()
	down := pingSub(t, adm, "acme", "down", "http://127.0.0.1:1/unreachable", "invoice.changed").GetSubscription()

	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tail, err := adm.TailDeliveries(tctx, &adminv1.TailDeliveriesRequest{OrgId: "acme", SubscriptionId: ok.GetSubscriptionId()})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the tail is in place before the ping
	change(t, k, secret, "invoice.changed", "INV-1", nil)
	rcv.next(t, 5*time.Second)
	d, err := tail.Recv()
	if err != nil || d.GetSubscriptionId() != ok.GetSubscriptionId() || d.GetStatusCode() != 200 || d.GetUnacked() != 1 ||
		d.GetSystem() != "shop" || d.GetUrl() != rcv.URL || d.GetEventTypes()[0] != "invoice.changed" || d.GetLatency() == nil {
		t.Fatalf("tailed %v %v", d, err)
	}

	var list *adminv1.ListDeliveriesResponse
	natstest.WaitForErr(t, 5*time.Second, "2 deliveries", func() error {
		if list, err = adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme"}); err != nil {
			t.Fatal(err)
		}
		if len(list.GetDeliveries()) != 2 {
			return fmt.Errorf("listed %v", list.GetDeliveries())
		}
		return nil
	})
	var failed *adminv1.Delivery
	for _, d := range list.GetDeliveries() {
		if d.GetSubscriptionId() == down.GetSubscriptionId() {
			failed = d
		}
	}
	if failed == nil || failed.GetStatusCode() != 0 || failed.GetError() == "" || failed.GetUnacked() != 1 {
		t.Fatalf("failed ping logged as %v", failed)
	}
	// Paging: one at a time.
	page, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme", PageSize: 1})
	if err != nil || len(page.GetDeliveries()) != 1 || page.GetNextPageToken() == "" {
		t.Fatalf("page 1: %v %v", page, err)
	}
	page2, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme", PageSize: 1, PageToken: page.GetNextPageToken()})
	if err != nil || len(page2.GetDeliveries()) != 1 || page2.GetNextPageToken() != "" ||
		page2.GetDeliveries()[0].GetSequence() == page.GetDeliveries()[0].GetSequence() {
		t.Fatalf("page 2: %v %v", page2, err)
	}
	// Another org sees none of it.
	if _, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "globex"}); err != nil {
		t.Fatal(err)
	}
	if g, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "globex"}); err != nil || len(g.GetDeliveries()) != 0 {
		t.Fatalf("globex: %v %v", g, err)
	}
	if _, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "globex", SubscriptionId: ok.GetSubscriptionId()}); status.Code(err) != codes.NotFound {
		t.Fatalf("globex reading acme's subscription: %v", err)
	}
}

func TestApplyApiNotification(t *testing.T) {
	t.Parallel()
	k := pingKurier(t)
	adm, _ := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	ctx := context.Background()
	apply := func(records string) (*adminv1.ApplyApiNotificationResponse, error) {
		return adm.ApplyApiNotification(ctx, &adminv1.ApplyApiNotificationRequest{OrgId: "acme", Records: records})
	}
	list := func() map[string]*adminv1.Subscription {
		t.Helper()
		l, err := adm.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*adminv1.Subscription{}
		for _, s := range l.GetSubscriptions() {
			for _, typ := range s.GetEventTypes() {
				out[s.GetSystem()+"/"+typ] = s
			}
		}
		return out
	}

	resp, err := apply("API_NOTIFICATION;shop;5;https://shop.example/hook?x=1;0\r\n" +
		"API_NOTIFICATION;shop;8;\"https://shop.example/p;roducts\";1\n\n" +
		"API_NOTIFICATION;crm;9;https://crm.example/a\n")
	if err != nil || resp.GetCreated() != 3 || len(resp.GetSubscriptions()) != 3 {
		t.Fatalf("first apply: %v %v", resp, err)
	}
	subs := list()
	if s := subs["shop/invoice.changed"]; s == nil || !s.GetActive() || s.GetUrl() != "https://shop.example/hook?x=1" || s.GetMode() != adminv1.DeliveryMode_DELIVERY_MODE_PING {
		t.Fatalf("shop/5: %v", s)
	}
	if s := subs["shop/product.changed"]; s == nil || s.GetActive() || s.GetUrl() != "https://shop.example/p;roducts" {
		t.Fatalf("shop/8: %v", s)
	}
	if s := subs["crm/address.changed"]; s == nil || !s.GetActive() {
		t.Fatalf("crm/9: %v", s)
	}

	// Same pairs again: update the URL, switch one on, delete one, keep one.
	resp, err = apply("API_NOTIFICATION;shop;5;https://shop.example/new;0\n" +
		"API_NOTIFICATION;shop;8;\"https://shop.example/p;roducts\";0\n" +
		"API_NOTIFICATION;crm;9;https://crm.example/a;2\n" +
		"API_NOTIFICATION;nobody;1;https://x.example/;2\n")
	if err != nil || resp.GetUpdated() != 2 || resp.GetDeleted() != 1 || resp.GetUnchanged() != 1 || resp.GetCreated() != 0 {
		t.Fatalf("second apply: %v %v", resp, err)
	}
	subs = list()
	if len(subs) != 2 || subs["shop/invoice.changed"].GetUrl() != "https://shop.example/new" || !subs["shop/product.changed"].GetActive() || subs["crm/address.changed"] != nil {
		t.Fatalf("after second apply: %v", subs)
	}
	if resp, err := apply("API_NOTIFICATION;shop;5;https://shop.example/new;0\n"); err != nil || resp.GetUnchanged() != 1 {
		t.Fatalf("unchanged apply: %v %v", resp, err)
	}

	// A line is about one event: on a subscription holding several types it
	// moves its type into a subscription of its own when it wants it otherwise.
	multi := multiSub(t, adm)
	resp, err = apply("API_NOTIFICATION;multi;3;https://multi.example/;0\nAPI_NOTIFICATION;multi;5;https://multi.example/;0\n")
	if err != nil || resp.GetUnchanged() != 2 || len(resp.GetSubscriptions()) != 1 {
		t.Fatalf("unchanged lines on one subscription: %v %v", resp, err)
	}
	resp, err = apply("API_NOTIFICATION;multi;5;https://other.example/;1\n")
	if err != nil || resp.GetUpdated() != 1 {
		t.Fatalf("split: %v %v", resp, err)
	}
	subs = list()
	if s3, s5 := subs["multi/salesorder.changed"], subs["multi/invoice.changed"]; s3.GetSubscriptionId() != multi ||
		!s3.GetActive() || s3.GetUrl() != "https://multi.example/" || s5.GetSubscriptionId() == multi || s5.GetActive() || s5.GetUrl() != "https://other.example/" {
		t.Fatalf("after split: 3=%v 5=%v", s3, s5)
	}
	if _, err := adm.DeleteSubscription(ctx, &adminv1.DeleteSubscriptionRequest{SubscriptionId: multi}); err != nil {
		t.Fatal(err)
	}
	if _, err := apply("API_NOTIFICATION;multi;5;https://other.example/;2\n"); err != nil {
		t.Fatal(err)
	}

	// A bad line anywhere: nothing of the call is applied.
	for records, want := range map[string]string{
		"API_NOTIFICATION;erp;5;https://erp.example/;0\nAPI_NOTIFICATION;erp;10;https://erp.example/;0\n": "line 2: Ereignis",
		"API_NOTIFICATION;erp;5;https://erp.example/;0\nAPI_NOTIFICATION;erp;6;ftp://erp.example/;0\n":    "line 2: URL",
		"API_NOTIFICATION;erp;5;https://erp.example/;3\n":                                                 "line 1: Inaktiv",
		"API_NOTIFICATION;" + strings.Repeat("x", 21) + ";5;https://erp.example/;0\n":                     "line 1: System",
		"API_NOTIFICATION;erp;5;https://erp.example/;0\n\nAPI_NOTIFICATION;erp;5;https://erp.example/2\n": "line 3: Ereignis",
		"CMXPRD;erp;5;https://erp.example/;0\n":                                                           "line 1: Satzart",
		"API_NOTIFICATION;erp;5;\"https://erp.example/;0\n":                                               "line 1: record",
	} {
		_, err := apply(records)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), want) {
			t.Errorf("%q: %v, want InvalidArgument naming %q", records, err, want)
		}
	}
	if subs := list(); len(subs) != 2 {
		t.Fatalf("a rejected call changed subscriptions: %v", subs)
	}
}

// multiSub makes a ping subscription of system "multi" for Collmex events 3
// and 5, as an admin would over gRPC.
func multiSub(t *testing.T, adm adminv1.AdminServiceClient) string {
	t.Helper()
	return pingSub(t, adm, "acme", "multi", "https://multi.example/", "3", "5").GetSubscription().GetSubscriptionId()
}

// TestPrivateTargetsRefused: without KURIER_ALLOW_PRIVATE_TARGETS a ping or
// a POST to loopback, by address or by a name resolving to it, is refused
// before any connection, and the delivery log says why.
func TestPrivateTargetsRefused(t *testing.T) {
	t.Parallel()
	k := pingKurier(t, "KURIER_ALLOW_PRIVATE_TARGETS=false")
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	port := rcv.URL[strings.LastIndexByte(rcv.URL, ':'):]
	pingSub(t, adm, "acme", "byip", rcv.URL, "invoice.changed")
	pingSub(t, adm, "acme", "byname", "http://localhost"+port+"/", "invoice.changed")
	payloadSub(t, adm, &adminv1.Subscription{System: "post", EventTypes: []string{"invoice.changed"}, Url: "http://localhost" + port + "/post",
		RetrySchedule: []*durationpb.Duration{ms(5000)}})
	change(t, k, secret, "invoice.changed", "INV-1", nil)
	rcv.none(t, 2*delay+500*time.Millisecond)
	var list *adminv1.ListDeliveriesResponse
	natstest.WaitForErr(t, 5*time.Second, "3 deliveries", func() error {
		var err error
		if list, err = adm.ListDeliveries(context.Background(), &adminv1.ListDeliveriesRequest{OrgId: "acme"}); err != nil {
			t.Fatal(err)
		}
		if len(list.GetDeliveries()) != 3 {
			return fmt.Errorf("listed %v", list.GetDeliveries())
		}
		return nil
	})
	for _, d := range list.GetDeliveries() {
		if d.GetStatusCode() != 0 || !strings.Contains(d.GetError(), "not allowed") {
			t.Errorf("%s: status %d error %q", d.GetSystem(), d.GetStatusCode(), d.GetError())
		}
	}
}
