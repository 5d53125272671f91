package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// kurierFamilies is every metric family `kurier all` registers. A vector
// family none of whose label values has been used yet is not in /metrics
// at all, so the scrape alone would not miss it.
var kurierFamilies = []string{
	// ingest
	"kurier_ingest_events_total", "kurier_ingest_requests_total", "kurier_ingest_request_seconds",
	// dispatcher
	"kurier_dispatch_events_total", "kurier_dispatch_subscriptions", "kurier_ping_scheduled_total", "kurier_pings_skipped_total",
	"kurier_deliveries_total", "kurier_delivery_duration_seconds", "kurier_delivery_lag_seconds",
	"kurier_retries_scheduled", "kurier_dispatcher_partitions", "kurier_queue_deliveries_total",
	// queue
	"kurier_queue_requests_total", "kurier_queue_waiting",
	// addresssync
	"kurier_addresssync_requests_total", "kurier_addresssync_persons_total", "kurier_addresssync_request_seconds",
	// admin
	"kurier_admin_calls_total",
}

// TestEveryMetricMoves runs a flow through every service of `kurier all`
// and checks that every kurier_ metric family has moved: a counter or a
// gauge with a sample above zero, a histogram with observations. Gauges
// count as moved once any scrape saw them above zero.
func TestEveryMetricMoves(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{Env: []string{
		"KURIER_NOTIFY_DELAY=300ms",
		// A held ping blocks the next one of its subscription until this
		// and 5 s more have passed (see the skipped ping below).
		"KURIER_PING_TIMEOUT=3s",
		"KURIER_ALLOW_PRIVATE_TARGETS=true",
	}})
	ctx := context.Background()
	tn := newTenant(t, k, "acme")
	adm := tn.adm
	ingestKey, partner := tn.keys["ingest"], tn.keys["partner"]

	// The path says how the receiver answers.
	rcv := newReceiver(t)
	rcv.script["/retry"] = []int{500}     // then 200: a retry, then a success
	rcv.script["/dead"] = []int{500, 500} // until the one retry has run out: a dead letter
	rcv.script["/gone"] = []int{410}      // switched off
	rcv.script["/waiting"] = []int{500}   // its retry waits an hour: kurier_retries_scheduled
	held := newReceiver(t)                // holds every request until the test ends
	held.hold = make(chan struct{})
	defer func() {
		held.mu.Lock()
		close(held.hold)
		held.hold = nil
		held.mu.Unlock()
	}()

	q := contract.CreateQueue(t, k.HTTP, partner)    // a queue subscription's, and the queue API's
	idle := contract.CreateQueue(t, k.HTTP, partner) // stays empty: a peek waits on it
	pingSub(t, adm, "acme", "shop", rcv.URL+"/ping", "invoice.changed")
	skipped := pingSub(t, adm, "acme", "skipped", held.URL+"/skipped", "salesorder.changed").GetSubscription().GetSubscriptionId()
	retries := func(d ...int) []*durationpb.Duration {
		var out []*durationpb.Duration
		for _, v := range d {
			out = append(out, ms(v))
		}
		return out
	}
	for _, s := range []*adminv1.Subscription{
		{System: "ok", EventTypes: []string{"project.created"}, Url: rcv.URL + "/ok"},
		{System: "retry", EventTypes: []string{"quote.changed"}, Url: rcv.URL + "/retry", RetrySchedule: retries(200)},
		{System: "dead", EventTypes: []string{"delivery.changed"}, Url: rcv.URL + "/dead", RetrySchedule: retries(100)},
		{System: "gone", EventTypes: []string{"stock.changed"}, Url: rcv.URL + "/gone", RetrySchedule: retries(100)},
		{System: "waiting", EventTypes: []string{"product.changed"}, Url: rcv.URL + "/waiting", RetrySchedule: retries(3_600_000)},
	} {
		payloadSub(t, adm, s)
	}
	if _, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "hub", EventTypes: []string{"address.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE,
		QueueId: q.QueueID, Active: true,
	}}); err != nil {
		t.Fatal(err)
	}
	// Events matched before the dispatcher knows every subscription would
	// miss some.
	const nSubs = 8
	natstest.WaitFor(t, 10*time.Second, fmt.Sprintf("the dispatcher to know the %d subscriptions", nSubs), func() bool {
		v, ok := scrapeMetrics(t, k.HTTP).value("kurier_dispatch_subscriptions", nil)
		return ok && v == nSubs
	})

	// A peek waits on the empty queue for as long as the test runs:
	// kurier_queue_waiting.
	peekCtx, stopPeeks := context.WithCancel(ctx)
	peeksDone := make(chan struct{})
	go func() {
		defer close(peeksDone)
		for peekCtx.Err() == nil {
			req, _ := http.NewRequestWithContext(peekCtx, http.MethodGet, k.HTTP+"/api/queues/"+idle.QueueID+"/messages?timeout=10", nil)
			req.Header.Set("X-PARTNER-KEY", partner)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				select {
				case <-peekCtx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	defer func() { stopPeeks(); <-peeksDone }()

	skipPing(t, k, ingestKey, held, skipped)

	// Ingest: every HTTP mode, a duplicate, a refused request, and NATS.
	change(t, k, ingestKey, "invoice.changed", "INV-1", map[string]any{"total": 119})
	batch := []any{
		ev("m-ok", "project.created", "P-1", map[string]any{"name": "Dach"}),
		ev("m-retry", "quote.changed", "Q-1", nil),
		ev("m-dead", "delivery.changed", "D-1", nil),
		ev("m-gone", "stock.changed", "S-1", nil),
		ev("m-ok", "project.created", "P-1", nil),
	}
	if a := post(t, k, ingestKey, "application/cloudevents-batch+json", mustJSON(t, batch), nil); a.Status != http.StatusAccepted ||
		len(a.Accepted) != 4 || !slices.Equal(a.Duplicates, []string{"m-ok"}) {
		t.Fatalf("batch: %+v", a)
	}
	if a := post(t, k, ingestKey, "application/json", []byte(`{"price":9.99}`), map[string]string{
		"ce-specversion": "1.0", "ce-id": "m-waiting", "ce-source": "/shop", "ce-type": "product.changed", "ce-subject": "SKU-1",
	}); a.Status != http.StatusAccepted {
		t.Fatalf("binary: %+v", a)
	}
	if a := post(t, k, "kur_not_a_key", "application/cloudevents+json", mustJSON(t, ev("m-x", "invoice.changed", "INV-1", nil)), nil); a.Status != http.StatusUnauthorized {
		t.Fatalf("unknown key: %+v", a)
	}
	if a := natsIngest(t, k.Conn(t), "acme", ingestKey, "m-nats"); a.Status != http.StatusAccepted {
		t.Fatalf("NATS: %d %s", a.Status, a.Body)
	}

	// Address-book sync: the person's event goes to the queue subscription.
	wantFE2(t, pushSync(t, k, tn.keys["addressbook"], contract.FE2Person("4711", "max")), "200 created 1, updated 0, deleted 0, marked 0, unchanged 0")

	// Queue API: a sender's post, a peek, a delete.
	if a := q.Send(t, `{"article":"4711"}`); a.Status != http.StatusOK {
		t.Fatalf("queue post: %d %s", a.Status, a.Body)
	}
	var sent string
	natstest.WaitForErr(t, 10*time.Second, "the posted message in the queue", func() error {
		_, msgs := q.Peek(t, "?count=100&timeout=1")
		for _, m := range msgs {
			if string(m.Content) == `{"article":"4711"}` {
				sent = m.MessageID
				return nil
			}
		}
		return fmt.Errorf("the queue holds %v", contract.QueueContents(msgs))
	})
	if s := q.DeleteMessage(t, sent).Status; s != http.StatusOK {
		t.Fatalf("queue delete: %d", s)
	}

	// The change feed, once the ping has come.
	pinged := func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return slices.ContainsFunc(rcv.hits, func(h hit) bool { return h.Path == "/ping" })
	}
	natstest.WaitFor(t, 10*time.Second, "a ping", pinged)
	if c := feed(t, k, tn.keys["changes"], "system=shop&type=5"); c.Status != http.StatusOK || len(c.Changes) != 2 {
		t.Fatalf("change feed: %+v", c)
	}

	// Admin reads, and a call that fails.
	if _, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: "0123456789abcdef0123"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown subscription: %v", err)
	}

	// Every family moves, and the samples that show each outcome.
	wanted := []string{
		`kurier_deliveries_total{mode="ping",outcome="success"}`,
		`kurier_deliveries_total{mode="payload",outcome="success"}`,
		`kurier_deliveries_total{mode="payload",outcome="retry"}`,
		`kurier_deliveries_total{mode="payload",outcome="dead"}`,
		`kurier_deliveries_total{mode="payload",outcome="disabled"}`,
		`kurier_deliveries_total{mode="queue",outcome="success"}`,
		`kurier_ingest_requests_total{status="202",transport="http"}`,
		`kurier_ingest_requests_total{status="202",transport="nats"}`,
		`kurier_ingest_requests_total{status="401",transport="http"}`,
		`kurier_pings_skipped_total{reason="inactive"}`,
	}
	moved := map[string]bool{} // by family: whether any scrape saw it move
	seen := map[string]bool{}  // samples above zero
	start := time.Now()
	natstest.WaitForErr(t, 20*time.Second, "every family and sample to move", func() error {
		for name, f := range scrapeMetrics(t, k.HTTP) {
			if !strings.HasPrefix(name, "kurier_") {
				continue
			}
			moved[name] = moved[name] || f.moved()
			for _, s := range f.samples {
				if s.name == name && s.value > 0 {
					seen[s.String()] = true
				}
			}
		}
		var missing []string
		for _, name := range kurierFamilies {
			if _, ok := moved[name]; !ok {
				missing = append(missing, name+" (not in /metrics)")
			}
		}
		for name, ok := range moved {
			if !ok {
				missing = append(missing, name)
			}
		}
		for _, w := range wanted {
			if !seen[w] {
				missing = append(missing, w)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return fmt.Errorf("never moved:\n\t%s", strings.Join(missing, "\n\t"))
		}
		return nil
	})
	t.Logf("all %d kurier_ metric families moved (the last %v after the flow)", len(moved), time.Since(start).Round(time.Millisecond))

	// With every family in the scrape, and vectors with their labels.
	t.Run("promtool", func(t *testing.T) { checkPromtool(t, scrapeBody(t, k.HTTP)) })
	t.Run("dashboard", func(t *testing.T) { checkDashboard(t, scrapeMetrics(t, k.HTTP)) })
}

// skipPing makes a due ping of a switched-off ping subscription, which
// kurier_pings_skipped_total counts. Switching a subscription off through
// the admin API drops its pending ping with it, so that only happens when
// the switch races a change. Here it is made certain: a first ping is held
// by its receiver, a second change starts the next timer, and the
// subscription is switched off in its bucket as the racing admin's write
// would be, leaving that timer. The timer's ping waits for the held one
// (up to KURIER_PING_TIMEOUT and 5 s more) and then finds the subscription
// off.
func skipPing(t *testing.T, k *harness.Kurier, ingestKey string, held *receiver, id string) {
	t.Helper()
	ctx := context.Background()
	js := jsOf(t, k)
	notify, err := js.Stream(ctx, bus.StreamNotify)
	if err != nil {
		t.Fatal(err)
	}
	// The last timer message of the subscription: scheduled or due.
	lastTimer := func() uint64 {
		m, err := notify.GetLastMsgForSubject(ctx, bus.NotifyAll(id))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0
		}
		if err != nil {
			t.Fatalf("read the ping timer: %v", err)
		}
		return m.Sequence
	}
	change(t, k, ingestKey, "salesorder.changed", "SO-1", nil)
	held.next(t, 10*time.Second)
	first := lastTimer()
	change(t, k, ingestKey, "salesorder.changed", "SO-2", nil)
	natstest.WaitFor(t, 10*time.Second, "a second ping timer", func() bool { return lastTimer() > first })
	kv, err := js.KeyValue(ctx, bus.BucketSubs)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, bus.SubKey(id))
	if err != nil {
		t.Fatal(err)
	}
	var sub map[string]json.RawMessage
	if err := json.Unmarshal(e.Value(), &sub); err != nil || string(sub["active"]) != "true" {
		t.Fatalf("stored subscription %s: %v", e.Value(), err)
	}
	sub["active"] = json.RawMessage("false")
	if _, err := kv.Update(ctx, e.Key(), mustJSON(t, sub), e.Revision()); err != nil {
		t.Fatal(err)
	}
}

// metricFamily is one family of a scrape of /metrics.
type metricFamily struct {
	name, typ string
	samples   []metricSample
}

type metricSample struct {
	name   string // the family's, or with _bucket, _sum or _count
	labels map[string]string
	value  float64
}

// String is the sample as /metrics writes it, labels sorted, without its
// value.
func (s metricSample) String() string {
	var l []string
	for k, v := range s.labels {
		l = append(l, k+"="+strconv.Quote(v))
	}
	if len(l) == 0 {
		return s.name
	}
	slices.Sort(l)
	return s.name + "{" + strings.Join(l, ",") + "}"
}

// moved tells whether a counter or gauge has a sample above zero, or a
// histogram or summary an observation.
func (f *metricFamily) moved() bool {
	for _, s := range f.samples {
		switch f.typ {
		case "histogram", "summary":
			if s.name == f.name+"_count" && s.value > 0 {
				return true
			}
		default:
			if s.value > 0 {
				return true
			}
		}
	}
	return false
}

type metricFamilies map[string]*metricFamily

// value answers the sample of a family with exactly the labels given.
func (m metricFamilies) value(name string, labels map[string]string) (float64, bool) {
	f := m[name]
	if f == nil {
		return 0, false
	}
	for _, s := range f.samples {
		if s.name == name && len(s.labels) == len(labels) {
			match := true
			for k, v := range labels {
				match = match && s.labels[k] == v
			}
			if match {
				return s.value, true
			}
		}
	}
	return 0, false
}

// scrapeBody reads /metrics as served, in Prometheus' text format.
func scrapeBody(t *testing.T, base string) []byte {
	t.Helper()
	a := contract.Do(t, contract.Request{Method: http.MethodGet, URL: base + "/metrics"})
	if a.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", a.Status, a.Body)
	}
	return a.Body
}

// scrapeMetrics reads /metrics.
func scrapeMetrics(t *testing.T, base string) metricFamilies {
	t.Helper()
	out := metricFamilies{}
	var cur *metricFamily
	for line := range strings.Lines(string(scrapeBody(t, base))) {
		line = strings.TrimSuffix(line, "\n")
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			if len(f) != 2 {
				t.Fatalf("metrics: %q", line)
			}
			cur = &metricFamily{name: f[0], typ: f[1]}
			out[cur.name] = cur
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			t.Fatalf("metrics: %v: %q", err, line)
		}
		if cur == nil || !strings.HasPrefix(s.name, cur.name) {
			cur = &metricFamily{name: s.name, typ: "untyped"}
			out[cur.name] = cur
		}
		cur.samples = append(cur.samples, s)
	}
	return out
}

// parseSample parses `name{label="value",…} value [timestamp]`.
func parseSample(line string) (metricSample, error) {
	s := metricSample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, errors.New("no value")
	}
	s.name, line = line[:i], line[i:]
	if rest, ok := strings.CutPrefix(line, "{"); ok {
		line = rest
		for {
			line = strings.TrimLeft(line, " ,")
			if rest, ok := strings.CutPrefix(line, "}"); ok {
				line = rest
				break
			}
			name, rest, ok := strings.Cut(line, `="`)
			if !ok || name == "" {
				return s, errors.New("bad label")
			}
			end := 0
			for ; end < len(rest) && rest[end] != '"'; end++ {
				if rest[end] == '\\' {
					end++
				}
			}
			if end >= len(rest) {
				return s, errors.New("unterminated label value")
			}
			v, err := strconv.Unquote(`"` + rest[:end] + `"`)
			if err != nil {
				return s, fmt.Errorf("label %s: %w", name, err)
			}
			s.labels[name], line = v, rest[end+1:]
		}
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return s, errors.New("no value")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	s.value = v
	return s, err
}
