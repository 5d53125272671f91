package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// TestTypeCommands: the catalog as a table and as JSON; a schema set from
// a file and from standard input, shown in the org's listing and printed
// as set, then deleted; bad input fails with the server's reason.
func TestTypeCommands(t *testing.T) {
	addr := startAdmin(t)
	out := ctlAt(t, addr, "type", "list").ok(t).stdout
	if !strings.HasPrefix(out, "NAME") || !regexp.MustCompile(`(?m)^invoice\.changed\s+collmex\s+5\s+Invoice changed$`).MatchString(out) || strings.Contains(out, "SCHEMA") {
		t.Errorf("type list:\n%s", out)
	}
	ctlAt(t, addr, "org", "create", "acme").ok(t)

	text := `{"type":"object","required":["total"]}`
	file := filepath.Join(t.TempDir(), "invoice.json")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	r := ctlAt(t, addr, "type", "set-schema", "--org", "acme", "invoice.changed", "-f", file).ok(t)
	if !strings.Contains(r.stdout, "Events of type invoice.changed of org acme are now checked") {
		t.Errorf("set-schema: %s", r.stdout)
	}
	et := unmarshal[adminv1.EventType](t, ctlIn(t, strings.NewReader(`true`), "--server", addr, "--token", testToken,
		"type", "set-schema", "--org", "acme", "acme.machine.stopped", "-f", "-", "-o", "json").ok(t).stdout)
	if et.GetName() != "acme.machine.stopped" || et.GetSchema() != "true" {
		t.Errorf("set-schema from stdin -o json: %v", et)
	}

	out = ctlAt(t, addr, "type", "list", "--org", "acme").ok(t).stdout
	if !regexp.MustCompile(`(?m)^invoice\.changed\s+collmex\s+5\s+Invoice changed\s+38 bytes$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^acme\.machine\.stopped\s+-\s+-\s+-\s+4 bytes$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^quote\.changed\s+collmex\s+6\s+Quote changed\s+-$`).MatchString(out) {
		t.Errorf("type list --org acme:\n%s", out)
	}
	if got := ctlAt(t, addr, "type", "get-schema", "--org", "acme", "invoice.changed").ok(t).stdout; got != text+"\n" {
		t.Errorf("get-schema: %q, want the schema as set", got)
	}
	list := unmarshal[adminv1.ListEventTypesResponse](t, ctlAt(t, addr, "type", "list", "--org", "acme", "-o", "json").ok(t).stdout)
	if n := len(list.GetEventTypes()); n < 26 {
		t.Errorf("-o json lists %d types", n)
	}

	ctlAt(t, addr, "type", "delete-schema", "--org", "acme", "invoice.changed").ok(t)
	ctlAt(t, addr, "type", "get-schema", "--org", "acme", "invoice.changed").fails(t, 1, "gave event type invoice.changed no schema")
	ctlAt(t, addr, "type", "delete-schema", "--org", "acme", "invoice.changed").fails(t, 1, "not found")

	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"type":"objekt"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctlAt(t, addr, "type", "set-schema", "--org", "acme", "invoice.changed", "-f", bad).fails(t, 1, "schema: ", "is not valid against metaschema")
	ctlAt(t, addr, "type", "set-schema", "invoice.changed", "-f", bad).fails(t, 2, "needs --org")
	ctlAt(t, addr, "type", "set-schema", "--org", "acme", "invoice.changed").fails(t, 2, "needs -f")
	ctlAt(t, addr, "type", "set-schema", "--org", "acme", "invoice.changed", "-f", filepath.Join(t.TempDir(), "missing.json")).fails(t, 1, "no such file")
}
