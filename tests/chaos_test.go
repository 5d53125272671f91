package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// The chaos suite runs Kurier as a cluster deployment does, each service
// its own process, on a three-node JetStream cluster in the test's process
// with every stream and bucket replicated three times, and kills processes
// (SIGKILL) and NATS nodes while events flow. Nothing accepted may be lost.
//
// KURIER_CHAOS=long selects the long form of the flow (`make chaos`); the
// short form runs with every `go test`.

// chaosForm sizes the flow and what is done to it.
type chaosForm struct {
	name       string
	events     int           // sent in all
	rate       int           // events per second
	batch      int           // events per request
	killEvery  time.Duration // from one kill to the next
	natsKills  int           // of a stream leader, EVENTS' and DELIVERIES' in turn
	maxUnacked int           // KURIER_NOTIFY_MAX_UNACKED
}

func chaosFormOf(t *testing.T) chaosForm {
	switch f := os.Getenv("KURIER_CHAOS"); f {
	case "long":
		return chaosForm{name: "long", events: 100000, rate: 500, batch: 25, killEvery: 5 * time.Second, natsKills: 4, maxUnacked: 100}
	case "", "short":
		return chaosForm{name: "short", events: 2000, rate: 150, batch: 10, killEvery: 1500 * time.Millisecond, natsKills: 2, maxUnacked: 5}
	default:
		t.Fatalf("KURIER_CHAOS=%q: want short or long", f)
		return chaosForm{}
	}
}

const (
	chaosDelay = time.Second // KURIER_NOTIFY_DELAY
	// chaosPingTimeout is short so that a ping claimed by a killed
	// dispatcher is taken over soon.
	chaosPingTimeout = 2 * time.Second
	// chaosDown is how long a killed process or NATS node stays down.
	chaosDown = time.Second
)

// chaosTypes are the event types of the flow; each goes to subscriptions
// of other modes (see TestChaosFlow).
var chaosTypes = []string{"invoice.changed", "order.changed", "stock.changed"}

// deployment is Kurier's services as separate processes on a natstest
// cluster. Processes are named by role and number (ingest-1); the test
// goroutine starts, kills and restarts them, and any goroutine may look
// one up.
type deployment struct {
	nats *natstest.Cluster
	urls string // every node's, also while one is down
	env  []string
	mu   sync.Mutex
	proc map[string]*harness.Kurier
}

func startDeployment(t *testing.T, env []string, names ...string) *deployment {
	t.Helper()
	d := &deployment{nats: natstest.StartCluster(t, 3), proc: map[string]*harness.Kurier{},
		env: append([]string{"KURIER_REPLICAS=3", "KURIER_LOG_LEVEL=info"}, env...)}
	d.urls = d.nats.URLs()
	for _, n := range names {
		d.start(t, n)
	}
	return d
}

func (d *deployment) start(t *testing.T, name string) {
	t.Helper()
	role, _, _ := strings.Cut(name, "-")
	k := harness.Start(t, harness.Options{Role: role, NATSURL: d.urls, Env: d.env})
	d.mu.Lock()
	d.proc[name] = k
	d.mu.Unlock()
}

func (d *deployment) get(name string) *harness.Kurier {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proc[name]
}

// kill ends a process at once, as a crash or an OOM kill does.
func (d *deployment) kill(t *testing.T, name string) {
	t.Helper()
	d.get(name).Stop(t, syscall.SIGKILL)
}

func (d *deployment) restart(t *testing.T, name string) {
	t.Helper()
	k := d.get(name).Restart(t)
	d.mu.Lock()
	d.proc[name] = k
	d.mu.Unlock()
}

// checkRunning fails the test for each process that has ended without
// being killed: a replica must outlive anything NATS does.
func (d *deployment) checkRunning(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, k := range d.proc {
		if ended, err := k.Exited(); ended {
			t.Errorf("%s ended by itself: %v", name, err)
		}
	}
}

// waitKnown waits until every dispatcher knows n subscriptions, as its
// metrics say: events matched before then would find fewer.
func (d *deployment) waitKnown(t *testing.T, n int, dispatchers ...string) {
	t.Helper()
	want := fmt.Sprintf("\nkurier_dispatch_subscriptions %d\n", n)
	for _, name := range dispatchers {
		natstest.WaitFor(t, 30*time.Second, fmt.Sprintf("%s to know the %d subscriptions", name, n), func() bool {
			resp, err := http.Get(d.get(name).HTTP + "/metrics")
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return bytes.Contains(b, []byte(want))
		})
	}
}

// chaosEvent is event n of the flow: its org, type, and its own document,
// so that the change feed, which answers the latest change per document,
// answers every event.
func chaosEvent(form chaosForm, orgs []string, n int) (org string, e map[string]any) {
	org = orgs[n/form.batch%len(orgs)]
	id := fmt.Sprintf("chaos-%06d", n)
	return org, ev(id, chaosTypes[n%len(chaosTypes)], id, map[string]any{"n": n})
}

// flow sends the events at the form's rate from a few senders, each batch
// to the next ingest replica, again and again until it is answered 2xx:
// while a replica or the stream leader is down, requests fail or get 503,
// and the same ids make a resend safe.
type flow struct {
	form    chaosForm
	orgs    []string
	keys    map[string]string // ingest key per org
	ingest  func(i int) string
	client  *http.Client
	next    atomic.Int64 // the next batch to send
	mu      sync.Mutex
	ok      map[string][]string // accepted ids per org and type: org+" "+type
	n       int                 // accepted
	resends int
	errs    []error
}

func (f *flow) run(senders int) {
	var wg sync.WaitGroup
	batches := (f.form.events + f.form.batch - 1) / f.form.batch
	every := time.Duration(senders) * time.Second * time.Duration(f.form.batch) / time.Duration(f.form.rate)
	for s := range senders {
		wg.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for try := s; ; <-tick.C {
				b := int(f.next.Add(1)) - 1
				if b >= batches {
					return
				}
				try = f.send(b, try)
			}
		})
	}
	wg.Wait()
}

// send sends batch b until it is accepted, starting with ingest replica
// try, and answers the replica to start the next one with.
func (f *flow) send(b, try int) int {
	var org string
	var events []map[string]any
	for n := b * f.form.batch; n < min((b+1)*f.form.batch, f.form.events); n++ {
		var e map[string]any
		org, e = chaosEvent(f.form, f.orgs, n)
		events = append(events, e)
	}
	body, _ := json.Marshal(events)
	var err error
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); try++ {
		if err = f.post(f.ingest(try), org, body, len(events)); err == nil {
			f.mu.Lock()
			for _, e := range events {
				k := org + " " + e["type"].(string)
				f.ok[k] = append(f.ok[k], e["id"].(string))
			}
			f.n += len(events)
			f.mu.Unlock()
			return try + 1
		}
		f.mu.Lock()
		f.resends++
		f.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	f.mu.Lock()
	f.errs = append(f.errs, fmt.Errorf("batch %d not accepted within 2 minutes: %w", b, err))
	f.mu.Unlock()
	return try
}

func (f *flow) post(base, org string, body []byte, n int) error {
	req, err := http.NewRequest(http.MethodPost, base+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	req.Header.Set("Authorization", "Bearer "+f.keys[org])
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil || len(a.Accepted)+len(a.Duplicates) != n {
		return fmt.Errorf("answer %d %s does not name the %d events", resp.StatusCode, b, n)
	}
	return nil
}

// accepted answers the ids accepted for an org and type.
func (f *flow) accepted(org, typ string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ok[org+" "+typ])
}

// chaosReceiver is every webhook endpoint of the flow: payload
// subscriptions at /<org>/<system>, ping subscriptions at /<org>/ping/<system>.
// It keeps what is needed to count rather than whole requests. The first
// attempt of every 50th delivery is answered 503, so retries happen
// among the kills too.
type chaosReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	payloads map[string]*payloadTally // by path
	pings    map[string][]pingHit     // by path
	arrivals []time.Time              // of payload requests
	failed   map[string]bool          // webhook-ids answered 503
	onPing   map[string]func()        // called after a ping's answer
}

type payloadTally struct {
	got   map[string]int // 2xx answers per webhook-id
	ids   map[string]bool
	order []string // event id of each 2xx answer, in arrival order
}

type pingHit struct {
	id                 string // webhook-id
	arrived, answering time.Time
}

func newChaosReceiver(t *testing.T) *chaosReceiver {
	r := &chaosReceiver{payloads: map[string]*payloadTally{}, pings: map[string][]pingHit{}, failed: map[string]bool{}, onPing: map[string]func(){}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *chaosReceiver) serve(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, _ := io.ReadAll(req.Body)
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	if strings.Contains(req.URL.Path, "/ping/") {
		r.pings[req.URL.Path] = append(r.pings[req.URL.Path], pingHit{id: id, arrived: at, answering: time.Now()})
		then := r.onPing[req.URL.Path]
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		if then != nil {
			then()
		}
		return
	}
	r.arrivals = append(r.arrivals, at)
	var e struct{ ID string }
	_ = json.Unmarshal(body, &e)
	n, _ := strconv.Atoi(strings.TrimPrefix(e.ID, "chaos-"))
	if n%50 == 0 && !r.failed[id] {
		r.failed[id] = true
		r.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	p := r.payloads[req.URL.Path]
	if p == nil {
		p = &payloadTally{got: map[string]int{}, ids: map[string]bool{}}
		r.payloads[req.URL.Path] = p
	}
	p.got[id]++
	p.ids[e.ID] = true
	p.order = append(p.order, e.ID)
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// missing answers the ids of want that path has not been sent.
func (r *chaosReceiver) missing(path string, want []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, id := range want {
		if p := r.payloads[path]; p == nil || !p.ids[id] {
			out = append(out, id)
		}
	}
	return out
}

// duplicates counts the deliveries to path beyond the first per webhook-id.
func (r *chaosReceiver) duplicates(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	if p := r.payloads[path]; p != nil {
		for _, c := range p.got {
			n += c - 1
		}
	}
	return n
}

// longestPause is the longest time without a payload request from the
// first one until until.
func (r *chaosReceiver) longestPause(until time.Time) time.Duration {
	r.mu.Lock()
	at := slices.Clone(r.arrivals)
	r.mu.Unlock()
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	var longest time.Duration
	for i := 1; i < len(at) && !at[i].After(until); i++ {
		longest = max(longest, at[i].Sub(at[i-1]))
	}
	return longest
}

// distinctPings counts the pings path got, a repeat of one once.
func (r *chaosReceiver) distinctPings(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	distinct := map[string]bool{}
	for _, h := range r.pings[path] {
		distinct[h.id] = true
	}
	return len(distinct)
}

// pingRules checks the ping rules on what path was sent: never two pings
// closer than the delay (from one's answer to the next one's arrival, so
// from the dispatcher's end of one to its start of the next at least),
// and at most cap pings (by webhook-id) when nothing acknowledges them.
// It answers the pings made and the closest gap.
func (r *chaosReceiver) pingRules(t *testing.T, path string, cap int) (int, time.Duration) {
	t.Helper()
	r.mu.Lock()
	hits := slices.Clone(r.pings[path])
	r.mu.Unlock()
	closest := time.Duration(1<<63 - 1)
	for i, h := range hits {
		if i == 0 {
			continue
		}
		gap := h.arrived.Sub(hits[i-1].answering)
		closest = min(closest, gap)
		if gap < chaosDelay {
			t.Errorf("%s: pings %s and %s %v apart, less than the delay %v", path, hits[i-1].id, h.id, gap, chaosDelay)
		}
	}
	n := r.distinctPings(path)
	if cap > 0 && n > cap {
		t.Errorf("%s: %d pings, none acknowledged, beyond the cap of %d", path, n, cap)
	}
	return n, closest
}

// feedReader is a receiver's system that reads the change feed each time
// it is pinged, with cursors, so that an answer lost to a killed ingest
// replica is read again.
type feedReader struct {
	system, typ, key string
	ingest           func(i int) string
	wake             chan struct{}
	mu               sync.Mutex
	cursor           string
	seen             map[string]bool
}

func newFeedReader(system, typ, key string, ingest func(int) string) *feedReader {
	return &feedReader{system: system, typ: typ, key: key, ingest: ingest, wake: make(chan struct{}, 1), seen: map[string]bool{}}
}

// pinged wakes the reader; pings while it reads make one more read.
func (f *feedReader) pinged() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *feedReader) run(ctx context.Context) {
	for try := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		}
		for more := true; more && ctx.Err() == nil; try++ {
			var err error
			if more, err = f.read(ctx, f.ingest(try)); err != nil {
				more = true
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

func (f *feedReader) read(ctx context.Context, base string) (bool, error) {
	f.mu.Lock()
	q := fmt.Sprintf("%s/v1/changes?system=%s&type=%s&cursor=%s", base, f.system, f.typ, f.cursor)
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, q, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+f.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var c changes
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("feed answer %d: %v", resp.StatusCode, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range c.Changes {
		f.seen[ch.ID] = true
	}
	f.cursor = c.Cursor
	return c.More, nil
}

func (f *feedReader) missing(want []string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, id := range want {
		if !f.seen[id] {
			out = append(out, id)
		}
	}
	return out
}

// drainQueue reads a queue as its receiver does, peeking and deleting,
// until every id of want has come and the queue is empty, or d has
// passed, and counts the messages per event id.
func drainQueue(t *testing.T, q *contract.Queue, want []string, d time.Duration) map[string]int {
	t.Helper()
	got := map[string]int{}
	for deadline := time.Now().Add(d); ; {
		_, msgs := q.Peek(t, "?count=100&timeout=1")
		if len(msgs) == 0 && (time.Now().After(deadline) || !slices.ContainsFunc(want, func(id string) bool { return got[id] == 0 })) {
			return got
		}
		for _, m := range msgs {
			var e struct{ ID string }
			if err := json.Unmarshal(m.Content, &e); err != nil || e.ID == "" {
				t.Fatalf("queue message %s: %s", m.MessageID, m.Content)
			}
			got[e.ID]++
			if s := q.DeleteMessage(t, m.MessageID).Status; s != http.StatusOK {
				t.Fatalf("delete message %s: %d", m.MessageID, s)
			}
		}
	}
}

// TestChaosFlow sends a steady flow of events to three orgs while ingest
// and dispatcher replicas are killed and restarted in turn, and the nodes
// leading EVENTS and DELIVERIES are killed and restarted. Each org has a
// payload subscription to every type, a queue subscription to
// order.changed, and a ping subscription to invoice.changed whose system
// reads the change feed when pinged; the first org has an ORDERED payload
// subscription to invoice.changed too, and a ping subscription to
// stock.changed whose system never reads the feed. Afterwards every
// accepted event has reached every matching subscription, the ping rules
// held, and the ordered subscription got its events in order.
func TestChaosFlow(t *testing.T) {
	t.Parallel()
	form := chaosFormOf(t)
	began := time.Now()
	ctx := context.Background()
	d := startDeployment(t, []string{
		"KURIER_NOTIFY_DELAY=" + chaosDelay.String(),
		"KURIER_PING_TIMEOUT=" + chaosPingTimeout.String(),
		"KURIER_NOTIFY_MAX_UNACKED=" + strconv.Itoa(form.maxUnacked),
	}, "admin", "queue", "ingest-1", "ingest-2", "dispatcher-1", "dispatcher-2")
	ingests := []string{"ingest-1", "ingest-2"}
	ingest := func(i int) string { return d.get(ingests[i%len(ingests)]).HTTP }

	adm := d.get("admin").Admin(t)
	rcv := newChaosReceiver(t)
	orgs := []string{"north", "south", "west"}
	keys := map[string]string{}
	queues := map[string]*contract.Queue{}
	var feeds []*feedReader
	readers, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	nSubs := 0
	var cappedID string
	subscribe := func(s *adminv1.Subscription) {
		t.Helper()
		s.Active = true
		if _, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: s}); err != nil {
			t.Fatalf("subscription %s of %s: %v", s.System, s.OrgId, err)
		}
		nSubs++
	}
	retries := []*durationpb.Duration{ms(0), ms(1000), ms(2000), ms(5000), ms(10000), ms(30000), ms(60000), ms(60000), ms(60000)}
	for i, org := range orgs {
		_, key := setup(t, d.get("admin"), org, adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_PARTNER, adminv1.KeyScope_KEY_SCOPE_CHANGES)
		keys[org] = key
		queues[org] = contract.CreateQueue(t, d.get("queue").HTTP, key)
		subscribe(&adminv1.Subscription{OrgId: org, System: "hook", EventTypes: chaosTypes, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD,
			Url: rcv.URL + "/" + org + "/hook", Timeout: durationpb.New(5 * time.Second), RetrySchedule: retries})
		subscribe(&adminv1.Subscription{OrgId: org, System: "hub", EventTypes: chaosTypes[1:2], Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE,
			QueueId: queues[org].QueueID})
		pingSub(t, adm, org, "shop", rcv.URL+"/"+org+"/ping/shop", chaosTypes[0])
		nSubs++
		f := newFeedReader("shop", chaosTypes[0], key, ingest)
		rcv.mu.Lock()
		rcv.onPing["/"+org+"/ping/shop"] = f.pinged
		rcv.mu.Unlock()
		go f.run(readers)
		feeds = append(feeds, f)
		if i == 0 {
			subscribe(&adminv1.Subscription{OrgId: org, System: "ordered", EventTypes: chaosTypes[:1], Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD,
				Url: rcv.URL + "/" + org + "/ordered", Ordering: adminv1.Ordering_ORDERING_ORDERED, Timeout: durationpb.New(5 * time.Second), RetrySchedule: retries})
			cappedID = pingSub(t, adm, org, "capped", rcv.URL+"/"+org+"/ping/capped", chaosTypes[2]).GetSubscription().GetSubscriptionId()
			nSubs++
		}
	}
	d.waitKnown(t, nSubs, "dispatcher-1", "dispatcher-2")
	setupTook := time.Since(began)

	fl := &flow{form: form, orgs: orgs, keys: keys, ingest: ingest, ok: map[string][]string{},
		client: &http.Client{Timeout: 20 * time.Second}}
	flowing := make(chan struct{})
	flowBegan := time.Now()
	go func() { fl.run(4); close(flowing) }()

	// Kills at a steady beat through the first four fifths of the flow: a
	// process, dispatcher and ingest in turn, and at even spacing among
	// the beats the node leading EVENTS or DELIVERIES as well, so that the
	// process comes back while NATS elects new leaders.
	expected := time.Duration(form.events) * time.Second / time.Duration(form.rate)
	beats := int(expected * 4 / 5 / form.killEvery)
	natsAt := map[int]string{}
	for i := range form.natsKills {
		natsAt[(i+1)*beats/(form.natsKills+1)] = []string{bus.StreamEvents, bus.StreamDeliveries}[i%2]
	}
	victims := []string{"dispatcher-1", "ingest-1", "dispatcher-2", "ingest-2"}
	var kills, natsKills []string
	for beat := 1; beat <= beats; beat++ {
		select {
		case <-flowing:
		case <-time.After(time.Until(flowBegan.Add(time.Duration(beat) * form.killEvery))):
		}
		v := victims[len(kills)%len(victims)]
		stream, leader := natsAt[beat]
		node := 0
		if leader {
			node = d.nats.WaitStreamLeader(t, stream)
			d.nats.Kill(node)
		}
		d.kill(t, v)
		time.Sleep(chaosDown)
		d.restart(t, v)
		kills = append(kills, v)
		if leader {
			d.nats.Restart(t, node)
			natsKills = append(natsKills, fmt.Sprintf("n%d leading %s", node+1, stream))
		}
	}
	<-flowing
	flowTook := time.Since(flowBegan)
	for _, err := range fl.errs {
		t.Error(err)
	}

	// Everything accepted arrives, however long the kills held it up.
	type want struct {
		what    string
		ids     []string
		missing func([]string) []string
	}
	var wants []want
	for i, org := range orgs {
		hook := "/" + org + "/hook"
		var all []string
		for _, typ := range chaosTypes {
			all = append(all, fl.accepted(org, typ)...)
		}
		wants = append(wants, want{org + " payload", all, func(ids []string) []string { return rcv.missing(hook, ids) }})
		wants = append(wants, want{org + " change feed", fl.accepted(org, chaosTypes[0]), feeds[i].missing})
		if i == 0 {
			wants = append(wants, want{org + " ordered payload", fl.accepted(org, chaosTypes[0]), func(ids []string) []string { return rcv.missing("/"+org+"/ordered", ids) }})
		}
	}
	lost := 0
	for _, w := range wants {
		left := w.missing(w.ids)
		for deadline := time.Now().Add(2 * time.Minute); len(left) > 0 && time.Now().Before(deadline); left = w.missing(w.ids) {
			time.Sleep(200 * time.Millisecond)
		}
		if len(left) > 0 {
			lost += len(left)
			t.Errorf("%s: %d of %d accepted events never arrived, e.g. %v", w.what, len(left), len(w.ids), left[:min(len(left), 10)])
		}
	}
	done := time.Now()
	queueDups := 0
	for _, org := range orgs {
		want := fl.accepted(org, chaosTypes[1])
		got := drainQueue(t, queues[org], want, 2*time.Minute)
		var left []string
		for _, id := range want {
			if got[id] == 0 {
				left = append(left, id)
			}
			queueDups += max(got[id]-1, 0)
			delete(got, id)
		}
		if len(left) > 0 {
			lost += len(left)
			t.Errorf("%s queue: %d of %d accepted events missing, e.g. %v", org, len(left), len(want), left[:min(len(left), 10)])
		}
		if len(got) > 0 {
			t.Errorf("%s queue: holds %d events that were not sent to it, e.g. %v", org, len(got), slices.Collect(maps.Keys(got))[:1])
		}
	}

	// The ping rules held; the capped subscription got exactly its cap,
	// provided the flow lasted long enough to reach it.
	pings, closest := 0, time.Duration(1<<63-1)
	for _, org := range orgs {
		n, c := rcv.pingRules(t, "/"+org+"/ping/shop", 0)
		pings, closest = pings+n, min(closest, c)
	}
	capped := "/" + orgs[0] + "/ping/capped"
	// A ping claimed by a dispatcher killed before it was sent is made by
	// another replica once its due message comes again, after the pings
	// consumer's ack wait (ping timeout + 20 s) and the claim's grace
	// (5 s): until then the counter is one ahead of the pings received.
	for deadline := time.Now().Add(chaosPingTimeout + 30*time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		sub, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: cappedID})
		if err == nil && int(sub.GetUnacked()) == rcv.distinctPings(capped) {
			break
		}
	}
	n, c := rcv.pingRules(t, capped, form.maxUnacked)
	pings, closest = pings+n, min(closest, c)
	if reach := time.Duration(form.maxUnacked+2) * (chaosDelay + chaosDelay/2); flowTook > reach && n != form.maxUnacked {
		t.Errorf("%s: %d pings in %v of changes, want the cap %d", capped, n, flowTook.Round(time.Second), form.maxUnacked)
	}
	if sub, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: cappedID}); err != nil || int(sub.GetUnacked()) != n {
		t.Errorf("%s: unacked counter %d after %d pings: %v", capped, sub.GetUnacked(), n, err)
	}

	// The ordered subscription got its events in stream order, a repeat
	// at most coming again right after itself.
	js, err := jetstream.New(d.get("admin").Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[string]uint64{}
	for _, m := range harness.Messages(t, js, bus.StreamEvents, bus.EventsSubject(orgs[0], chaosTypes[0])) {
		var e struct{ ID string }
		md, err := m.Metadata()
		if err != nil || json.Unmarshal(m.Data(), &e) != nil {
			t.Fatalf("stored event %s: %v", m.Data(), err)
		}
		seqs[e.ID] = md.Sequence.Stream
	}
	var order []uint64
	rcv.mu.Lock()
	if p := rcv.payloads["/"+orgs[0]+"/ordered"]; p != nil {
		for _, id := range p.order {
			seq, ok := seqs[id]
			if !ok {
				t.Errorf("ordered subscription: got %q, which is none of its events", id)
			}
			order = append(order, seq)
		}
	}
	rcv.mu.Unlock()
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			t.Errorf("ordered subscription: event %d after %d", order[i], order[i-1])
			break
		}
	}

	payloadDups := 0
	for _, org := range orgs {
		payloadDups += rcv.duplicates("/" + org + "/hook")
	}
	payloadDups += rcv.duplicates("/" + orgs[0] + "/ordered")
	d.checkRunning(t)
	killed := map[string]int{}
	for _, v := range kills {
		role, _, _ := strings.Cut(v, "-")
		killed[role]++
	}
	fmt.Printf("chaos %s: %d events sent, %d accepted (%d resent requests); %d kills (%d dispatcher, %d ingest); %d NATS leader kills (%s); lost %d; duplicates: payload %d, queue %d; %d pings, closest %v apart; longest pause in payload deliveries %v; flow %v, took %v (setup %v)\n",
		form.name, form.events, fl.n, fl.resends, len(kills), killed["dispatcher"], killed["ingest"], len(natsKills), strings.Join(natsKills, ", "),
		lost, payloadDups, queueDups, pings, closest.Round(time.Millisecond), rcv.longestPause(done).Round(10*time.Millisecond),
		flowTook.Round(100*time.Millisecond), time.Since(began).Round(time.Second), setupTook.Round(100*time.Millisecond))
}

// snapshot is what an org has in Kurier, as its admin and its queue's
// receiver see it.
type snapshot struct {
	orgs       []*adminv1.Org
	keys       []*adminv1.Key
	subs       []*adminv1.Subscription
	queues     []*adminv1.Queue
	deliveries []*adminv1.Delivery
	persons    map[string]*adminv1.Person
	messages   []contract.QueueMessage
}

func takeSnapshot(t *testing.T, adm adminv1.AdminServiceClient, org string, q *contract.Queue) snapshot {
	t.Helper()
	ctx := context.Background()
	var s snapshot
	orgs, err := adm.ListOrgs(ctx, &adminv1.ListOrgsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := adm.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: org})
	if err != nil {
		t.Fatal(err)
	}
	subs, err := adm.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: org})
	if err != nil {
		t.Fatal(err)
	}
	queues, err := adm.ListQueues(ctx, &adminv1.ListQueuesRequest{OrgId: org})
	if err != nil {
		t.Fatal(err)
	}
	s.orgs, s.keys, s.subs, s.queues = orgs.GetOrgs(), keys.GetKeys(), subs.GetSubscriptions(), queues.GetQueues()
	for _, sub := range s.subs {
		// A pending ping's timer turns into a due ping while it waits.
		sub.PendingSince = nil
	}
	for _, q := range s.queues {
		q.OldestMessageAge = nil // grows with the time taken
	}
	req := &adminv1.ListDeliveriesRequest{OrgId: org, PageSize: 100}
	for {
		page, err := adm.ListDeliveries(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		s.deliveries = append(s.deliveries, page.GetDeliveries()...)
		if req.PageToken = page.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	s.persons = persons(t, adm, org, true)
	_, s.messages = q.Peek(t, "?count=100")
	return s
}

// differences names the parts of o that are not as in s.
func (s snapshot) differences(o snapshot) []string {
	var out []string
	check := func(what string, same bool, a, b any) {
		if !same {
			out = append(out, fmt.Sprintf("%s:\n  before %v\n  after  %v", what, a, b))
		}
	}
	check("orgs", slices.EqualFunc(s.orgs, o.orgs, func(a, b *adminv1.Org) bool { return proto.Equal(a, b) }), s.orgs, o.orgs)
	check("keys", slices.EqualFunc(s.keys, o.keys, func(a, b *adminv1.Key) bool { return proto.Equal(a, b) }), s.keys, o.keys)
	check("subscriptions", slices.EqualFunc(s.subs, o.subs, func(a, b *adminv1.Subscription) bool { return proto.Equal(a, b) }), s.subs, o.subs)
	check("queues", slices.EqualFunc(s.queues, o.queues, func(a, b *adminv1.Queue) bool { return proto.Equal(a, b) }), s.queues, o.queues)
	check("delivery log", slices.EqualFunc(s.deliveries, o.deliveries, func(a, b *adminv1.Delivery) bool { return proto.Equal(a, b) }), s.deliveries, o.deliveries)
	check("persons", maps.EqualFunc(s.persons, o.persons, func(a, b *adminv1.Person) bool { return proto.Equal(a, b) }), len(s.persons), len(o.persons))
	check("queue messages", fmt.Sprint(s.messages) == fmt.Sprint(o.messages), contract.QueueContents(s.messages), contract.QueueContents(o.messages))
	return out
}

// hitPath is a request's path without its query.
func hitPath(h hit) string {
	p, _, _ := strings.Cut(h.Path, "?")
	return p
}

// TestChaosStopAndStart stops the whole deployment, every process and
// all three NATS nodes at once, as a power cut would, and starts it
// again: orgs, keys (a revoked one staying revoked), subscriptions with
// their unacked counters, queues and their messages, persons and the
// delivery log are as they were, and a ping pending at the stop is made.
func TestChaosStopAndStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	names := []string{"admin", "ingest", "queue", "addresssync", "dispatcher"}
	d := startDeployment(t, []string{"KURIER_NOTIFY_DELAY=2s", "KURIER_NOTIFY_MAX_UNACKED=1"}, names...)
	adm, key := setup(t, d.get("admin"), "acme", adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_PARTNER, adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK)
	updateOrg(t, adm, &adminv1.Org{OrgId: "acme", AddressbookSyncEnabled: true}, "addressbook_sync_enabled")
	revoked, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: revoked.GetKey().GetKeyId()}); err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t)
	q := contract.CreateQueue(t, d.get("queue").HTTP, key)
	pingSub(t, adm, "acme", "capped", rcv.URL+"/capped", "invoice.changed")
	pending := pingSub(t, adm, "acme", "pending", rcv.URL+"/pending", "order.changed").GetSubscription().GetSubscriptionId()
	for _, s := range []*adminv1.Subscription{
		{System: "hook", Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: rcv.URL + "/hook"},
		{System: "hub", Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: q.QueueID},
	} {
		s.OrgId, s.EventTypes, s.Active = "acme", []string{"invoice.changed"}, true
		if _, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: s}); err != nil {
			t.Fatal(err)
		}
	}
	d.waitKnown(t, 4, "dispatcher")

	// One ping makes the capped subscription reach its cap; payloads,
	// queue messages, log records and persons pile up.
	change(t, d.get("ingest"), key, "invoice.changed", "INV-1", nil)
	for seen := map[string]bool{}; !seen["/capped"] || !seen["/hook"]; {
		select {
		case h := <-rcv.got:
			seen[hitPath(h)] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("the first event's ping (/capped) and payload (/hook): got only %v within 10s of each other", seen)
		}
	}
	change(t, d.get("ingest"), key, "invoice.changed", "INV-2", nil)
	if h := rcv.next(t, 10*time.Second); hitPath(h) != "/hook" {
		t.Fatalf("%s %s, want the second payload", h.Method, h.Path)
	}
	if a := q.Send(t, `{"from":"a sender"}`); a.Status != http.StatusOK {
		t.Fatalf("a sender's message: %d", a.Status)
	}
	wantFE2(t, pushSync(t, d.get("addresssync"), key, bigList(50)...), "200 created 50, updated 0, deleted 0, marked 0, unchanged 0")
	var before snapshot
	natstest.WaitForErr(t, 10*time.Second, "3 log records and 3 queue messages before the stop", func() error {
		before = takeSnapshot(t, adm, "acme", q)
		if len(before.deliveries) < 3 || len(before.messages) < 3 {
			return fmt.Errorf("%d log records, %d queue messages", len(before.deliveries), len(before.messages))
		}
		return nil
	})

	// A change starts a ping timer, and everything stops before it fires.
	change(t, d.get("ingest"), key, "order.changed", "ORD-1", nil)
	natstest.WaitFor(t, time.Second, "a ping pending after the change", func() bool {
		sub, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: pending})
		if err != nil {
			t.Fatal(err)
		}
		return sub.GetPendingSince() != nil
	})
	for _, name := range slices.Backward(names) {
		d.kill(t, name)
	}
	for i := range d.nats.Servers {
		d.nats.Kill(i)
	}
	stopped := time.Now()
	d.nats.Restart(t, 0, 1, 2)
	for _, name := range names[:len(names)-1] {
		d.restart(t, name)
	}
	t.Logf("whole cluster down and up again in %v", time.Since(stopped).Round(time.Millisecond))

	adm = d.get("admin").Admin(t)
	q.Base = d.get("queue").HTTP // the restarted queue process listens elsewhere
	after := takeSnapshot(t, adm, "acme", q)
	for _, diff := range before.differences(after) {
		t.Errorf("after the restart, %s", diff)
	}

	// With a dispatcher again, the pending ping is made; the capped
	// subscription stays capped; keys, queue and book work as before.
	d.restart(t, "dispatcher")
	if h := rcv.next(t, 30*time.Second); h.Path != "/pending" {
		t.Fatalf("%s %s, want the ping pending at the stop", h.Method, h.Path)
	}
	if a := post(t, d.get("ingest"), revoked.GetSecret(), "application/cloudevents+json", mustJSON(t, ev("r-1", "invoice.changed", "INV-3", nil)), nil); a.Status != http.StatusUnauthorized {
		t.Fatalf("the revoked key after the restart: %+v", a)
	}
	change(t, d.get("ingest"), key, "invoice.changed", "INV-3", nil)
	if h := rcv.next(t, 10*time.Second); hitPath(h) != "/hook" {
		t.Fatalf("%s %s, want the payload of the change after the restart", h.Method, h.Path)
	}
	rcv.none(t, 4*time.Second) // no ping beyond the cap
	if a := q.Send(t, `{"from":"a sender, later"}`); a.Status != http.StatusOK {
		t.Fatalf("a sender's message after the restart: %d", a.Status)
	}
	wantFE2(t, pushSync(t, d.get("addresssync"), key, bigList(50)...), "200 created 0, updated 0, deleted 0, marked 0, unchanged 50")
	d.checkRunning(t)
}

// TestChaosSyncKilledMidway kills the address-book sync service's process
// in the middle of a large sync on the replicated cluster, and restarts
// it: the book is as before the sync or as after it, never in between.
func TestChaosSyncKilledMidway(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, []string{"KURIER_SYNC_LOCK_TTL=2s"}, "admin", "addresssync")
	adm, key := addressbookOrg(t, d.get("admin"), "acme")
	syncKilledMidway(t, d.get("addresssync"), key, func(*harness.Kurier) adminv1.AdminServiceClient { return adm })
}

// TestChaosDispatcherStartsLast brings a deployment up in the worst order:
// ingest takes events before any dispatcher has ever run, as a fresh
// cluster whose dispatchers start late (or crash at once) does. Once one
// runs, it delivers them.
func TestChaosDispatcherStartsLast(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, nil, "admin", "ingest")
	adm, key := setup(t, d.get("admin"), "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	if _, err := adm.CreateSubscription(context.Background(), &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "hook", EventTypes: []string{"invoice.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD,
		Url: rcv.URL + "/hook", Active: true}}); err != nil {
		t.Fatal(err)
	}
	early := change(t, d.get("ingest"), key, "invoice.changed", "INV-1", nil)
	d.start(t, "dispatcher")
	h := rcv.next(t, 30*time.Second)
	var body struct{ ID string }
	if err := json.Unmarshal(h.Body, &body); err != nil || body.ID != early {
		t.Fatalf("delivered %s %s, want event %s", h.Method, h.Body, early)
	}
}
