package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// TestEventTypeSchema: a schema set with kurierctl is enforced by every
// ingest process, the one of `kurier all` and one of its own on the same
// NATS, without a restart: an event whose data does not match is refused
// 400 naming the path (and the index in a batch) and not stored. Deleted,
// the check is lifted on both.
func TestEventTypeSchema(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	ing := harness.Start(t, harness.Options{Role: "ingest", NATSURL: k.NATS})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	const structured, batch = "application/cloudevents+json", "application/cloudevents-batch+json"
	bad := mustJSON(t, ev("bad-1", "invoice.changed", "INV-1", map[string]any{"total": "12"}))
	for _, h := range []*harness.Kurier{k, ing} {
		if a := post(t, h, secret, structured, mustJSON(t, ev("before", "invoice.changed", "INV-1", map[string]any{"total": "12"})), nil); a.Status != 202 {
			t.Fatalf("before the schema: %+v", a)
		}
	}

	file := filepath.Join(t.TempDir(), "invoice.json")
	if err := os.WriteFile(file, []byte(`{"type":"object","required":["total"],"properties":{"total":{"type":"number"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl := exec.Command(harness.Kurierctl(t), "--server", k.GRPC, "--token", k.Token, "type", "set-schema", "--org", "acme", "invoice.changed", "-f", file)
	if out, err := ctl.CombinedOutput(); err != nil {
		t.Fatalf("kurierctl type set-schema: %v\n%s", err, out)
	}
	for name, h := range map[string]*harness.Kurier{"kurier all": k, "kurier ingest": ing} {
		natstest.WaitFor(t, 10*time.Second, name+" to refuse data against the schema", func() bool {
			return post(t, h, secret, structured, bad, nil).Status == 400
		})
		a := post(t, h, secret, structured, bad, nil)
		if a.Status != 400 || a.Error == nil || a.Error.Code != "schema_mismatch" || a.Error.Field != "data.total" || !strings.Contains(a.Error.Message, "want number") {
			t.Errorf("%s, a string total: %+v", name, a)
		}
		a = post(t, h, secret, batch, mustJSON(t, []map[string]any{
			ev("ok-"+name, "invoice.changed", "INV-2", map[string]any{"total": 1}),
			ev("bad-2", "invoice.changed", "INV-3", map[string]any{}),
		}), nil)
		if a.Status != 400 || a.Error == nil || a.Error.Field != "[1].data.total" || a.Error.Index == nil || *a.Error.Index != 1 {
			t.Errorf("%s, a batch whose second event has no total: %+v", name, a)
		}
	}
	if got := ids(stored(t, k, "acme")); len(got) != 1 {
		t.Errorf("stored %v, want only the event sent before the schema", got)
	}

	if _, err := adm.DeleteEventTypeSchema(context.Background(), &adminv1.DeleteEventTypeSchemaRequest{OrgId: "acme", EventType: "invoice.changed"}); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]*harness.Kurier{"kurier all": k, "kurier ingest": ing} {
		natstest.WaitFor(t, 10*time.Second, name+" to lift the check", func() bool {
			return post(t, h, secret, structured, bad, nil).Status == 202
		})
	}
}
