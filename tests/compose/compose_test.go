//go:build compose

package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

const (
	adminToken = "e2e-admin-token-0123456789abcdef"
	// receiverURL is the receiver as the dispatchers see it, by its
	// compose service name.
	receiverURL = "http://receiver:8080"
	eventType   = "invoice.changed"

	rate       = 40               // events per second in the steady flow
	senders    = 4                // upstream clients sending them at once
	beforeLoss = 5 * time.Second  // of flow before the loss
	loss       = 20 * time.Second // how long a NATS node and a dispatcher are down
	afterLoss  = 10 * time.Second // of flow once they are back
)

func TestCompose(t *testing.T) {
	began := time.Now()
	s := startStack(t)
	ctx := context.Background()
	k := &harness.Kurier{
		HTTP:  "http://" + s.port("gateway", 8080),
		GRPC:  s.port("gateway", 9090),
		NATS:  "nats://" + s.port("nats-1", 4222),
		Token: adminToken,
	}
	rcv := receiver{&contract.Receiver{URL: receiverURL, API: "http://" + s.port("receiver", 8080)}}

	adm := k.Admin(t)
	// The public API suites, as they run in-process and against the binary.
	t.Run("Contract", func(t *testing.T) {
		contract.Run(t, contract.Target{HTTP: k.HTTP, GRPC: k.GRPC, Admin: adm, Hooks: rcv.Receiver, NotifyDelay: time.Second})
	})
	if _, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.UpdateOrg(ctx, &adminv1.UpdateOrgRequest{Org: &adminv1.Org{OrgId: "acme", AddressbookSyncEnabled: true},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"addressbook_sync_enabled"}}}); err != nil {
		t.Fatal(err)
	}
	created, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{
		adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_PARTNER, adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK}})
	if err != nil {
		t.Fatal(err)
	}
	key := created.GetSecret()
	q := contract.CreateQueue(t, k.HTTP, key)
	subscribe := func(s *adminv1.Subscription, types ...string) *adminv1.CreateSubscriptionResponse {
		t.Helper()
		s.OrgId, s.EventTypes, s.Active = "acme", types, true
		resp, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: s})
		if err != nil {
			t.Fatalf("subscribe %s: %v", s.GetSystem(), err)
		}
		return resp
	}
	subscribe(&adminv1.Subscription{System: "shop", Mode: adminv1.DeliveryMode_DELIVERY_MODE_PING, Url: receiverURL + "/ping"}, eventType)
	payload := subscribe(&adminv1.Subscription{System: "crm", Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: receiverURL + "/payload",
		Timeout: durationpb.New(5 * time.Second), RetrySchedule: []*durationpb.Duration{
			durationpb.New(0), durationpb.New(time.Second), durationpb.New(2 * time.Second), durationpb.New(5 * time.Second)}}, eventType)
	subscribe(&adminv1.Subscription{System: "hub", Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: q.QueueID}, eventType, "person.created")
	pub := &publisher{url: k.HTTP + "/v1/events", key: key, client: &http.Client{Timeout: 30 * time.Second}}

	// Every mode delivers: pings, signed payloads, queue messages, the
	// person an address-book sync creates among them.
	for range 5 {
		pub.send(t)
	}
	if code, body := call(t, http.MethodPost, k.HTTP+"/rest/addressbook/sync", map[string]string{"Authorization": key},
		`{"source":"e2e","personList":[{"externalDbId":"p-1","firstName":"Erika","lastName":"Mustermann"}]}`); code != http.StatusOK {
		t.Fatalf("address-book sync: %d %s", code, body)
	}
	got := rcv.waitPayloads(t, pub.ids(), time.Minute)
	rcv.waitFor(t, "a ping", 30*time.Second, func(h contract.Hit) bool { return h.Method == http.MethodGet && h.Path == "/ping" })
	wh, err := standardwebhooks.NewWebhook(payload.GetSigningSecret())
	if err != nil {
		t.Fatal(err)
	}
	if h := got[0]; wh.Verify([]byte(h.Body), h.Header) != nil {
		t.Fatalf("payload signature does not verify: %v", h.Header)
	}
	q.WaitFor(t, time.Minute, append(pub.ids(), "p-1"), contract.EventKey)
	if code, body := call(t, http.MethodGet, k.HTTP+"/console/login", nil, ""); code != http.StatusOK || !strings.Contains(string(body), `name="token"`) {
		t.Fatalf("the console's sign-in through the gateway: %d %s", code, body)
	}
	if a := q.Send(t, `{"from":"a sender"}`); a.Status != http.StatusOK {
		t.Fatalf("a sender's message: %d %s", a.Status, a.Body)
	}

	// A steady flow; then a NATS node and a dispatcher replica die, and
	// come back. The node is the one leading EVENTS; with
	// KURIER_E2E_NODE=follower one that does not (nor nats-1, through which
	// the test reads the cluster), with KURIER_E2E_NODE=none none.
	var lose []string
	switch node := streamLeader(t, k, bus.StreamEvents); os.Getenv("KURIER_E2E_NODE") {
	case "none":
	case "follower":
		if node == "nats-3" {
			lose = append(lose, "nats-2")
		} else {
			lose = append(lose, "nats-3")
		}
	default:
		lose = append(lose, node)
	}
	var down []string
	for _, n := range lose {
		down = append(down, s.containers(n)[0])
	}
	down = append(down, s.containers("dispatcher")[0])
	flow, stopFlow := context.WithCancel(ctx)
	var flowing sync.WaitGroup
	for range senders {
		flowing.Go(func() {
			tick := time.NewTicker(senders * time.Second / rate)
			defer tick.Stop()
			for flow.Err() == nil {
				pub.send(t)
				<-tick.C
			}
		})
	}
	time.Sleep(beforeLoss)
	lost := time.Now()
	s.docker(append([]string{"kill"}, down...)...)
	t.Logf("killed %v and a dispatcher replica", lose)
	time.Sleep(loss)
	back := time.Now()
	s.docker(append([]string{"start"}, down...)...)
	time.Sleep(afterLoss)
	stopFlow()
	flowing.Wait()

	// Nothing lost, and the cluster whole again.
	sent := pub.ids()
	rcv.waitPayloads(t, sent, 2*time.Minute)
	queued := q.Drain(t, 2*time.Minute, append(sent, "p-1"), contract.EventKey)
	s.waitHealthy(2 * time.Minute)
	rcv.waitFor(t, "a ping after the loss", 30*time.Second, func(h contract.Hit) bool { return h.Path == "/ping" && h.At.After(back) })

	delivered, dups := tally(rcv.payloadCounts(t))
	_, queueDups := tally(queued)
	pause := rcv.longestPause(t, lost, back)
	// While EVENTS elects a new leader no event is accepted, so none can
	// be delivered: that part of the pause is the NATS server's.
	refused := pub.longestPause(lost, back)
	fmt.Printf("compose-e2e: %d events sent, %d delivered, %d duplicates (queue: %d duplicates); longest pause in deliveries while %v and a dispatcher were down for %v: %v (in accepting events: %v); %d publish retries; took %v\n",
		len(sent), delivered, dups, queueDups, lose, loss, pause.Round(10*time.Millisecond), refused.Round(10*time.Millisecond), pub.retries(), time.Since(began).Round(time.Second))
	if pause >= loss {
		t.Errorf("no delivery while the node was down (longest pause %v)", pause)
	}
}

// missing answers the ids of want not seen.
func missing(want []string, seen map[string]int) []string {
	var out []string
	for _, id := range want {
		if seen[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// tally answers how many ids were delivered and how many deliveries were
// repeats.
func tally(perID map[string]int) (delivered, duplicates int) {
	for _, n := range perID {
		delivered++
		duplicates += n - 1
	}
	return delivered, duplicates
}

// call makes one HTTP request and answers the status and body.
func call(t *testing.T, method, url string, header map[string]string, body string) (int, []byte) {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	maps.Copy(h, header)
	a := contract.Do(t, contract.Request{Method: method, URL: url, Header: h, Body: []byte(body)})
	return a.Status, a.Body
}

// streamLeader names the NATS server leading a stream: deploy/nats names
// each server after its compose service.
func streamLeader(t *testing.T, k *harness.Kurier, stream string) string {
	t.Helper()
	js, err := jetstream.New(k.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("%s has no leader: %v %v", stream, info, err)
	}
	return info.Cluster.Leader
}

// publisher posts events through the gateway, each until it is accepted:
// while a node is lost, ingest may answer 503 for a moment.
type publisher struct {
	url, key string
	client   *http.Client
	mu       sync.Mutex
	n        int         // events made
	sent     []string    // ids accepted
	accepted []time.Time // when each was
	retried  int
}

func (p *publisher) send(t *testing.T) {
	p.mu.Lock()
	p.n++
	n := p.n
	p.mu.Unlock()
	id := fmt.Sprintf("e2e-%05d", n)
	body, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": id, "source": "/e2e", "type": eventType,
		"subject": fmt.Sprintf("INV-%d", n%20), "data": map[string]any{"n": n}})
	deadline := time.Now().Add(time.Minute)
	for {
		req, _ := http.NewRequest(http.MethodPost, p.url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+p.key)
		req.Header.Set("Content-Type", "application/cloudevents+json")
		resp, err := p.client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				break
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Errorf("event %s not accepted within a minute: %v", id, err)
			return
		}
		p.mu.Lock()
		p.retried++
		p.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
	p.mu.Lock()
	p.sent = append(p.sent, id)
	p.accepted = append(p.accepted, time.Now())
	p.mu.Unlock()
}

// longestPause answers the longest time between from and until in which
// no event was accepted.
func (p *publisher) longestPause(from, until time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return longestGap(p.accepted, from, until)
}

func (p *publisher) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.sent)
}

func (p *publisher) retries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.retried
}

// receiver reads what the receiver container (contract.Recorder) has been
// sent.
type receiver struct{ *contract.Receiver }

func (r receiver) waitFor(t *testing.T, what string, d time.Duration, ok func(contract.Hit) bool) {
	t.Helper()
	natstest.WaitFor(t, d, what, func() bool { return slices.ContainsFunc(r.Hits(t), ok) })
}

func eventID(h contract.Hit) string {
	var b struct{ ID string }
	_ = json.Unmarshal([]byte(h.Body), &b)
	return b.ID
}

// payloadCounts counts payload deliveries by event id.
func (r receiver) payloadCounts(t *testing.T) map[string]int {
	n := map[string]int{}
	for _, h := range r.Under(t, "/payload") {
		n[eventID(h)]++
	}
	return n
}

// waitPayloads waits until every id has been delivered at least once and
// answers the deliveries.
func (r receiver) waitPayloads(t *testing.T, ids []string, d time.Duration) []contract.Hit {
	t.Helper()
	natstest.WaitForErr(t, d, fmt.Sprintf("%d events to be delivered", len(ids)), func() error {
		if left := missing(ids, r.payloadCounts(t)); len(left) > 0 {
			return fmt.Errorf("%d not delivered: %v", len(left), left[:min(len(left), 20)])
		}
		return nil
	})
	return r.Under(t, "/payload")
}

// longestPause is the longest time between two payload deliveries from
// from to until, the ends included.
func (r receiver) longestPause(t *testing.T, from, until time.Time) time.Duration {
	var at []time.Time
	for _, h := range r.Under(t, "/payload") {
		at = append(at, h.At)
	}
	return longestGap(at, from, until)
}

// longestGap answers the longest time between from and until without one
// of at.
func longestGap(at []time.Time, from, until time.Time) time.Duration {
	last, longest := from, time.Duration(0)
	for _, t := range slices.SortedFunc(slices.Values(at), time.Time.Compare) {
		if t.Before(from) || t.After(until) {
			continue
		}
		longest = max(longest, t.Sub(last))
		last = t
	}
	return max(longest, until.Sub(last))
}

// stack is the deployment of docker-compose.yml with the test's
// additions, as one compose project of its own.
type stack struct {
	t       *testing.T
	compose []string // the compose command with the project's files and name
	env     []string
	project string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("skipped: docker is not available: %v\n%s", err, out)
	}
	for _, img := range []string{"kurier:latest", "kurier-nats:latest"} {
		if out, err := exec.Command("docker", "image", "inspect", img).CombinedOutput(); err != nil {
			t.Fatalf("no image %s: run `make images` first (%v)\n%s", img, err, out)
		}
	}
	buildReceiver(t)

	envFile := filepath.Join(t.TempDir(), "env") // so that an operator's .env plays no part
	if err := os.WriteFile(envFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, project: fmt.Sprintf("kurier-e2e-%d-%d", os.Getpid(), time.Now().Unix()%100000)}
	s.compose = append(composeCommand(t), "--env-file", envFile, "-p", s.project,
		"-f", "../../docker-compose.yml", "-f", "e2e.yml")
	s.env = append(os.Environ(),
		"KURIER_ADMIN_TOKEN="+adminToken,
		"KURIER_HTTP_PUBLISH=127.0.0.1:0",
		"KURIER_GRPC_PUBLISH=127.0.0.1:0",
		"KURIER_NATS_PUBLISH=127.0.0.1:0",
		"KURIER_LOG_LEVEL=info",
	)

	// Torn down however the test ends, an interrupt included.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-sigs; ok {
			s.down()
			os.Exit(1)
		}
	}()
	t.Cleanup(func() {
		signal.Stop(sigs)
		close(sigs)
		if t.Failed() {
			out, _ := s.run("logs", "--no-color", "--tail", "40")
			t.Logf("logs:\n%s", out)
		}
		s.down()
		s.checkGone()
	})

	if out, err := s.run("up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	s.waitHealthy(3 * time.Minute)
	return s
}

// composeCommand is KURIER_COMPOSE if set, else Compose v2 where the
// docker CLI has it, else docker-compose.
func composeCommand(t *testing.T) []string {
	if c := strings.Fields(os.Getenv("KURIER_COMPOSE")); len(c) > 0 {
		return c
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Fatal("neither `docker compose` nor docker-compose is installed")
	}
	return []string{"docker-compose"}
}

// buildReceiver builds the receiver's static binary and its scratch image.
func buildReceiver(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "receiver"), "./receiver")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the receiver: %v\n%s", err, out)
	}
	if out, err := exec.Command("docker", "build", "-q", "-f", "receiver/Dockerfile", "-t", "kurier-e2e-receiver:latest", dir).CombinedOutput(); err != nil {
		t.Fatalf("receiver image: %v\n%s", err, out)
	}
}

func (s *stack) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.compose[0], append(s.compose[1:], args...)...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// docker runs a docker command and fails the test if it fails.
func (s *stack) docker(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// port answers where a service's port is published, host:port.
func (s *stack) port(service string, port int) string {
	s.t.Helper()
	out, err := s.run("port", service, fmt.Sprint(port))
	if err != nil {
		s.t.Fatalf("port %s %d: %v\n%s", service, port, err, out)
	}
	lines := strings.Fields(out)
	return lines[len(lines)-1]
}

// containers lists the ids of a service's containers.
func (s *stack) containers(service string) []string {
	s.t.Helper()
	out, err := s.run("ps", "-q", service)
	if err != nil {
		s.t.Fatalf("ps %s: %v\n%s", service, err, out)
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		s.t.Fatalf("no container of %s", service)
	}
	return ids
}

// waitHealthy waits until every container runs and those with a
// healthcheck are healthy.
func (s *stack) waitHealthy(d time.Duration) {
	s.t.Helper()
	var state string
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(time.Second) {
		out, err := s.run("ps", "-q")
		if err != nil {
			s.t.Fatalf("ps: %v\n%s", err, out)
		}
		ids := strings.Fields(out)
		state = s.docker(append([]string{"inspect", "-f", "{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}healthy{{end}}"}, ids...)...)
		if strings.Count(state, " running healthy\n") == len(ids) {
			return
		}
	}
	s.t.Fatalf("not every container healthy within %v:\n%s", d, state)
}

func (s *stack) down() {
	if out, err := s.run("down", "-v", "--remove-orphans", "--timeout", "10"); err != nil {
		s.t.Errorf("compose down: %v\n%s", err, out)
	}
}

// checkGone fails the test if anything of the project is left.
func (s *stack) checkGone() {
	label := "label=com.docker.compose.project=" + s.project
	for _, list := range [][]string{
		{"ps", "-aq", "--filter", label},
		{"network", "ls", "-q", "--filter", label},
		{"volume", "ls", "-q", "--filter", label},
		{"volume", "ls", "-q", "--filter", "name=" + s.project},
	} {
		if out := strings.TrimSpace(s.docker(list...)); out != "" {
			s.t.Errorf("left behind (docker %s): %s", strings.Join(list, " "), out)
		}
	}
}
