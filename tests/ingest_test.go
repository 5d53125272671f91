package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/contract"
	"kurier.dev/tests/harness"
)

// answer is a decoded HTTP answer of the ingest API.
type answer struct {
	Status     int
	RetryAfter string
	Accepted   []string
	Duplicates []string
	Error      *contract.APIError
}

// post sends an event request with contract's client, over which tests
// that need a kurier of their own share the ingest suite's.
func post(t *testing.T, k *harness.Kurier, secret, contentType string, body []byte, hdr map[string]string) answer {
	t.Helper()
	p := contract.Target{HTTP: k.HTTP}.Post(t, secret, contentType, body, hdr)
	a := answer{Status: p.Status, RetryAfter: p.Header.Get("Retry-After"), Accepted: p.Accepted, Duplicates: p.Duplicates}
	if e, ok := p.ErrorForm(); ok {
		a.Error = &e
	}
	return a
}

var (
	ev       = contract.Event
	mustJSON = contract.JSON
)

// setup makes an org and keys with the named scopes.
func setup(t *testing.T, k *harness.Kurier, org string, scopes ...adminv1.KeyScope) (adminv1.AdminServiceClient, string) {
	t.Helper()
	ctx := context.Background()
	adm := k.Admin(t)
	if _, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: org, DisplayName: "Org " + org}); err != nil {
		t.Fatal(err)
	}
	key, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: org, Scopes: scopes, Description: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return adm, key.GetSecret()
}

// stored reads every event of an org from the EVENTS stream.
func stored(t *testing.T, k *harness.Kurier, org string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range harness.Messages(t, jsOf(t, k), bus.StreamEvents, bus.EventsOrgFilter(org)) {
		var e map[string]any
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Fatalf("stored event is not JSON: %s", m.Data())
		}
		e["_subject"] = m.Subject()
		out = append(out, e)
	}
	return out
}

func ids(events []map[string]any) []string {
	var out []string
	for _, e := range events {
		out = append(out, e["id"].(string))
	}
	return out
}

// TestIngestStoredForm: what the contract suite cannot see of a stored
// event, its subject and the extensions (a binary-mode one percent-decoded),
// is as posted.
func TestIngestStoredForm(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	_, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	if a := post(t, k, secret, "application/cloudevents+json", mustJSON(t, ev("e1", "invoice.changed", "INV-1", map[string]any{"total": 12.5})), nil); a.Status != 202 {
		t.Fatalf("structured: %+v", a)
	}
	a := post(t, k, secret, "application/json", []byte(`{"qty": 3}`), map[string]string{
		"ce-specversion": "1.0", "ce-id": "bin1", "ce-source": "/shop", "ce-type": "stock.changed",
		"ce-subject": "SKU-7", "ce-time": "2026-11-23T10:00:00Z", "ce-comment": "a%20b",
	})
	if a.Status != 202 {
		t.Fatalf("binary: %+v", a)
	}
	got := stored(t, k, "acme")
	if !slices.Equal(ids(got), []string{"e1", "bin1"}) {
		t.Fatalf("stored ids %v", ids(got))
	}
	if got[0]["_subject"] != "kurier.events.acme.invoice.changed" || got[0]["data"].(map[string]any)["total"] != 12.5 {
		t.Errorf("structured event stored as %v", got[0])
	}
	if got[1]["_subject"] != "kurier.events.acme.stock.changed" || got[1]["comment"] != "a b" || got[1]["source"] != "/shop" ||
		got[1]["subject"] != "SKU-7" || got[1]["datacontenttype"] != "application/json" || got[1]["data"].(map[string]any)["qty"] != 3.0 {
		t.Errorf("binary event stored as %v", got[1])
	}
}

func TestNATSIngest(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	_, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	_, otherSecret := setup(t, k, "globex", adminv1.KeyScope_KEY_SCOPE_INGEST)
	nc := k.Conn(t)
	request := func(org, key string, body []byte) (string, answer) {
		t.Helper()
		m := nats.NewMsg("kurier.ingest." + org)
		m.Header.Set("Kurier-Key", key)
		m.Data = body
		resp, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var a answer
		if err := json.Unmarshal(resp.Data, &a); err != nil {
			t.Fatalf("reply is not JSON: %s", resp.Data)
		}
		return resp.Header.Get("Kurier-Status"), a
	}
	st, a := request("acme", secret, mustJSON(t, ev("n1", "delivery.changed", "D-1", nil)))
	if st != "202" || !slices.Equal(a.Accepted, []string{"n1"}) {
		t.Fatalf("single: %s %+v", st, a)
	}
	st, a = request("acme", secret, mustJSON(t, []any{ev("n2", "delivery.changed", "D-2", nil), ev("n1", "delivery.changed", "D-1", nil)}))
	if st != "202" || !slices.Equal(a.Accepted, []string{"n2"}) || !slices.Equal(a.Duplicates, []string{"n1"}) {
		t.Fatalf("batch: %s %+v", st, a)
	}
	st, a = request("acme", secret, []byte(`{"specversion":"1.0"}`))
	if st != "400" || a.Error == nil || a.Error.Field != "id" {
		t.Fatalf("bad event: %s %+v", st, a)
	}
	st, a = request("acme", "wrong", mustJSON(t, ev("n3", "delivery.changed", "D", nil)))
	if st != "401" || a.Error == nil || a.Error.Code != "unauthenticated" {
		t.Fatalf("bad key: %s %+v", st, a)
	}
	// A key of one org cannot post into another, and is told no more than
	// an unknown key is.
	st, a = request("acme", otherSecret, mustJSON(t, ev("n4", "delivery.changed", "D", nil)))
	if st != "401" || a.Error == nil || a.Error.Code != "unauthenticated" {
		t.Fatalf("foreign key: %s %+v", st, a)
	}
	if got := ids(stored(t, k, "acme")); !slices.Equal(got, []string{"n1", "n2"}) {
		t.Fatalf("stored %v", got)
	}
	if got := stored(t, k, "globex"); len(got) != 0 {
		t.Fatalf("globex got %v", ids(got))
	}
}

// TestSIGTERMKeepsAcceptedEvents stops kurier while senders are posting:
// it must exit 0, and after a restart every event that got 202 is there.
func TestSIGTERMKeepsAcceptedEvents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := harness.Start(t, harness.Options{DataDir: dir})
	_, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)

	var mu sync.Mutex
	var accepted []string
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for w := range 8 {
		wg.Go(func() {
			client := &http.Client{Timeout: 30 * time.Second}
			for i := 0; ; i++ {
				batch := []any{ev(fmt.Sprintf("w%d-%d-a", w, i), "invoice.changed", "I", nil), ev(fmt.Sprintf("w%d-%d-b", w, i), "invoice.changed", "J", nil)}
				req, _ := http.NewRequest(http.MethodPost, k.HTTP+"/v1/events", bytes.NewReader(mustJSON(t, batch)))
				req.Header.Set("Content-Type", "application/cloudevents-batch+json")
				req.Header.Set("Authorization", "Bearer "+secret)
				resp, err := client.Do(req)
				if err != nil {
					return // the server has stopped
				}
				var a answer
				_ = json.NewDecoder(resp.Body).Decode(&a)
				resp.Body.Close()
				if resp.StatusCode == 202 {
					mu.Lock()
					accepted = append(accepted, a.Accepted...)
					mu.Unlock()
					if i == 5 {
						once.Do(func() { close(started) })
					}
				}
			}
		})
	}
	<-started
	if code := k.Stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, k.Logs())
	}
	wg.Wait()
	if len(accepted) < 40 {
		t.Fatalf("only %d events accepted before the stop", len(accepted))
	}

	k = harness.Start(t, harness.Options{DataDir: dir})
	have := map[string]bool{}
	for _, id := range ids(stored(t, k, "acme")) {
		have[id] = true
	}
	lost := 0
	for _, id := range accepted {
		if !have[id] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d accepted events lost", lost, len(accepted))
	}
	t.Logf("%d accepted events all kept across SIGTERM", len(accepted))
}

// TestAdminAPI checks what the admin suite (contract.AdminAPI) cannot see
// from outside: the key store keeps no secret, only its hash, and deleting
// an org deletes its stored events.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	ctx := context.Background()
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	keys, err := adm.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: "acme"})
	if err != nil || len(keys.GetKeys()) != 1 {
		t.Fatalf("list keys: %v %v", keys, err)
	}
	kv, err := jsOf(t, k).KeyValue(ctx, bus.BucketKeys)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, keys.GetKeys()[0].GetKeyId())
	if err != nil || bytes.Contains(e.Value(), []byte(secret[4:])) {
		t.Fatalf("stored key %s (%v) holds the secret", e.Value(), err)
	}

	if a := post(t, k, secret, "application/cloudevents+json", mustJSON(t, ev("d1", "invoice.changed", "I", nil)), nil); a.Status != 202 {
		t.Fatalf("post: %+v", a)
	}
	if got := stored(t, k, "acme"); len(got) != 1 {
		t.Fatalf("stored before the delete: %v", ids(got))
	}
	if _, err := adm.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, k, "acme"); len(got) != 0 {
		t.Fatalf("events of deleted org remain: %v", ids(got))
	}
}

func TestGeneratedAdminTokenAndProbes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := harness.Start(t, harness.Options{DataDir: dir, Token: "-"})
	fi, err := os.Stat(filepath.Join(dir, "admin-token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin-token file: %v %v", fi, err)
	}
	if !strings.Contains(k.Stdout(), k.Token) {
		t.Fatalf("token not printed on first start: %q", k.Stdout())
	}
	if strings.Contains(k.Logs(), k.Token) {
		t.Fatal("the admin token appears in the log")
	}
	if _, err := k.Admin(t).ListOrgs(context.Background(), &adminv1.ListOrgsRequest{}); err != nil {
		t.Fatalf("generated token refused: %v", err)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/nope": 404} {
		resp, err := http.Get(k.HTTP + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
		if path == "/metrics" && !bytes.Contains(b, []byte("go_goroutines")) {
			t.Errorf("metrics lack the runtime collector")
		}
	}
	if code := k.Stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// A second start reuses the token and does not print it again.
	k2 := harness.Start(t, harness.Options{DataDir: dir, Token: "-"})
	if k2.Token != k.Token || strings.Contains(k2.Stdout(), k.Token) {
		t.Fatalf("second start: token %q, stdout %q", k2.Token, k2.Stdout())
	}
}

// TestSeparateServices runs ingest and admin as their own processes
// against the NATS server of a `kurier all`, as a cluster deployment does.
func TestSeparateServices(t *testing.T) {
	t.Parallel()
	base := harness.Start(t, harness.Options{})
	adm := harness.Start(t, harness.Options{Role: "admin", NATSURL: base.NATS})
	ing := harness.Start(t, harness.Options{Role: "ingest", NATSURL: base.NATS})
	_, secret := setup(t, adm, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	if a := post(t, ing, secret, "application/cloudevents+json", mustJSON(t, ev("s1", "invoice.changed", "I", nil)), nil); a.Status != 202 {
		t.Fatalf("post to the ingest service: %+v", a)
	}
	if got := ids(stored(t, base, "acme")); !slices.Equal(got, []string{"s1"}) {
		t.Fatalf("stored %v", got)
	}
	if code := ing.Stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("ingest exit %d", code)
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	bin := harness.Binary(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "kurier ") {
		t.Fatalf("version: %q %v", out, err)
	}
	cmd := exec.Command(bin, "admin")
	cmd.Env = append(os.Environ(), "KURIER_ADMIN_TOKEN=", "KURIER_NATS_URL=nats://127.0.0.1:1")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "KURIER_ADMIN_TOKEN") {
		t.Fatalf("admin without a token: %q %v", out, err)
	}
	out, err = exec.Command(bin, "nonsense").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "unknown command") {
		t.Fatalf("unknown command: %q %v", out, err)
	}
}

func jsOf(t *testing.T, k *harness.Kurier) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(k.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	return js
}
