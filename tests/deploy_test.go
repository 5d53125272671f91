package tests

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/tests/harness"
)

// TestHealthcheck probes what container healthchecks probe: exit 0 for a
// ready service, 1 for none.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	closed := freeAddr(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"-url", k.HTTP + "/readyz"}, 0},
		{[]string{"-grpc", k.GRPC}, 0},
		{[]string{"-url", k.HTTP + "/nope"}, 1},
		{[]string{"-url", "http://" + closed + "/readyz"}, 1},
		{[]string{"-grpc", closed, "-timeout", "1s"}, 1},
	} {
		out, err := exec.Command(harness.Binary(t), append([]string{"healthcheck"}, tc.args...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("healthcheck %v: exit %d, want %d: %s", tc.args, code, tc.code, out)
		}
	}
}

// TestGateway reaches the HTTP APIs and the admin API through the
// gateway, as clients of the docker-compose deployment do.
func TestGateway(t *testing.T) {
	t.Parallel()
	k := pingKurier(t)
	gw := harness.Start(t, harness.Options{Role: "gateway", Env: []string{
		"KURIER_GATEWAY_INGEST=" + k.HTTP,
		"KURIER_GATEWAY_ADMIN=" + k.GRPC,
		"KURIER_GATEWAY_QUEUE=",
		"KURIER_GATEWAY_ADDRESSSYNC=",
		// `kurier all` serves the console too.
		"KURIER_GATEWAY_CONSOLE=" + k.HTTP,
	}})
	gw.Token = k.Token
	adm, secret := setup(t, gw, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	pingSub(t, adm, "acme", "shop", rcv.URL, "invoice.changed")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tail, err := adm.TailDeliveries(ctx, &adminv1.TailDeliveriesRequest{OrgId: "acme"})
	if err != nil {
		t.Fatal(err)
	}

	if a := post(t, gw, secret, "application/cloudevents+json", mustJSON(t, ev("g1", "invoice.changed", "I", nil)), nil); a.Status != 202 {
		t.Fatalf("post through the gateway: %+v", a)
	}
	if got := ids(stored(t, k, "acme")); len(got) != 1 || got[0] != "g1" {
		t.Fatalf("stored %v", got)
	}
	rcv.next(t, 5*time.Second)
	// A server stream passes each message as it comes.
	if d, err := tail.Recv(); err != nil || d.GetStatusCode() != 200 {
		t.Fatalf("tail through the gateway: %v %v", d, err)
	}

	// The console's sign-in form.
	resp, err := http.Get(gw.HTTP + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `name="token"`) {
		t.Fatalf("console through the gateway: %d %s", resp.StatusCode, b)
	}

	// Paths no configured service has are not found, in the API's error form.
	resp, err = http.Get(gw.HTTP + "/api/queues")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(b), `"code":"not_found"`) {
		t.Fatalf("unrouted path: %d %s", resp.StatusCode, b)
	}
}
