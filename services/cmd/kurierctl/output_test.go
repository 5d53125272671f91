package main

import (
	"strings"
	"testing"
)

// TestOutputValue: -o value=<field> prints one field of the JSON answer,
// bare, for shell variables.
func TestOutputValue(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme", "--name", "ACME GmbH").ok(t)

	r := ctlAt(t, addr, "key", "create", "--org", "acme", "--scope", "ingest", "-o", "value=secret").ok(t)
	matchLines(t, r.stdout, `kur_[0-9a-f]{16}_[A-Za-z0-9_-]+`)
	if r.stderr != "" {
		t.Errorf("stderr = %q, want nothing", r.stderr)
	}

	for _, tc := range []struct{ field, want string }{
		{"displayName", "ACME GmbH"},
		{"addressbookSyncEnabled", "false"}, // a zero value is there too
		{"personQuota", "0"},
	} {
		r = ctlAt(t, addr, "org", "get", "acme", "-o", "value="+tc.field).ok(t)
		if r.stdout != tc.want+"\n" {
			t.Errorf("-o value=%s printed %q, want %q", tc.field, r.stdout, tc.want+"\n")
		}
	}
	// List items by index; what is not a string or number prints as JSON.
	r = ctlAt(t, addr, "org", "list", "-o", "value=orgs.0.orgId").ok(t)
	if r.stdout != "acme\n" {
		t.Errorf("-o value=orgs.0.orgId printed %q", r.stdout)
	}
	r = ctlAt(t, addr, "key", "list", "--org", "acme", "-o", "value=keys.0.scopes").ok(t)
	if r.stdout != `["KEY_SCOPE_INGEST"]`+"\n" {
		t.Errorf("-o value=keys.0.scopes printed %q", r.stdout)
	}
	// A field not set prints as an empty line.
	r = ctlAt(t, addr, "key", "list", "--org", "acme", "-o", "value=keys.0.revokeTime").ok(t)
	if r.stdout != "\n" {
		t.Errorf("-o value=keys.0.revokeTime of a key not revoked printed %q", r.stdout)
	}

	for _, tc := range []struct{ field, want string }{
		{"nosuch", `the answer has no field "nosuch" (-o value=nosuch); -o json shows it whole`},
		{"orgs.1.orgId", `the answer's list has no item "1"`},
		{"orgs.x", `the answer's list has no item "x"`},
		{"orgs.0.orgId.more", `the answer has nothing under "more"`},
	} {
		r = ctlAt(t, addr, "org", "list", "-o", "value="+tc.field)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
			t.Errorf("-o value=%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.field, r.code, r.stdout, r.stderr, tc.want)
		}
	}
}
