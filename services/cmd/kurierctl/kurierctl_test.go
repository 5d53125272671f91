package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/admin"
	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/bustest"
)

const testToken = "test-admin-token-0123456789"

// rfc3339UTC is how tables show times.
const rfc3339UTC = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`

// startAdmin runs an embedded JetStream server and the real admin gRPC
// service on a free port, and returns the service's address.
func startAdmin(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conn := bustest.Start(t, bus.DefaultLimits())
	svc, err := admin.New(ctx, admin.Config{Token: testToken, Limits: bus.DefaultLimits()}, conn, bustest.Log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- svc.Serve(ctx, lis, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("admin serve: %v", err)
		}
	})
	return lis.Addr().String()
}

type result struct {
	code           int
	stdout, stderr string
}

// ctl runs kurierctl with exactly args, with no token or server from the
// environment of whoever runs the tests.
func ctl(t *testing.T, args ...string) result {
	t.Helper()
	t.Setenv("KURIER_ADMIN_TOKEN", "")
	t.Setenv("KURIER_ADMIN_SERVER", "")
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// ctlAt runs kurierctl against addr with the right token, the global flags
// placed before the command.
func ctlAt(t *testing.T, addr string, args ...string) result {
	t.Helper()
	return ctl(t, append([]string{"--server", addr, "--token", testToken}, args...)...)
}

func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

func (r result) fails(t *testing.T, code int, stderrHas ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "kurierctl: ") {
		t.Errorf("stderr does not start with %q:\n%s", "kurierctl: ", r.stderr)
	}
	for _, s := range stderrHas {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
	if r.stdout != "" {
		t.Errorf("stdout of a failure is not empty:\n%s", r.stdout)
	}
}

// lines splits output into lines, dropping the final newline.
func lines(s string) []string {
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// matchLines checks output line by line against anchored patterns.
func matchLines(t *testing.T, out string, patterns ...string) {
	t.Helper()
	got := lines(out)
	if len(got) != len(patterns) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(patterns), out)
	}
	for i, p := range patterns {
		if !regexp.MustCompile("^" + p + "$").MatchString(got[i]) {
			t.Errorf("line %d = %q, want match for %q", i+1, got[i], p)
		}
	}
}

func unmarshal[T any, P interface {
	*T
	proto.Message
}](t *testing.T, out string) P {
	t.Helper()
	m := P(new(T))
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("output is not a %T as protojson: %v\n%s", m, err, out)
	}
	return m
}

func TestOrgLifecycle(t *testing.T) {
	addr := startAdmin(t)
	before := time.Now().Add(-time.Second)

	r := ctlAt(t, addr, "org", "create", "acme", "--name", "ACME Büro GmbH").ok(t)
	matchLines(t, r.stdout,
		`ORG ID  DISPLAY NAME    CREATED`,
		`acme    ACME Büro GmbH  `+rfc3339UTC,
	)
	created, err := time.Parse(time.RFC3339, strings.Fields(lines(r.stdout)[1])[4])
	if err != nil || created.Before(before.Truncate(time.Second)) || created.After(time.Now()) {
		t.Errorf("created = %v (%v), want about now", created, err)
	}

	// An org without a display name shows "-" in its place.
	ctlAt(t, addr, "org", "create", "beta").ok(t)

	// Global flags after the command words, and -o json.
	r = ctl(t, "org", "get", "acme", "--server", addr, "--token", testToken, "-o", "json").ok(t)
	org := unmarshal[adminv1.Org](t, r.stdout)
	if org.GetOrgId() != "acme" || org.GetDisplayName() != "ACME Büro GmbH" || !org.GetCreateTime().AsTime().Truncate(time.Second).Equal(created) {
		t.Errorf("org get -o json = %v", org)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("org get -o json is not one JSON document: %v\n%s", err, r.stdout)
	}
	if doc["orgId"] != "acme" || doc["displayName"] != "ACME Büro GmbH" {
		t.Errorf("org get JSON fields = %v", doc)
	}

	// Global flags between the command words, and the table.
	r = ctl(t, "org", "--server", addr, "list", "--token="+testToken).ok(t)
	matchLines(t, r.stdout,
		`ORG ID  DISPLAY NAME    CREATED`,
		`acme    ACME Büro GmbH  `+rfc3339UTC,
		`beta    -               `+rfc3339UTC,
	)
	r = ctlAt(t, addr, "--output", "json", "org", "list").ok(t)
	list := unmarshal[adminv1.ListOrgsResponse](t, r.stdout)
	if len(list.GetOrgs()) != 2 || list.GetOrgs()[0].GetOrgId() != "acme" || list.GetOrgs()[1].GetOrgId() != "beta" {
		t.Errorf("org list -o json = %v", list)
	}

	ctlAt(t, addr, "org", "create", "acme").fails(t, 1, `kurierctl: org "acme" already exists`)
	ctlAt(t, addr, "org", "get", "nope").fails(t, 1, `kurierctl: org "nope" not found`)
	ctlAt(t, addr, "org", "create", "Not_Valid").fails(t, 1, "org_id: must match")

	r = ctlAt(t, addr, "org", "delete", "beta").ok(t)
	if r.stdout != "Deleted org beta with its keys and stored events.\n" {
		t.Errorf("org delete printed %q", r.stdout)
	}
	r = ctlAt(t, addr, "-o", "json", "org", "delete", "acme").ok(t)
	if strings.TrimSpace(r.stdout) != "{}" {
		t.Errorf("org delete -o json printed %q", r.stdout)
	}
	ctlAt(t, addr, "org", "get", "acme").fails(t, 1, `org "acme" not found`)
	ctlAt(t, addr, "org", "delete", "acme").fails(t, 1, `org "acme" not found`)

	// An empty list prints nothing to stdout, a hint to stderr in table
	// mode, and an empty document as JSON.
	r = ctlAt(t, addr, "org", "list").ok(t)
	if r.stdout != "" || !strings.Contains(r.stderr, "kurierctl org create") {
		t.Errorf("empty org list: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	r = ctlAt(t, addr, "org", "list", "-o", "json").ok(t)
	if strings.TrimSpace(r.stdout) != "{}" || r.stderr != "" {
		t.Errorf("empty org list -o json: stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

func TestKeyLifecycle(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)

	// Scopes comma-separated and repeated, with a duplicate and odd case.
	r := ctlAt(t, addr, "key", "create", "--org", "acme", "--scope", "ingest,Changes", "--scope", "ingest",
		"--description", "ERP connector", "-o", "json").ok(t)
	created := unmarshal[adminv1.CreateKeyResponse](t, r.stdout)
	secret, key := created.GetSecret(), created.GetKey()
	if !strings.HasPrefix(secret, "kur_") {
		t.Fatalf("secret %q does not start with kur_", secret)
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(key.GetKeyId()) || key.GetOrgId() != "acme" ||
		key.GetDescription() != "ERP connector" || key.GetRevokeTime() != nil {
		t.Errorf("created key = %v", key)
	}
	wantScopes := []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_CHANGES}
	if got := key.GetScopes(); len(got) != 2 || got[0] != wantScopes[0] || got[1] != wantScopes[1] {
		t.Errorf("scopes = %v, want %v", got, wantScopes)
	}
	id := key.GetKeyId()

	// The table form shows the secret apart, with the warning.
	r = ctlAt(t, addr, "key", "create", "--org", "acme", "--scope", "partner").ok(t)
	matchLines(t, r.stdout,
		`KEY ID            ORG   SCOPES   DESCRIPTION  CREATED               REVOKED`,
		`[0-9a-f]{16}  acme  partner  -            `+rfc3339UTC+`  -`,
		``,
		`Secret \(shown only once; Kurier keeps nothing but its hash, so store it now\):`,
		``,
		`    kur_[0-9a-f]{16}_[A-Za-z0-9_-]+`,
		``,
	)
	second := strings.Fields(lines(r.stdout)[1])[0]

	r = ctlAt(t, addr, "key", "list", "--org", "acme").ok(t)
	if strings.Contains(r.stdout, "kur_") || strings.Contains(r.stdout, secret) {
		t.Errorf("key list shows a secret:\n%s", r.stdout)
	}
	if !strings.HasPrefix(r.stdout, "KEY ID            ORG   SCOPES          DESCRIPTION    CREATED               REVOKED\n") {
		t.Errorf("key list header:\n%s", r.stdout)
	}
	rows := map[string]string{}
	for _, l := range lines(r.stdout)[1:] {
		rows[strings.Fields(l)[0]] = l
	}
	if len(rows) != 2 {
		t.Fatalf("key list has %d rows, want 2:\n%s", len(rows), r.stdout)
	}
	if !regexp.MustCompile(`^` + id + `  acme  ingest,changes  ERP connector  ` + rfc3339UTC + `  -$`).MatchString(rows[id]) {
		t.Errorf("row of %s = %q", id, rows[id])
	}
	if !regexp.MustCompile(`^` + second + `  acme  partner         -              ` + rfc3339UTC + `  -$`).MatchString(rows[second]) {
		t.Errorf("row of %s = %q", second, rows[second])
	}

	r = ctlAt(t, addr, "key", "list", "--org", "acme", "-o", "json").ok(t)
	if strings.Contains(r.stdout, "kur_") {
		t.Errorf("key list -o json shows a secret:\n%s", r.stdout)
	}
	if keys := unmarshal[adminv1.ListKeysResponse](t, r.stdout).GetKeys(); len(keys) != 2 {
		t.Errorf("key list -o json has %d keys, want 2", len(keys))
	}

	r = ctlAt(t, addr, "key", "revoke", id).ok(t)
	matchLines(t, r.stdout,
		`KEY ID            ORG   SCOPES          DESCRIPTION    CREATED               REVOKED`,
		id+`  acme  ingest,changes  ERP connector  `+rfc3339UTC+`  `+rfc3339UTC,
	)
	r = ctlAt(t, addr, "key", "list", "--org", "acme", "-o", "json").ok(t)
	for _, k := range unmarshal[adminv1.ListKeysResponse](t, r.stdout).GetKeys() {
		if revoked := k.GetRevokeTime() != nil; revoked != (k.GetKeyId() == id) {
			t.Errorf("key %s revoked = %v", k.GetKeyId(), revoked)
		}
	}

	ctlAt(t, addr, "key", "revoke", "0123456789abcdef").fails(t, 1, `key "0123456789abcdef" not found`)
	ctlAt(t, addr, "key", "list", "--org", "nope").fails(t, 1, `org "nope" not found`)
	ctlAt(t, addr, "key", "create", "--org", "nope", "--scope", "ingest").fails(t, 1, `org "nope" not found`)
}

func TestAuth(t *testing.T) {
	addr := startAdmin(t)

	ctl(t, "--server", addr, "--token", "wrong-token-0123456789", "org", "list").
		fails(t, 1, "kurierctl: missing or wrong admin token", "hint: set KURIER_ADMIN_TOKEN or --token")

	ctl(t, "--server", addr, "org", "list").
		fails(t, 2, "no admin token", "KURIER_ADMIN_TOKEN", "--token", "./kurier-data/admin-token")

	// The environment supplies server and token.
	t.Setenv("KURIER_ADMIN_SERVER", addr)
	t.Setenv("KURIER_ADMIN_TOKEN", testToken)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"org", "list", "-o", "json"}, &out, &errOut); code != 0 {
		t.Fatalf("with the environment: exit %d: %s", code, errOut.String())
	}
	if strings.TrimSpace(out.String()) != "{}" {
		t.Errorf("with the environment: %q", out.String())
	}
}

func TestUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctl(t, "--server", addr, "--token", testToken, "--timeout", "5s", "org", "list").
		fails(t, 1, "connection refused", "hint: is the admin service running at "+addr)
}

func TestUsageErrors(t *testing.T) {
	tok := []string{"--token", testToken, "--server", "127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"no command given", "kurierctl org create <org-id>"}},
		{[]string{"frob"}, []string{`unknown command "frob"`}},
		{[]string{"org"}, []string{"org needs a subcommand", "kurierctl org list"}},
		{[]string{"org", "frob"}, []string{`unknown command "org frob"`}},
		{[]string{"org", "get"}, []string{"org get needs <org-id>", "Usage: kurierctl org get <org-id>"}},
		{[]string{"org", "get", "a", "b"}, []string{`org get takes only <org-id>, got also "b"`}},
		{[]string{"org", "list", "x"}, []string{`org list takes no arguments, got "x"`}},
		{[]string{"org", "create", "acme", "--nam", "x"}, []string{"flag provided but not defined: -nam"}},
		{[]string{"org", "list", "-o", "yaml"}, []string{`--output must be table or json, not "yaml"`}},
		{[]string{"org", "list", "--timeout", "0s"}, []string{"--timeout must be positive"}},
		{[]string{"key", "create", "--scope", "ingest"}, []string{"key create needs --org <org-id>"}},
		{[]string{"key", "create", "--org", "acme"}, []string{"key create needs --scope; allowed: ingest, changes, partner, addressbook"}},
		{[]string{"key", "create", "--org", "acme", "--scope", "ingest,bogus"},
			[]string{`unknown scope "bogus"; allowed: ingest, changes, partner, addressbook`}},
		{[]string{"key", "create", "--org", "acme", "--scope", "unspecified"}, []string{`unknown scope "unspecified"`}},
		{[]string{"key", "list"}, []string{"key list needs --org <org-id>"}},
		{[]string{"key", "revoke"}, []string{"key revoke needs <key-id>"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ctl(t, append(append([]string{}, tok...), tc.args...)...).fails(t, 2, tc.want...)
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	r := ctl(t, "help").ok(t)
	for _, want := range []string{"kurierctl key create --org <org-id> --scope", "KURIER_ADMIN_SERVER", "-o, --output"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q:\n%s", want, r.stdout)
		}
	}
	if r2 := ctl(t, "-h").ok(t); r2.stdout != r.stdout {
		t.Errorf("-h differs from help:\n%s", r2.stdout)
	}

	// Help never echoes the token as a flag default.
	r = ctl(t, "--token", testToken, "key", "create", "-h").ok(t)
	if strings.Contains(r.stdout, testToken) {
		t.Errorf("help shows the token:\n%s", r.stdout)
	}
	for _, want := range []string{"Usage: kurierctl key create", "--scope scopes", "ingest, changes, partner, addressbook"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("key create -h lacks %q:\n%s", want, r.stdout)
		}
	}

	r = ctl(t, "version").ok(t)
	if r.stdout != "kurierctl dev\n" {
		t.Errorf("version = %q", r.stdout)
	}
}
