package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// TestSubFilter: --filter on create and update, shown by sub get; a bad
// one refused as admin says; sub preview --event tries an event of one's
// own against it.
func TestSubFilter(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "erp", "--type", "invoice.changed", "--url", "https://example.com/hook",
		"--filter", "data.total >").fails(t, 1, "kurierctl: filter: line 1, column 13: ")
	r := ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "erp", "--type", "invoice.changed", "--url", "https://example.com/hook",
		"--filter", `data.total > 1000.0`, "-o", "json").ok(t)
	id := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription().GetSubscriptionId()

	r = ctlAt(t, addr, "sub", "get", id).ok(t)
	if !strings.Contains(r.stdout, "\nFILTER:") || !strings.Contains(r.stdout, "data.total > 1000.0") {
		t.Errorf("sub get does not show the filter:\n%s", r.stdout)
	}
	ctlAt(t, addr, "sub", "update", id, "--filter", "subject").fails(t, 1, "kurierctl: filter: line 1, column 1: must be true or false")
	r = ctlAt(t, addr, "sub", "update", id, "--filter", `data.total > 1000.0 && subject.startsWith("INV-")`, "-o", "json").ok(t)
	if got := unmarshal[adminv1.Subscription](t, r.stdout).GetFilter(); got != `data.total > 1000.0 && subject.startsWith("INV-")` {
		t.Errorf("updated filter = %q", got)
	}

	dir := t.TempDir()
	sample := func(name, subject string, total int) string {
		p := filepath.Join(dir, name)
		ev := `{"specversion":"1.0","id":"1","source":"/erp","type":"invoice.changed","subject":"` + subject + `","data":{"total":` + strings.Repeat("9", total) + `}}`
		if err := os.WriteFile(p, []byte(ev), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r = ctlAt(t, addr, "sub", "preview", id, "--event", sample("big.json", "INV-1", 4)).ok(t)
	if !strings.HasSuffix(r.stdout, "\nThe sample event would be delivered: it is of the subscription's types and its filter passes it.\n") ||
		!strings.Contains(r.stdout, `"INV-1"`) {
		t.Errorf("preview of a passing event:\n%s", r.stdout)
	}
	r = ctlAt(t, addr, "sub", "preview", id, "--event", sample("small.json", "INV-2", 2), "-o", "json").ok(t)
	if p := unmarshal[adminv1.PreviewSubscriptionResponse](t, r.stdout); p.GetMatches() {
		t.Errorf("preview of an event the filter leaves out = %v", p)
	}
	r = ctlAt(t, addr, "sub", "preview", id).ok(t)
	if !strings.HasSuffix(r.stdout, "\nThe sample event would not be delivered: it is not of the subscription's types, or its filter does not pass it.\n") {
		t.Errorf("preview of the generated sample, which has no total:\n%s", r.stdout)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"specversion":"1.0"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctlAt(t, addr, "sub", "preview", id, "--event", bad).fails(t, 1, "kurierctl: sample_event: id: is required")
	ctlAt(t, addr, "sub", "preview", id, "--event", filepath.Join(dir, "missing.json")).fails(t, 1, "missing.json")

	r = ctlAt(t, addr, "sub", "update", id, "--filter", "", "-o", "json").ok(t)
	if got := unmarshal[adminv1.Subscription](t, r.stdout).GetFilter(); got != "" {
		t.Errorf("--filter \"\" left %q", got)
	}
}
