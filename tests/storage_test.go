package tests

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
	"kurier.dev/services/tlstest"
	"kurier.dev/tests/harness"
)

// TestEventsStoreFull: with EVENTS at its byte limit, ingest refuses new
// events over HTTP and NATS with 503 store_full and Retry-After; every
// event accepted before stays and is delivered, and the process stays live
// and ready. Started again with a larger limit, it takes events again.
func TestEventsStoreFull(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_EVENTS_MAX_BYTES=256K"}})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := &webhookIDs{seen: map[string]bool{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	payloadSub(t, adm, &adminv1.Subscription{EventTypes: []string{"invoice.changed"}, Url: srv.URL + "/hook"})

	// Events of 16 KiB until one does not fit, then events without data
	// until none does.
	data := strings.Repeat("x", 16<<10)
	var accepted []string
	var full answer
	for i, big := 0, true; ; i++ {
		if i == 1000 {
			t.Fatal("256 KiB took 1000 events")
		}
		id := "e" + strconv.Itoa(i)
		e := ev(id, "invoice.changed", "I", nil)
		if big {
			e["data"] = data
		}
		a := post(t, k, secret, "application/cloudevents+json", mustJSON(t, e), nil)
		if a.Status == http.StatusAccepted {
			accepted = append(accepted, id)
			continue
		}
		full = a
		if !big {
			break
		}
		big = false
	}
	if full.Status != http.StatusServiceUnavailable || full.Error == nil || full.Error.Code != "store_full" || full.RetryAfter == "" {
		t.Fatalf("post into the full store: %d %+v Retry-After %q, want 503 store_full with Retry-After", full.Status, full.Error, full.RetryAfter)
	}
	over := natsIngest(t, k.Conn(t), "acme", secret, "n1")
	if e, ok := over.ErrorForm(); over.Status != http.StatusServiceUnavailable || !ok || e.Code != "store_full" || over.Header.Get("Retry-After") == "" {
		t.Fatalf("NATS ingest into the full store: %d %s Retry-After %q", over.Status, over.Body, over.Header.Get("Retry-After"))
	}
	// A sender retrying a request of which a part was stored learns so.
	if a := post(t, k, secret, "application/cloudevents+json", mustJSON(t, ev(accepted[0], "invoice.changed", "I", nil)), nil); a.Status != http.StatusAccepted || !slices.Equal(a.Duplicates, accepted[:1]) {
		t.Fatalf("an accepted event sent again: %+v", a)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := contract.Do(t, contract.Request{Method: http.MethodGet, URL: k.HTTP + path}); r.Status != http.StatusOK {
			t.Errorf("%s with the store full: %d %s", path, r.Status, r.Body)
		}
	}
	if got := ids(stored(t, k, "acme")); !slices.Equal(got, accepted) {
		t.Fatalf("stored %v, want the %d accepted %v", got, len(accepted), accepted)
	}
	natstest.WaitForErr(t, 20*time.Second, "the accepted events delivered", func() error {
		if n := rcv.count(); n < len(accepted) {
			return fmt.Errorf("%d of the %d delivered", n, len(accepted))
		}
		return nil
	})
	t.Logf("store full: %d events accepted into 256 KiB, then refused", len(accepted))

	if code := k.Stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	k = harness.Start(t, harness.Options{DataDir: k.DataDir, Env: []string{"KURIER_EVENTS_MAX_BYTES=1M"}})
	if a := post(t, k, secret, "application/cloudevents+json", mustJSON(t, ev("after", "invoice.changed", "I", data)), nil); a.Status != http.StatusAccepted {
		t.Fatalf("with a larger limit: %+v", a)
	}
	if got := ids(stored(t, k, "acme")); !slices.Equal(got, append(accepted, "after")) {
		t.Fatalf("stored %v after the restart", got)
	}
}

// TestQueuesStoreFull: with QUEUES at its byte limit, a sender's post to
// any queue is 503 store_full with Retry-After, and a queue subscription's
// event for a queue is dropped and logged as for a full queue; a message
// deleted makes room again.
func TestQueuesStoreFull(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_QUEUES_MAX_BYTES=64K"}})
	adm, key := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	first, second := contract.CreateQueue(t, k.HTTP, key), contract.CreateQueue(t, k.HTTP, key)
	resp, err := adm.CreateSubscription(context.Background(), &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "hub", EventTypes: []string{"invoice.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: second.QueueID, Active: true}})
	if err != nil {
		t.Fatal(err)
	}

	// Messages of 4 KB into the first queue until one does not fit, then
	// empty ones until none does.
	var full contract.Answer
	for i, big := 0, true; ; i++ {
		if i == 1000 {
			t.Fatal("64 KiB took 1000 messages")
		}
		body := `{}`
		if big {
			body = `{"pad":"` + strings.Repeat("x", 4000) + `"}`
		}
		if full = first.Send(t, body); full.Status == http.StatusOK {
			continue
		}
		if !big {
			break
		}
		big = false
	}
	if e, _ := full.ErrorForm(); full.Status != http.StatusServiceUnavailable || e.Code != "store_full" || full.Header.Get("Retry-After") == "" {
		t.Fatalf("post into the full store: %d %s Retry-After %q", full.Status, full.Body, full.Header.Get("Retry-After"))
	}
	if a := second.Send(t, `{}`); a.Status != http.StatusServiceUnavailable {
		t.Fatalf("post to another queue of the full store: %d %s", a.Status, a.Body)
	}

	if a := post(t, k, key, "application/cloudevents+json", mustJSON(t, ev("q1", "invoice.changed", "I", nil)), nil); a.Status != http.StatusAccepted {
		t.Fatalf("event for the queue subscription: %+v", a)
	}
	natstest.WaitForErr(t, 10*time.Second, "the event for the full store logged as dropped", func() error {
		ds, err := adm.ListDeliveries(context.Background(), &adminv1.ListDeliveriesRequest{OrgId: "acme", SubscriptionId: resp.GetSubscription().GetSubscriptionId()})
		if err != nil {
			t.Fatal(err)
		}
		if d := ds.GetDeliveries(); len(d) != 1 || d[0].GetOutcome() != "dropped" || d[0].GetEventId() != "q1" {
			return fmt.Errorf("log: %v", d)
		}
		return nil
	})

	_, msgs := first.Peek(t, "")
	if code := first.DeleteMessage(t, msgs[0].MessageID).Status; code != http.StatusOK {
		t.Fatalf("delete: %d", code)
	}
	if a := second.Send(t, `{}`); a.Status != http.StatusOK {
		t.Fatalf("post after a delete: %d %s", a.Status, a.Body)
	}
}

// failsAtStart runs `kurier all` with env on loopback ports and a data dir
// of its own unless env names one, and answers what it printed once it
// exited, which it must within 20 s and with status 1, and how long it ran.
func failsAtStart(t *testing.T, env ...string) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), "all")
	cmd.Env = append(os.Environ(), "KURIER_HTTP_LISTEN=127.0.0.1:0", "KURIER_GRPC_LISTEN=127.0.0.1:0", "KURIER_NATS_LISTEN=127.0.0.1:0",
		"KURIER_DATA_DIR="+t.TempDir(), "KURIER_ADMIN_TOKEN="+harness.TestToken)
	cmd.Env = append(cmd.Env, env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("kurier all with %v: %v after %v, want exit 1\n%s", env, err, took, out)
	}
	return string(out), took
}

// TestDataDirLocked: a second `kurier all` on a data dir in use exits at
// once, naming it, and the first goes on delivering. Once the first is
// killed, the dir is free again.
func TestDataDirLocked(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := &webhookIDs{seen: map[string]bool{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	payloadSub(t, adm, &adminv1.Subscription{EventTypes: []string{"invoice.changed"}, Url: srv.URL + "/hook"})

	out, took := failsAtStart(t, "KURIER_DATA_DIR="+k.DataDir)
	if !strings.Contains(out, "data dir "+k.DataDir+" is in use") {
		t.Errorf("the second process's words do not name the data dir %s:\n%s", k.DataDir, out)
	}
	t.Logf("second process on the data dir exited after %v", took)

	for i := range 3 {
		if a := post(t, k, secret, "application/cloudevents+json", mustJSON(t, ev("d"+strconv.Itoa(i), "invoice.changed", "I", nil)), nil); a.Status != http.StatusAccepted {
			t.Fatalf("post after the second process: %+v", a)
		}
	}
	natstest.WaitForErr(t, 10*time.Second, "the first process to deliver 3 events after the second one tried", func() error {
		if n := rcv.count(); n < 3 {
			return fmt.Errorf("it delivered %d", n)
		}
		return nil
	})

	k.Stop(t, syscall.SIGKILL)
	k = k.Restart(t)
	if got := ids(stored(t, k, "acme")); len(got) != 3 {
		t.Fatalf("after a kill and a restart on the data dir: %v", got)
	}
}

// TestNATSAddressTaken: an embedded NATS address already in use ends
// `kurier all` at once, naming the address.
func TestNATSAddressTaken(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	addr := lis.Addr().String()
	out, took := failsAtStart(t, "KURIER_NATS_LISTEN="+addr)
	if !strings.Contains(out, addr) || !strings.Contains(out, "address already in use") {
		t.Errorf("the error does not name %s and why:\n%s", addr, out)
	}
	if took > 5*time.Second {
		t.Errorf("exited after %v", took)
	}
	t.Logf("taken NATS address: exited after %v", took)
}

// TestStartupSettingsChecked: settings that cannot work end the process at
// once with words that name them.
func TestStartupSettingsChecked(t *testing.T) {
	t.Parallel()
	ca, cert, key := tlstest.Server(t)
	for _, tc := range []struct {
		env  []string
		want []string
	}{
		{[]string{"KURIER_EVENTS_MAX_BYTES=0"}, []string{"KURIER_EVENTS_MAX_BYTES", "must be positive"}},
		{[]string{"KURIER_QUEUES_MAX_BYTES=lots"}, []string{"KURIER_QUEUES_MAX_BYTES", "whole number of bytes"}},
		{[]string{"KURIER_DELIVERIES_MAX_BYTES=1000000T"}, []string{"DELIVERIES", "more than the NATS server may store"}},
		{[]string{"KURIER_GRPC_TLS_CERT=" + cert}, []string{"KURIER_GRPC_TLS_CERT", "KURIER_GRPC_TLS_KEY"}},
		{[]string{"KURIER_GRPC_TLS_CERT=" + ca, "KURIER_GRPC_TLS_KEY=" + key}, []string{"KURIER_GRPC_TLS_CERT", "private key does not match public key"}},
	} {
		out, _ := failsAtStart(t, tc.env...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: the error does not say %q:\n%s", tc.env, w, out)
			}
		}
	}
}

// TestAdminTLS: with a certificate and key, the admin API speaks TLS only:
// a client that trusts the certificate gets through, a plaintext one does
// not.
func TestAdminTLS(t *testing.T) {
	t.Parallel()
	ca, cert, key := tlstest.Server(t)
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_GRPC_TLS_CERT=" + cert, "KURIER_GRPC_TLS_KEY=" + key}})
	creds, err := credentials.NewClientTLSFromFile(ca, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func(creds credentials.TransportCredentials) error {
		cc, err := grpc.NewClient(k.GRPC, grpc.WithTransportCredentials(creds), grpc.WithPerRPCCredentials(contract.Bearer(k.Token)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		_, err = adminv1.NewAdminServiceClient(cc).ListOrgs(ctx, &adminv1.ListOrgsRequest{})
		return err
	}
	if err := call(creds); err != nil {
		t.Errorf("over TLS: %v", err)
	}
	if err := call(insecure.NewCredentials()); err == nil {
		t.Error("a plaintext client got an answer")
	}
}

// TestRedeliverIntoFullDeliveries: with DELIVERIES filled by the retries
// of a receiver nobody answers, a redelivery is refused with
// RESOURCE_EXHAUSTED instead of making the server drop the oldest tasks.
func TestRedeliverIntoFullDeliveries(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_DELIVERIES_MAX_BYTES=64K"}})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	since := time.Now()
	sub := payloadSub(t, adm, &adminv1.Subscription{EventTypes: []string{"invoice.changed"}, Url: "http://127.0.0.1:1/nobody",
		RetrySchedule: []*durationpb.Duration{durationpb.New(time.Hour)}}).GetSubscription()
	for b := 0; b < 300; b += 50 {
		var batch []map[string]any
		for i := b; i < b+50; i++ {
			batch = append(batch, ev("e"+strconv.Itoa(i), "invoice.changed", "I", nil))
		}
		if a := post(t, k, secret, "application/cloudevents-batch+json", mustJSON(t, batch), nil); a.Status != http.StatusAccepted {
			t.Fatalf("events: %d", a.Status)
		}
	}
	js := jsOf(t, k)
	deliveries, err := js.Stream(context.Background(), bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitForErr(t, 30*time.Second, "a full DELIVERIES", func() error {
		info, err := deliveries.Info(context.Background())
		if err == nil && float64(info.State.Bytes) < 0.95*limit {
			err = fmt.Errorf("%+v", info.State)
		}
		return err
	})
	_, err = adm.Redeliver(context.Background(), &adminv1.RedeliverRequest{SubscriptionId: sub.GetSubscriptionId(),
		What: &adminv1.RedeliverRequest_Events{Events: &adminv1.TimeRange{Since: timestamppb.New(since)}}})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "KURIER_DELIVERIES_MAX_BYTES") {
		t.Fatalf("redelivery into a full DELIVERIES: %v, want RESOURCE_EXHAUSTED naming the setting", err)
	}
}
