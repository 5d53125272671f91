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

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
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

func TestPingCoalescesChanges(t *testing.T) {
	k := pingKurier(t)
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	sub := pingSub(t, adm, "acme", "shop", rcv.URL+"/collmex?token=abc", "5")
	if got := sub.GetSubscription().GetEventTypes(); len(got) != 1 || got[0] != "invoice.changed" {
		t.Fatalf("Collmex code 5 stored as %v", got)
	}

	first := time.Now()
	for i := range 5 {
		change(t, k, secret, "invoice.changed", fmt.Sprint("INV-", i), nil)
	}
	change(t, k, secret, "quote.changed", "Q-1", nil) // not subscribed
	h := rcv.next(t, 5*time.Second)
	if gap := h.At.Sub(first); gap < delay {
		t.Fatalf("ping %v after the first change, want at least %v", gap, delay)
	}
	if h.Method != http.MethodGet || h.Path != "/collmex?token=abc" || len(h.Body) != 0 {
		t.Fatalf("ping %s %s %q", h.Method, h.Path, h.Body)
	}
	if ua := h.Header.Get("User-Agent"); !strings.HasPrefix(ua, "kurier/") {
		t.Fatalf("User-Agent %q", ua)
	}
	wh, err := standardwebhooks.NewWebhook(sub.GetSigningSecret())
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(nil, h.Header); err != nil {
		t.Fatalf("signature does not verify: %v (%v)", err, h.Header)
	}
	// Five changes, one ping.
	rcv.none(t, 2*delay)

	got, err := adm.GetSubscription(context.Background(), &adminv1.GetSubscriptionRequest{SubscriptionId: sub.GetSubscription().GetSubscriptionId()})
	if err != nil || got.GetUnacked() != 1 || got.GetLastNotifiedAt() == nil || got.GetPendingSince() != nil {
		t.Fatalf("state after one ping: %v %v", got, err)
	}
}

func TestPingGapAndTrailingPing(t *testing.T) {
	k := pingKurier(t)
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	pingSub(t, adm, "acme", "shop", rcv.URL, "invoice.changed")

	// Changes every 100 ms for 3.5 s: pings keep coming, never closer than
	// the delay, and a change after the last ping gets a trailing one.
	stop := time.Now().Add(3500 * time.Millisecond)
	var lastChange time.Time
	for time.Now().Before(stop) {
		change(t, k, secret, "invoice.changed", "INV-1", nil)
		lastChange = time.Now()
		time.Sleep(100 * time.Millisecond)
	}
	var pings []time.Time
	for {
		select {
		case h := <-rcv.got:
			pings = append(pings, h.At)
			continue
		case <-time.After(2500 * time.Millisecond):
		}
		break
	}
	if len(pings) < 3 || len(pings) > 4 {
		t.Fatalf("%d pings over 3.5 s of changes with a %v delay: %v", len(pings), delay, pings)
	}
	for i := 1; i < len(pings); i++ {
		if gap := pings[i].Sub(pings[i-1]); gap < delay {
			t.Fatalf("pings %d and %d only %v apart", i-1, i, gap)
		}
	}
	if last := pings[len(pings)-1]; !last.After(lastChange) {
		t.Fatalf("no ping after the last change (%v, last ping %v)", lastChange, last)
	}
}

func TestPingCapAndResets(t *testing.T) {
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

func TestInactiveAndDeletedGetNothing(t *testing.T) {
	k := pingKurier(t)
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	ctx := context.Background()
	a := pingSub(t, adm, "acme", "a", rcv.URL+"/a", "invoice.changed")
	b := pingSub(t, adm, "acme", "b", rcv.URL+"/b", "invoice.changed")
	// A pending ping is dropped when its subscription is switched off or deleted.
	change(t, k, secret, "invoice.changed", "INV-1", nil)
	time.Sleep(200 * time.Millisecond)
	if _, err := adm.SetSubscriptionActive(ctx, &adminv1.SetSubscriptionActiveRequest{SubscriptionId: a.GetSubscription().GetSubscriptionId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.DeleteSubscription(ctx, &adminv1.DeleteSubscriptionRequest{SubscriptionId: b.GetSubscription().GetSubscriptionId()}); err != nil {
		t.Fatal(err)
	}
	rcv.none(t, 2*delay)
	time.Sleep(300 * time.Millisecond)
	change(t, k, secret, "invoice.changed", "INV-2", nil)
	rcv.none(t, 2*delay)
}

// TestPendingPingSurvivesRestart kills kurier while a ping is pending: the
// timer lives in JetStream, so the ping comes after the restart.
func TestPendingPingSurvivesRestart(t *testing.T) {
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
	notify, err := jsOf(t, k).Stream(context.Background(), "NOTIFY")
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

// feed queries the change feed.
func feed(t *testing.T, k *harness.Kurier, secret, query string) changes {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, k.HTTP+"/v1/changes?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c changes
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("feed answer %d: %s", resp.StatusCode, b)
	}
	c.Status = resp.StatusCode
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

func TestChangeFeed(t *testing.T) {
	k := pingKurier(t)
	_, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_CHANGES)
	for i, doc := range []string{"A", "B", "A", "C", "B", "A"} {
		change(t, k, secret, "invoice.changed", doc, map[string]any{"v": i})
	}
	change(t, k, secret, "quote.changed", "Q", map[string]any{"v": 9})

	// Collmex mode: the latest version per document, oldest first; the next
	// query gives only what changed since.
	c := feed(t, k, secret, "system=shop&type=5")
	if got := strings.Join(c.docs(), " "); c.Status != 200 || got != "C=3 B=4 A=5" || c.More {
		t.Fatalf("first query: %d %q more=%v", c.Status, got, c.More)
	}
	if c := feed(t, k, secret, "system=shop&type=invoice.changed"); len(c.Changes) != 0 {
		t.Fatalf("second query repeats: %v", c.docs())
	}
	change(t, k, secret, "invoice.changed", "B", map[string]any{"v": 6})
	if c := feed(t, k, secret, "system=shop&type=invoice.changed"); strings.Join(c.docs(), " ") != "B=6" {
		t.Fatalf("after one more change: %v", c.docs())
	}
	// Each system has its own position.
	if c := feed(t, k, secret, "system=crm&type=invoice.changed"); strings.Join(c.docs(), " ") != "C=3 A=5 B=6" {
		t.Fatalf("another system: %v", c.docs())
	}

	// Cursor mode with a limit: pages, and a receiver that crashes before
	// processing a page gets it again by passing its last cursor.
	c1 := feed(t, k, secret, "system=erp&type=invoice.changed&cursor=&limit=2")
	if strings.Join(c1.docs(), " ") != "B=1 A=2" || !c1.More {
		t.Fatalf("page 1: %v more=%v", c1.docs(), c1.More)
	}
	c2 := feed(t, k, secret, "system=erp&type=invoice.changed&limit=2&cursor="+c1.Cursor)
	// "crash": page 2 was never processed; asking again with cursor c1 repeats it.
	c2again := feed(t, k, secret, "system=erp&type=invoice.changed&limit=2&cursor="+c1.Cursor)
	if strings.Join(c2.docs(), " ") != strings.Join(c2again.docs(), " ") || len(c2.Changes) == 0 {
		t.Fatalf("page 2 %v, again %v", c2.docs(), c2again.docs())
	}
	all := append(c1.docs(), c2.docs()...)
	c3 := feed(t, k, secret, "system=erp&type=invoice.changed&cursor="+c2.Cursor)
	all = append(all, c3.docs()...)
	if c3.More || strings.Contains(strings.Join(all, " "), "A=0") || !strings.Contains(strings.Join(all, " "), "B=6") {
		t.Fatalf("pages: %v, last more=%v", all, c3.More)
	}
	// Everything acknowledged: nothing new.
	if c := feed(t, k, secret, "system=erp&type=invoice.changed&cursor="+c3.Cursor); len(c.Changes) != 0 || c.Cursor != c3.Cursor {
		t.Fatalf("after the last page: %v cursor %s (was %s)", c.docs(), c.Cursor, c3.Cursor)
	}

	for q, field := range map[string]string{
		"type=invoice.changed":                          "system",
		"system=shop":                                   "type",
		"system=shop&type=Invoice":                      "type",
		"system=shop&type=10":                           "type",
		"system=shop&type=5&limit=0":                    "limit",
		"system=shop&type=5&limit=1001":                 "limit",
		"system=shop&type=5&cursor=x":                   "cursor",
		"system=shop&type=5&cursor=c999999":             "cursor",
		"system=" + strings.Repeat("s", 21) + "&type=5": "system",
	} {
		if c := feed(t, k, secret, q); c.Status != 400 || c.Error == nil || c.Error.Field != field {
			t.Errorf("%s: %d %+v, want 400 on %s", q, c.Status, c.Error, field)
		}
	}
	// An ingest-only key cannot read the feed.
	_, ingestOnly := setup(t, k, "globex", adminv1.KeyScope_KEY_SCOPE_INGEST)
	if c := feed(t, k, ingestOnly, "system=shop&type=5"); c.Status != 403 {
		t.Fatalf("ingest key on the feed: %d", c.Status)
	}
}

func TestDeliveryLog(t *testing.T) {
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

func TestSubscriptionAdmin(t *testing.T) {
	k := pingKurier(t)
	adm, _ := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	ctx := context.Background()
	create := func(s *adminv1.Subscription) (*adminv1.CreateSubscriptionResponse, error) {
		return adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: s})
	}
	base := func() *adminv1.Subscription {
		return &adminv1.Subscription{OrgId: "acme", System: "shop", EventTypes: []string{"invoice.changed", "6"},
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: "https://shop.example/hook", Active: true}
	}
	first, err := create(base())
	if err != nil || !strings.HasPrefix(first.GetSigningSecret(), "whsec_") || len(first.GetSubscription().GetSubscriptionId()) != 20 {
		t.Fatalf("create: %v %v", first, err)
	}
	id := first.GetSubscription().GetSubscriptionId()
	if _, err := create(base()); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("same system and type again: %v", err)
	}
	other := base()
	other.EventTypes = []string{"quote.changed"} // 6 is quote.changed: taken too
	if _, err := create(other); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("overlapping type: %v", err)
	}
	other.System = "crm" // another system may have it
	if _, err := create(other); err != nil {
		t.Fatalf("other system: %v", err)
	}

	for name, mut := range map[string]func(*adminv1.Subscription){
		"system":      func(s *adminv1.Subscription) { s.System = strings.Repeat("s", 21) },
		"event_types": func(s *adminv1.Subscription) { s.EventTypes = []string{"Invoice"} },
		"url":         func(s *adminv1.Subscription) { s.Url = "ftp://x.example/" },
		"mode":        func(s *adminv1.Subscription) { s.Mode = adminv1.DeliveryMode_DELIVERY_MODE_UNSPECIFIED },
		"org_id":      func(s *adminv1.Subscription) { s.OrgId = "Nope" },
	} {
		s := base()
		s.System = "new"
		mut(s)
		if _, err := create(s); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), name) {
			t.Errorf("bad %s: %v", name, err)
		}
	}
	long := base()
	long.System, long.Url = "long", "https://x.example/"+strings.Repeat("a", 240)
	if _, err := create(long); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "url") {
		t.Errorf("ping url over 255: %v", err)
	}

	upd, err := adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: id, Url: "https://shop.example/v2", Name: "ignored"},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"url"}},
	})
	if err != nil || upd.GetUrl() != "https://shop.example/v2" || upd.GetName() != "" || len(upd.GetEventTypes()) != 2 {
		t.Fatalf("update url: %v %v", upd, err)
	}
	// Dropping quote.changed frees it for crm's… no: crm took it already; shop may give it up.
	upd, err = adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: id, EventTypes: []string{"5"}},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"event_types"}},
	})
	if err != nil || len(upd.GetEventTypes()) != 1 || upd.GetEventTypes()[0] != "invoice.changed" {
		t.Fatalf("update types: %v %v", upd, err)
	}
	freed := base()
	freed.EventTypes = []string{"quote.changed"}
	if _, err := create(freed); err != nil {
		t.Fatalf("type given up by an update is free again: %v", err)
	}
	if _, err := adm.UpdateSubscription(ctx, &adminv1.UpdateSubscriptionRequest{
		Subscription: &adminv1.Subscription{SubscriptionId: id, Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"mode"}},
	}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("update mode: %v", err)
	}
	if _, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: "0123456789abcdef0123"}); status.Code(err) != codes.NotFound {
		t.Fatalf("get unknown: %v", err)
	}
	if _, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: "../../x"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("get malformed: %v", err)
	}

	// Deleting the org deletes its subscriptions and frees their pairs.
	if _, err := adm.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: id}); status.Code(err) != codes.NotFound {
		t.Fatalf("subscription of a deleted org: %v", err)
	}
	if _, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := create(base()); err != nil {
		t.Fatalf("pair of a deleted org not freed: %v", err)
	}
}

func TestRotateSecretAndPreview(t *testing.T) {
	k := pingKurier(t, "KURIER_SECRET_ROTATION_GRACE=1h")
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	ctx := context.Background()
	created := pingSub(t, adm, "acme", "shop", rcv.URL+"/p?x=1", "invoice.changed")
	id := created.GetSubscription().GetSubscriptionId()

	prev, err := adm.PreviewSubscription(ctx, &adminv1.PreviewSubscriptionRequest{SubscriptionId: id})
	if err != nil || prev.GetMethod() != "GET" || prev.GetUrl() != rcv.URL+"/p?x=1" || prev.GetSampleBody() != "" {
		t.Fatalf("preview: %v %v", prev, err)
	}
	rot, err := adm.RotateSecret(ctx, &adminv1.RotateSecretRequest{SubscriptionId: id})
	if err != nil || !strings.HasPrefix(rot.GetSigningSecret(), "whsec_") || rot.GetSigningSecret() == created.GetSigningSecret() ||
		time.Until(rot.GetPreviousValidUntil().AsTime()) < 59*time.Minute {
		t.Fatalf("rotate: %v %v", rot, err)
	}
	time.Sleep(300 * time.Millisecond) // the dispatcher sees the new secret
	change(t, k, secret, "invoice.changed", "INV-1", nil)
	h := rcv.next(t, 5*time.Second)
	if sigs := strings.Fields(h.Header.Get("webhook-signature")); len(sigs) != 2 {
		t.Fatalf("during the grace period two signatures, got %q", h.Header.Get("webhook-signature"))
	}
	// Receivers holding either secret verify the request.
	for _, sec := range []string{created.GetSigningSecret(), rot.GetSigningSecret()} {
		wh, err := standardwebhooks.NewWebhook(sec)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(nil, h.Header); err != nil {
			t.Fatalf("secret %s…: %v", sec[:10], err)
		}
	}
	// One not in use does not.
	wh, _ := standardwebhooks.NewWebhook("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err := wh.Verify(nil, h.Header); err == nil {
		t.Fatal("a foreign secret verifies")
	}
}

// TestPrivateTargetsRefused: without KURIER_ALLOW_PRIVATE_TARGETS a ping or
// a POST to loopback, by address or by a name resolving to it, is refused
// before any connection, and the delivery log says why.
func TestPrivateTargetsRefused(t *testing.T) {
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
