package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/admin"
	"kurier.dev/services/admin/admintest"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

const testToken = "test-admin-token-0123456789"

// rfc3339UTC is how tables show times.
const rfc3339UTC = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`

// startAdmin runs an embedded JetStream server and the real admin gRPC
// service on a free port, and returns the service's address.
func startAdmin(t *testing.T) string {
	t.Helper()
	addr, _ := startAdminBus(t)
	return addr
}

// startAdminBus is startAdmin that also returns the bus connection, for
// tests that put records where the admin service reads them.
func startAdminBus(t *testing.T) (string, *jet.Conn) {
	t.Helper()
	return serveAdmin(t, nil)
}

// serveAdmin is startAdminBus with the TLS the server speaks, if any.
func serveAdmin(t *testing.T, tc *tls.Config) (string, *jet.Conn) {
	t.Helper()
	return admintest.Serve(t, admin.Config{Token: testToken, Limits: bus.DefaultLimits(), TLS: tc})
}

type result struct {
	code           int
	stdout, stderr string
}

// ctl runs kurierctl with exactly args, with no token or server from the
// environment of whoever runs the tests.
func ctl(t *testing.T, args ...string) result {
	t.Helper()
	return ctlIn(t, strings.NewReader(""), args...)
}

// ctlIn is ctl with stdin.
func ctlIn(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	t.Setenv("KURIER_ADMIN_TOKEN", "")
	t.Setenv("KURIER_ADMIN_SERVER", "")
	t.Setenv("KURIER_CA", "")
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, stdin, &out, &errOut)
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

// emptyList checks that r printed a JSON document whose list field is
// there and empty, and nothing on stderr.
func emptyList(t *testing.T, r result, field string) {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || string(doc[field]) != "[]" || r.stderr != "" {
		t.Errorf("empty list: stdout %q (want %q: []), stderr %q", r.stdout, field, r.stderr)
	}
}

// Empty lists print as the lists of their answers, empty, so that a
// script reads them as it reads full ones.
func TestEmptyListsJSON(t *testing.T) {
	addr := startAdmin(t)
	emptyList(t, ctlAt(t, addr, "org", "list", "-o", "json").ok(t), "orgs")
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	for _, c := range []struct {
		field string
		args  []string
	}{
		{"keys", []string{"key", "list", "--org", "acme"}},
		{"subscriptions", []string{"sub", "list", "--org", "acme"}},
		{"deliveries", []string{"deliveries", "list", "--org", "acme"}},
		{"deliveries", []string{"deliveries", "list", "--org", "acme", "--all"}},
		{"deadLetters", []string{"deadletters", "list", "--org", "acme"}},
		{"queues", []string{"queue", "list", "--org", "acme"}},
		{"persons", []string{"person", "list", "--org", "acme"}},
		{"subscriptions", []string{"apply", "--org", "acme", "-f", "-"}},
	} {
		emptyList(t, ctlAt(t, addr, append(c.args, "-o", "json")...).ok(t), c.field)
	}
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
	emptyList(t, ctlAt(t, addr, "org", "list", "-o", "json").ok(t), "orgs")
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
	if code := run(context.Background(), []string{"org", "list", "-o", "json"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("with the environment: exit %d: %s", code, errOut.String())
	}
	emptyList(t, result{0, out.String(), errOut.String()}, "orgs")
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
	payloadSub := []string{"sub", "create", "--org", "acme", "--system", "erp", "--type", "5", "--url", "https://example.com/", "--mode", "payload"}
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
		{[]string{"org", "list", "-o", "yaml"}, []string{`--output must be table, json or value=<field>, not "yaml"`}},
		{[]string{"org", "list", "-o", "value="}, []string{"--output value= needs a field, such as value=secret"}},
		{[]string{"receive", "--count", "-1", "127.0.0.1:0"}, []string{"--count must not be negative, not -1"}},
		{[]string{"org", "list", "--timeout", "0s"}, []string{"--timeout must be positive"}},
		{[]string{"key", "create", "--scope", "ingest"}, []string{"key create needs --org <org-id>"}},
		{[]string{"key", "create", "--org", "acme"}, []string{"key create needs --scope; allowed: ingest, changes, partner, addressbook"}},
		{[]string{"key", "create", "--org", "acme", "--scope", "ingest,bogus"},
			[]string{`unknown scope "bogus"; allowed: ingest, changes, partner, addressbook`}},
		{[]string{"key", "create", "--org", "acme", "--scope", "unspecified"}, []string{`unknown scope "unspecified"`}},
		{[]string{"key", "list"}, []string{"key list needs --org <org-id>"}},
		{[]string{"key", "revoke"}, []string{"key revoke needs <key-id>"}},
		{[]string{"sub"}, []string{"sub needs a subcommand", "kurierctl sub create --org <org-id>", "kurierctl sub deactivate <subscription-id>"}},
		{[]string{"sub", "create", "--system", "shop", "--type", "5", "--url", "https://example.com/"}, []string{"sub create needs --org <org-id>"}},
		{[]string{"sub", "create", "--org", "acme", "--type", "5", "--url", "https://example.com/"}, []string{"sub create needs --system <name>"}},
		{[]string{"sub", "create", "--org", "acme", "--system", "shop", "--url", "https://example.com/"}, []string{"sub create needs --type <types>"}},
		{[]string{"sub", "create", "--org", "acme", "--system", "shop", "--type", "5"}, []string{"sub create needs --url <url>"}},
		{[]string{"sub", "create", "--org", "acme", "--system", "shop", "--type", " , ", "--url", "https://example.com/"}, []string{"no event type given"}},
		{[]string{"sub", "create", "--org", "acme", "--system", "shop", "--type", "5", "--url", "https://example.com/", "--mode", "push"},
			[]string{`unknown mode "push"; allowed: ping, payload, queue`}},
		{[]string{"sub", "get"}, []string{"sub get needs <subscription-id>"}},
		{[]string{"sub", "list"}, []string{"sub list needs --org <org-id>"}},
		{[]string{"sub", "update", "0123456789abcdef0123"}, []string{"sub update needs at least one of --system, --name, --type, --url"}},
		{[]string{"sub", "update", "--name", "x"}, []string{"sub update needs <subscription-id>"}},
		{[]string{"sub", "activate"}, []string{"sub activate needs <subscription-id>"}},
		{[]string{"sub", "delete", "a", "b"}, []string{`sub delete takes only <subscription-id>, got also "b"`}},
		{[]string{"apply", "-f", "x.csv"}, []string{"apply needs --org <org-id>"}},
		{[]string{"apply", "--org", "acme"}, []string{"apply needs -f <file>, or -f - for standard input"}},
		{[]string{"apply", "--org", "acme", "-f", "x.csv", "extra"}, []string{`apply takes no arguments, got "extra"`}},
		{[]string{"deliveries"}, []string{"deliveries needs a subcommand", "kurierctl deliveries tail --org <org-id>"}},
		{[]string{"deliveries", "list"}, []string{"deliveries list needs --org <org-id>"}},
		{[]string{"deliveries", "list", "--org", "acme", "--limit", "1001"}, []string{"--limit must be 1 to 1000, not 1001"}},
		{[]string{"deliveries", "list", "--org", "acme", "--since", "yesterday"},
			[]string{`"yesterday" is neither a span such as 30m, 12h or 7d nor an RFC 3339 time`}},
		{[]string{"deliveries", "list", "--org", "acme", "--since", "-1h"}, []string{`"-1h" is neither a span`}},
		{[]string{"deliveries", "tail"}, []string{"deliveries tail needs --org <org-id>"}},
		{[]string{"deliveries", "list", "--org", "acme", "--outcome", "failed"},
			[]string{`--outcome must be delivered, retry, dead, disabled, dropped or test, not "failed"`}},
		{[]string{"deliveries", "tail", "--org", "acme", "--outcome", "ok"}, []string{`--outcome must be delivered, retry, dead, disabled, dropped or test, not "ok"`}},
		{[]string{"deliveries", "list", "--org", "acme", "--event", " "}, []string{`invalid value " " for flag -event: needs an event id`}},
		{[]string{"deliveries", "list", "--org", "acme", "--until", "tomorrow"}, []string{`invalid value "tomorrow" for flag -until: "tomorrow" is neither a span`}},
		{[]string{"deliveries", "list", "--org", "acme", "--since", "2025-01-31T08:00:00Z", "--until", "2025-01-31T07:00:00Z"},
			[]string{"--until 2025-01-31T07:00:00Z is not after --since 2025-01-31T08:00:00Z"}},
		{[]string{"person", "book"}, []string{"person book needs --org <org-id>"}},
		{[]string{"person", "book", "--org", "acme", "x"}, []string{`person book takes no arguments, got "x"`}},
		{[]string{"deliveries", "export"}, []string{"deliveries export needs --org <org-id>"}},
		{[]string{"deliveries", "export", "--org", "acme", "--format", "csv"}, []string{`--format must be jsonl, the only export format for now, not "csv"`}},
		{[]string{"deliveries", "export", "--org", "acme", "-f", ""}, []string{"-f needs a file name, or - for standard output"}},
		{append(payloadSub, "--table", "Auftrag", "--mode", "ping"), []string{"--table is a setting of payload subscriptions; add --mode payload"}},
		{append(payloadSub, "--attr", "novalue"), []string{`invalid value "novalue" for flag -attr: "novalue" is not name=value`}},
		{append(payloadSub, "--secret-attr", "=x"), []string{`"=x" is not name=value`}},
		{append(payloadSub, "--header", "X-Key abc"), []string{`"X-Key abc" is not "Name: value"`}},
		{append(payloadSub, "--format", "xml"), []string{`unknown format "xml"; allowed: standard, flat`}},
		{append(payloadSub, "--retry", "0,5x"), []string{`"5x" is not a delay such as 0, 5s, 5m, 2h or 1d`}},
		{append(payloadSub, "--max-in-flight", "many"), []string{`"many" is not a number`}},
		{append(payloadSub, "--timeout", "soon"), []string{`"soon" is not a duration such as 15s`}},
		{append(payloadSub, "--ordered", "--max-in-flight", "5"), []string{"--max-in-flight 5 contradicts --ordered"}},
		{append([]string{"--timeout", "0s"}, append(payloadSub, "--timeout", "15s")...), []string{"--timeout must be positive"}},
		{[]string{"sub", "update", "0123456789abcdef0123", "--max-in-flight", "3", "--ordered"}, []string{"--max-in-flight 3 contradicts --ordered"}},
		{[]string{"sub", "rotate-secret"}, []string{"sub rotate-secret needs <subscription-id>"}},
		{[]string{"sub", "preview"}, []string{"sub preview needs <subscription-id>"}},
		{[]string{"deadletters"}, []string{"deadletters needs a subcommand", "kurierctl deadletters redeliver --sub <subscription-id>"}},
		{[]string{"deadletters", "list"}, []string{"deadletters list needs --org <org-id>"}},
		{[]string{"deadletters", "list", "--org", "acme", "--limit", "-1"}, []string{"--limit must be 1 to 1000, not -1"}},
		{[]string{"deadletters", "redeliver", "--all"}, []string{"deadletters redeliver needs --sub <subscription-id>"}},
		{[]string{"deadletters", "redeliver", "--sub", "0123456789abcdef0123"}, []string{"deadletters redeliver needs --id <delivery-id>, --all or --since <time>"}},
		{[]string{"deadletters", "redeliver", "--sub", "0123456789abcdef0123", "--id", "msg_1", "--all"}, []string{"--id and --all exclude each other"}},
		{[]string{"deadletters", "redeliver", "--sub", "0123456789abcdef0123", "--all", "--since", "1h"}, []string{"--all and --since exclude each other"}},
		{[]string{"deadletters", "redeliver", "--sub", "0123456789abcdef0123", "--id", "msg_1", "--until", "1h"}, []string{"--until needs --since"}},
		{[]string{"deadletters", "redeliver", "--sub", "0123456789abcdef0123", "--since", "soon"}, []string{`"soon" is neither a span`}},
		{[]string{"completion"}, []string{"completion needs <shell>", "Usage: kurierctl completion bash|zsh|fish"}},
		{[]string{"completion", "tcsh"}, []string{`unknown shell "tcsh"; allowed: bash, zsh, fish`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ctl(t, append(append([]string{}, tok...), tc.args...)...).fails(t, 2, tc.want...)
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	r := ctl(t, "help").ok(t)
	for _, want := range []string{"kurierctl key create --org <org-id> --scope", "kurierctl sub create --org <org-id>",
		"kurierctl apply --org <org-id> -f <file>|-", "kurierctl deliveries tail --org <org-id>", "KURIER_ADMIN_SERVER", "-o, --output",
		"kurierctl sub rotate-secret <subscription-id>", "kurierctl sub preview <subscription-id>", "kurierctl deliveries export --org <org-id>",
		"kurierctl deadletters list --org <org-id>", "kurierctl deadletters redeliver --sub <subscription-id>"} {
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
	r = ctl(t, "sub", "create", "-h").ok(t)
	for _, want := range []string{"\n  --mode mode ", "\n  --attr name=value ", "\n  --secret-attr name=value ", "\n  --header header ",
		"\n  --timeout duration ", "the global --timeout goes before the command words here", "\n  --ordered  ", "\n  --retry delays ",
		"standard or flat", "\n  --max-in-flight N "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("sub create -h lacks %q:\n%s", want, r.stdout)
		}
	}
	r = ctl(t, "sub", "update", "-h").ok(t)
	for _, want := range []string{`"" removes all`, `"" restores the default`, `"" sends all`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("sub update -h lacks %q:\n%s", want, r.stdout)
		}
	}
	r = ctl(t, "apply", "-h").ok(t)
	for _, want := range []string{"Usage: kurierctl apply --org <org-id> -f <file>|-", "\n  -f file ", "\n  --org org-id ", "API_NOTIFICATION;System;Ereignis;URL;Inaktiv"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("apply -h lacks %q:\n%s", want, r.stdout)
		}
	}

	r = ctl(t, "version").ok(t)
	if r.stdout != "kurierctl dev\n" {
		t.Errorf("version = %q", r.stdout)
	}
}

// subID matches a subscription id.
const subID = `[0-9a-f]{20}`

func TestSubLifecycle(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)

	// Types comma-separated and repeated; Collmex code 5 is invoice.changed
	// and counts once, 3 is salesorder.changed.
	r := ctlAt(t, addr, "sub", "create", "--mode", "ping", "--org", "acme", "--system", "shop", "--type", "invoice.changed,5", "--type", "3",
		"--url", "https://example.com/hook", "--name", "Shop sync").ok(t)
	matchLines(t, r.stdout,
		`ID                    SYSTEM  NAME       TYPES                               MODE  URL                       ACTIVE  UNACKED  LAST PING  PENDING SINCE`,
		subID+`  shop    Shop sync  invoice\.changed,salesorder\.changed  ping  https://example\.com/hook  yes     0        -          -`,
		``,
		`Signing secret \(shown only once; Kurier signs its requests to the URL with it, so store it now\):`,
		``,
		`    whsec_[A-Za-z0-9+/]+=*`,
		``,
	)
	id := strings.Fields(lines(r.stdout)[1])[0]

	r = ctlAt(t, addr, "sub", "create", "--mode", "ping", "--org", "acme", "--system", "crm", "--type", "address.changed",
		"--url", "http://crm.local/ping", "--inactive", "-o", "json").ok(t)
	created := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout)
	crm := created.GetSubscription()
	if !strings.HasPrefix(created.GetSigningSecret(), "whsec_") || crm.GetOrgId() != "acme" || crm.GetSystem() != "crm" ||
		crm.GetActive() || crm.GetMode() != adminv1.DeliveryMode_DELIVERY_MODE_PING || crm.GetUrl() != "http://crm.local/ping" ||
		strings.Join(crm.GetEventTypes(), ",") != "address.changed" || !regexp.MustCompile(`^`+subID+`$`).MatchString(crm.GetSubscriptionId()) {
		t.Errorf("sub create -o json = %v", created)
	}

	r = ctlAt(t, addr, "sub", "get", id).ok(t)
	matchLines(t, r.stdout,
		`ID                    SYSTEM  NAME       TYPES                               MODE  URL                       ACTIVE  UNACKED  LAST PING  PENDING SINCE`,
		id+`  shop    Shop sync  invoice\.changed,salesorder\.changed  ping  https://example\.com/hook  yes     0        -          -`,
	)
	if r.stdout == "" || strings.Contains(r.stdout, "whsec_") {
		t.Errorf("sub get shows the secret:\n%s", r.stdout)
	}
	r = ctlAt(t, addr, "sub", "get", id, "-o", "json").ok(t)
	if got := unmarshal[adminv1.Subscription](t, r.stdout); got.GetSubscriptionId() != id || got.GetName() != "Shop sync" || !got.GetActive() {
		t.Errorf("sub get -o json = %v", got)
	}

	r = ctlAt(t, addr, "sub", "list", "--org", "acme").ok(t)
	if got := lines(r.stdout)[0]; got != "ID                    SYSTEM  NAME       TYPES                               MODE  URL                       ACTIVE  UNACKED  LAST PING  PENDING SINCE" {
		t.Errorf("sub list header = %q", got)
	}
	rows := map[string]string{}
	for _, l := range lines(r.stdout)[1:] {
		rows[strings.Fields(l)[0]] = l
	}
	if len(rows) != 2 {
		t.Fatalf("sub list has %d rows, want 2:\n%s", len(rows), r.stdout)
	}
	if want := id + "  shop    Shop sync  invoice.changed,salesorder.changed  ping  https://example.com/hook  yes     0        -          -"; rows[id] != want {
		t.Errorf("row of %s =\n%q, want\n%q", id, rows[id], want)
	}
	if want := crm.GetSubscriptionId() + "  crm     -          address.changed                     ping  http://crm.local/ping     no      0        -          -"; rows[crm.GetSubscriptionId()] != want {
		t.Errorf("row of crm =\n%q, want\n%q", rows[crm.GetSubscriptionId()], want)
	}
	r = ctlAt(t, addr, "sub", "list", "--org", "acme", "-o", "json").ok(t)
	if subs := unmarshal[adminv1.ListSubscriptionsResponse](t, r.stdout).GetSubscriptions(); len(subs) != 2 {
		t.Errorf("sub list -o json has %d subscriptions, want 2", len(subs))
	}

	// A system has one ping subscription per type.
	ctlAt(t, addr, "sub", "create", "--mode", "ping", "--org", "acme", "--system", "shop", "--type", "5", "--url", "https://example.com/other").
		fails(t, 1, `kurierctl: system "shop" already has a ping subscription for invoice.changed`)

	// Only the flags given change: the system stays, the name is cleared.
	r = ctlAt(t, addr, "sub", "update", id, "--name", "", "--type", "9", "--url", "https://example.com/v2").ok(t)
	matchLines(t, r.stdout,
		`ID                    SYSTEM  NAME  TYPES            MODE  URL                     ACTIVE  UNACKED  LAST PING  PENDING SINCE`,
		id+`  shop    -     address\.changed  ping  https://example\.com/v2  yes     0        -          -`,
	)
	r = ctlAt(t, addr, "sub", "update", id, "--system", "erp", "-o", "json").ok(t)
	if got := unmarshal[adminv1.Subscription](t, r.stdout); got.GetSystem() != "erp" || got.GetName() != "" ||
		strings.Join(got.GetEventTypes(), ",") != "address.changed" || got.GetUrl() != "https://example.com/v2" {
		t.Errorf("sub update --system = %v", got)
	}
	// The update freed shop's invoice.changed; crm's address.changed is taken.
	ctlAt(t, addr, "sub", "create", "--mode", "ping", "--org", "acme", "--system", "shop", "--type", "invoice.changed", "--url", "https://example.com/new", "-o", "json").ok(t)
	ctlAt(t, addr, "sub", "update", id, "--system", "crm").fails(t, 1, `system "crm" already has a ping subscription for address.changed`)

	r = ctlAt(t, addr, "sub", "deactivate", id).ok(t)
	matchLines(t, r.stdout,
		`ID                    SYSTEM  NAME  TYPES            MODE  URL                     ACTIVE  UNACKED  LAST PING  PENDING SINCE`,
		id+`  erp     -     address\.changed  ping  https://example\.com/v2  no      0        -          -`,
	)
	r = ctlAt(t, addr, "sub", "activate", id).ok(t)
	if !strings.Contains(lines(r.stdout)[1], "  https://example.com/v2  yes     0  ") {
		t.Errorf("sub activate:\n%s", r.stdout)
	}
	r = ctlAt(t, addr, "sub", "activate", crm.GetSubscriptionId(), "-o", "json").ok(t)
	if got := unmarshal[adminv1.Subscription](t, r.stdout); !got.GetActive() || got.GetSubscriptionId() != crm.GetSubscriptionId() {
		t.Errorf("sub activate -o json = %v", got)
	}

	r = ctlAt(t, addr, "sub", "delete", id).ok(t)
	if r.stdout != "Deleted subscription "+id+".\n" {
		t.Errorf("sub delete printed %q", r.stdout)
	}
	r = ctlAt(t, addr, "sub", "delete", crm.GetSubscriptionId(), "-o", "json").ok(t)
	if strings.TrimSpace(r.stdout) != "{}" {
		t.Errorf("sub delete -o json printed %q", r.stdout)
	}
	ctlAt(t, addr, "sub", "get", id).fails(t, 1, "kurierctl: subscription not found")
	ctlAt(t, addr, "sub", "delete", id).fails(t, 1, "subscription not found")
	ctlAt(t, addr, "sub", "activate", id).fails(t, 1, "subscription not found")
	ctlAt(t, addr, "sub", "get", "nope").fails(t, 1, "subscription_id: must be")
	ctlAt(t, addr, "sub", "update", id, "--name", "x").fails(t, 1, "subscription not found")
	ctlAt(t, addr, "sub", "list", "--org", "nope").fails(t, 1, `org "nope" not found`)
	ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "shop", "--type", "nonsense", "--url", "https://example.com/").
		fails(t, 1, `event_types: "nonsense" is neither a Collmex event code`)
	ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "hub", "--type", "5", "--mode", "queue").
		fails(t, 2, "--mode queue needs it")

	ctlAt(t, addr, "org", "create", "beta").ok(t)
	r = ctlAt(t, addr, "sub", "list", "--org", "beta").ok(t)
	if r.stdout != "" || !strings.Contains(r.stderr, "kurierctl sub create --org beta") {
		t.Errorf("empty sub list: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	emptyList(t, ctlAt(t, addr, "sub", "list", "--org", "beta", "-o", "json").ok(t), "subscriptions")
}

// skipIfUnimplemented skips while the server answers probe, a call of
// rpc, with Unimplemented. Probes should name nothing that exists, so
// that an implemented server turns them away without changing anything.
func skipIfUnimplemented(t *testing.T, addr, rpc string, probe func(context.Context, adminv1.AdminServiceClient) error) {
	t.Helper()
	conn, err := dial(globals{server: addr, token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := probe(ctx, adminv1.NewAdminServiceClient(conn)); status.Code(err) == codes.Unimplemented {
		t.Skipf("the admin server does not implement %s yet: %v", rpc, err)
	}
}

func skipIfApplyUnimplemented(t *testing.T, addr string) {
	t.Helper()
	skipIfUnimplemented(t, addr, "ApplyApiNotification", func(ctx context.Context, api adminv1.AdminServiceClient) error {
		_, err := api.ApplyApiNotification(ctx, &adminv1.ApplyApiNotificationRequest{})
		return err
	})
}

func TestApply(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	skipIfApplyUnimplemented(t, addr)

	dir := t.TempDir()
	file := filepath.Join(dir, "notifications.csv")
	if err := os.WriteFile(file, []byte("API_NOTIFICATION;shop;5;https://example.com/hook;0\n"+
		"API_NOTIFICATION;shop;3;https://example.com/hook;1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Each new subscription's signing secret is shown, once, as sub
	// create shows it.
	r := ctlAt(t, addr, "apply", "--org", "acme", "-f", file).ok(t)
	matchLines(t, r.stdout,
		`created 2, updated 0, deleted 0, unchanged 0`,
		``,
		`ID                    SYSTEM  NAME  TYPES               MODE  URL                       ACTIVE  UNACKED  LAST PING  PENDING SINCE`,
		subID+`  shop    shop  invoice\.changed     ping  https://example\.com/hook  yes     0        -          -`,
		subID+`  shop    shop  salesorder\.changed  ping  https://example\.com/hook  no      0        -          -`,
		``,
		`Signing secret of `+subID+` \(shown only once; Kurier signs its requests to the URL with it, so store it now\):`,
		``,
		`    whsec_[A-Za-z0-9+/]+=*`,
		``,
		`Signing secret of `+subID+` \(shown only once; Kurier signs its requests to the URL with it, so store it now\):`,
		``,
		`    whsec_[A-Za-z0-9+/]+=*`,
		``,
	)
	invoice := strings.Fields(lines(r.stdout)[3])[0]
	salesorder := strings.Fields(lines(r.stdout)[4])[0]
	if !strings.Contains(lines(r.stdout)[6], invoice) || !strings.Contains(lines(r.stdout)[10], salesorder) {
		t.Errorf("the secrets are not in the order of the subscriptions:\n%s", r.stdout)
	}

	// The same file again changes nothing.
	r = ctlAt(t, addr, "apply", "--org", "acme", "-f="+file).ok(t)
	if got := lines(r.stdout)[0]; got != "created 0, updated 0, deleted 0, unchanged 2" || strings.Contains(r.stdout, "whsec_") {
		t.Errorf("second apply:\n%s", r.stdout)
	}

	// Standard input, CRLF line ends: Inaktiv 2 deletes, a new URL updates.
	r = ctlIn(t, strings.NewReader("API_NOTIFICATION;shop;3;https://example.com/hook;2\r\nAPI_NOTIFICATION;shop;5;https://example.com/v2;0\r\n"),
		"--server", addr, "--token", testToken, "apply", "--org", "acme", "-f", "-").ok(t)
	matchLines(t, r.stdout,
		`created 0, updated 1, deleted 1, unchanged 0`,
		``,
		`ID                    SYSTEM  NAME  TYPES            MODE  URL                     ACTIVE  UNACKED  LAST PING  PENDING SINCE`,
		invoice+`  shop    shop  invoice\.changed  ping  https://example\.com/v2  yes     0        -          -`,
	)

	// A bad line is reported as the server words it, and nothing of the
	// file is applied.
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("API_NOTIFICATION;erp;7;https://example.com/erp;0\nAPI_NOTIFICATION;erp;8;https://example.com/erp;3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctlAt(t, addr, "apply", "--org", "acme", "-f", bad).fails(t, 1, "kurierctl: records: line 2: Inaktiv: ")
	r = ctlAt(t, addr, "sub", "list", "--org", "acme", "-o", "json").ok(t)
	if subs := unmarshal[adminv1.ListSubscriptionsResponse](t, r.stdout).GetSubscriptions(); len(subs) != 1 || subs[0].GetSubscriptionId() != invoice {
		t.Errorf("after a rejected file, subscriptions = %v", subs)
	}

	// A file that is not UTF-8 is read as ISO-8859-1, as Collmex writes it.
	latin1 := filepath.Join(dir, "latin1.csv")
	if err := os.WriteFile(latin1, []byte("API_NOTIFICATION;B\xfcrosoft;9;https://example.com/b;0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = ctlAt(t, addr, "apply", "--org", "acme", "-f", latin1, "-o", "json").ok(t)
	applied := unmarshal[adminv1.ApplyApiNotificationResponse](t, r.stdout)
	if applied.GetCreated() != 1 || len(applied.GetSubscriptions()) != 1 || applied.GetSubscriptions()[0].GetSystem() != "Bürosoft" ||
		strings.Join(applied.GetSubscriptions()[0].GetEventTypes(), ",") != "address.changed" {
		t.Errorf("apply of an ISO-8859-1 file = %v", applied)
	}
	if secrets := applied.GetSigningSecrets(); len(secrets) != 1 || !strings.HasPrefix(secrets[applied.GetSubscriptions()[0].GetSubscriptionId()], "whsec_") {
		t.Errorf("apply -o json: signing secrets %v", secrets)
	}

	ctlAt(t, addr, "apply", "--org", "acme", "-f", filepath.Join(dir, "missing.csv")).fails(t, 1, "missing.csv: no such file")
	ctlAt(t, addr, "apply", "--org", "nope", "-f", file).fails(t, 1, `org "nope" not found`)
}

// logDeliveries puts attempts into the delivery log as the dispatcher
// would, one second apart from at.
func logDeliveries(t *testing.T, conn *jet.Conn, at time.Time, recs ...dlog.Record) {
	t.Helper()
	for i, rec := range recs {
		rec.Time = at.Add(time.Duration(i) * time.Second)
		m, err := dlog.Message(rec)
		if err == nil {
			_, err = conn.JS.PublishMsg(context.Background(), m)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// attempts are three logged pings of sub: answered, unanswered, failed.
func attempts(sub string) []dlog.Record {
	ping := dlog.Record{Org: "acme", Subscription: sub, System: "shop", EventTypes: []string{"invoice.changed"},
		Mode: "ping", URL: "https://example.com/hook"}
	ok, refused, failed := ping, ping, ping
	ok.Status, ok.LatencyMS, ok.Unacked = 200, 12.4, 1
	refused.Error, refused.LatencyMS, refused.Unacked = "connection refused", 0.3, 2
	failed.Status, failed.LatencyMS, failed.Unacked = 503, 1500.6, 3
	return []dlog.Record{ok, refused, failed}
}

func TestDeliveriesList(t *testing.T) {
	addr, conn := startAdminBus(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	r := ctlAt(t, addr, "sub", "create", "--mode", "ping", "--org", "acme", "--system", "shop", "--type", "5", "--url", "https://example.com/hook", "-o", "json").ok(t)
	sub := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription().GetSubscriptionId()

	// Nothing logged yet: nothing on stdout, a hint on stderr.
	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme").ok(t)
	if r.stdout != "" || !strings.Contains(r.stderr, "No deliveries logged for org acme") ||
		!strings.Contains(r.stderr, "kurierctl deliveries tail --org acme") {
		t.Errorf("empty deliveries list: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	emptyList(t, ctlAt(t, addr, "deliveries", "list", "--org", "acme", "-o", "json").ok(t), "deliveries")

	logDeliveries(t, conn, time.Date(2025, 1, 31, 8, 0, 0, 0, time.UTC), attempts(sub)...)
	header := `TIME                  SUBSCRIPTION          SYSTEM  TYPES            EVENT  STATUS              LATENCY  UNACKED  ATTEMPT  OUTCOME  NEXT ATTEMPT`
	rows := []string{
		`2025-01-31T08:00:00Z  ` + sub + `  shop    invoice\.changed  -      200                 12ms     1        -        -        -`,
		`2025-01-31T08:00:01Z  ` + sub + `  shop    invoice\.changed  -      connection refused  0ms      2        -        -        -`,
		`2025-01-31T08:00:02Z  ` + sub + `  shop    invoice\.changed  -      503                 1501ms   3        -        -        -`,
	}
	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme").ok(t)
	matchLines(t, r.stdout, append([]string{header}, rows...)...)
	if r.stderr != "" {
		t.Errorf("deliveries list stderr: %q", r.stderr)
	}
	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme", "--sub", sub, "--since", "1h").ok(t)
	matchLines(t, r.stdout, append([]string{header}, rows...)...)

	// One page, and a note that there is more.
	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme", "--limit", "2").ok(t)
	matchLines(t, r.stdout, header, rows[0], rows[1])
	if !strings.Contains(r.stderr, "--all") {
		t.Errorf("deliveries list --limit 2 does not say there is more: %q", r.stderr)
	}
	// --all follows the pages to the end.
	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme", "--limit", "1", "--all").ok(t)
	matchLines(t, r.stdout, append([]string{header}, rows...)...)
	if r.stderr != "" {
		t.Errorf("deliveries list --all stderr: %q", r.stderr)
	}
	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme", "--limit", "2", "--all", "-o", "json").ok(t)
	all := unmarshal[adminv1.ListDeliveriesResponse](t, r.stdout)
	if ds := all.GetDeliveries(); len(ds) != 3 || all.GetNextPageToken() != "" || ds[0].GetStatusCode() != 200 ||
		ds[1].GetError() != "connection refused" || ds[2].GetUnacked() != 3 {
		t.Errorf("deliveries list --all -o json = %v", all)
	}
	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme", "--limit", "2", "-o", "json").ok(t)
	if page := unmarshal[adminv1.ListDeliveriesResponse](t, r.stdout); len(page.GetDeliveries()) != 2 || page.GetNextPageToken() == "" {
		t.Errorf("deliveries list --limit 2 -o json = %v", page)
	}

	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme", "--since", "2099-01-01T00:00:00Z").ok(t)
	if r.stdout != "" || !strings.Contains(r.stderr, "No deliveries logged for org acme since 2099-01-01T00:00:00Z") {
		t.Errorf("deliveries list --since the future: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	ctlAt(t, addr, "deliveries", "list", "--org", "nope").fails(t, 1, `org "nope" not found`)
	ctlAt(t, addr, "deliveries", "list", "--org", "acme", "--sub", "0123456789abcdef0123").fails(t, 1, "subscription not found")
}

// syncBuffer is a buffer that a test may read while run writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// background is kurierctl running until its context is cancelled.
type background struct {
	cancel      context.CancelFunc
	done        chan int
	out, errOut syncBuffer
}

// ctlBackground starts kurierctl against addr, the way ctlAt runs it.
func ctlBackground(t *testing.T, addr string, args ...string) *background {
	t.Helper()
	t.Setenv("KURIER_ADMIN_TOKEN", "")
	t.Setenv("KURIER_ADMIN_SERVER", "")
	t.Setenv("KURIER_CA", "")
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cancel: cancel, done: make(chan int, 1)}
	args = append([]string{"--server", addr, "--token", testToken}, args...)
	go func() { b.done <- run(ctx, args, nil, &b.out, &b.errOut) }()
	t.Cleanup(func() {
		cancel()
		<-b.done
	})
	return b
}

// running fails the test if kurierctl has already ended.
func (b *background) running(t *testing.T) {
	t.Helper()
	select {
	case code := <-b.done:
		b.done <- code
		t.Fatalf("ended early with exit %d\nstdout:\n%s\nstderr:\n%s", code, b.out.String(), b.errOut.String())
	default:
	}
}

// waitLines waits for stdout to hold n complete lines.
func (b *background) waitLines(t *testing.T, n int) {
	t.Helper()
	natstest.WaitForErr(t, 10*time.Second, fmt.Sprintf("%d lines", n), func() error {
		if strings.Count(b.out.String(), "\n") >= n {
			return nil
		}
		b.running(t)
		return fmt.Errorf("stdout:\n%s\nstderr:\n%s", b.out.String(), b.errOut.String())
	})
}

// stop cancels kurierctl's context and waits for it to return.
func (b *background) stop(t *testing.T) result {
	t.Helper()
	b.cancel()
	select {
	case code := <-b.done:
		b.done <- code // for the cleanup
		return result{code, b.out.String(), b.errOut.String()}
	case <-time.After(10 * time.Second):
		t.Fatal("did not return within 10s of its context being cancelled")
		return result{}
	}
}

func TestDeliveriesTailStops(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)

	b := ctlBackground(t, addr, "deliveries", "tail", "--org", "acme")
	time.Sleep(300 * time.Millisecond)
	b.running(t)
	r := b.stop(t)
	if r.code != 0 {
		t.Fatalf("exit %d after cancel, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	matchLines(t, r.stdout, `TIME                  SUBSCRIPTION          SYSTEM    TYPES            EVENT       STATUS  LATENCY  UNACKED  ATTEMPT  OUTCOME    NEXT ATTEMPT`)
	if r.stderr != "" {
		t.Errorf("stderr: %q", r.stderr)
	}

	// --timeout bounds the wait for the server, not the tail.
	b = ctlBackground(t, addr, "deliveries", "tail", "--org", "acme", "--timeout", "500ms", "-o", "json")
	time.Sleep(time.Second)
	b.running(t)
	if r := b.stop(t); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("tail -o json past --timeout: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// A wrong org or subscription is reported before anything is printed.
	ctlAt(t, addr, "deliveries", "tail", "--org", "nope").fails(t, 1, `org "nope" not found`)
	ctlAt(t, addr, "deliveries", "tail", "--org", "acme", "--sub", "0123456789abcdef0123").fails(t, 1, "subscription not found")
}

func TestDeliveriesTail(t *testing.T) {
	addr, conn := startAdminBus(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	r := ctlAt(t, addr, "sub", "create", "--mode", "ping", "--org", "acme", "--system", "shop", "--type", "5", "--url", "https://example.com/hook", "-o", "json").ok(t)
	sub := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription().GetSubscriptionId()
	at := time.Date(2025, 1, 31, 8, 0, 0, 0, time.UTC)
	recs := attempts(sub)
	logDeliveries(t, conn, at, recs[0])

	// --since brings what is logged already, then new attempts follow.
	table := ctlBackground(t, addr, "deliveries", "tail", "--org", "acme", "--since", "1h")
	js := ctlBackground(t, addr, "deliveries", "tail", "--org", "acme", "--sub", sub, "--since", "1h", "-o", "json")
	table.waitLines(t, 2)
	js.waitLines(t, 1)
	logDeliveries(t, conn, at.Add(time.Second), recs[1:]...)
	// A cell wider than its column widens it for the rows after.
	long := recs[2]
	long.Status, long.Error = 0, `Get "https://example.com/hook": context deadline exceeded`
	logDeliveries(t, conn, at.Add(3*time.Second), long)
	table.waitLines(t, 5)
	js.waitLines(t, 4)

	r = table.stop(t)
	if r.code != 0 {
		t.Fatalf("tail exit %d, want 0\nstderr:\n%s", r.code, r.stderr)
	}
	matchLines(t, r.stdout,
		`TIME                  SUBSCRIPTION          SYSTEM    TYPES            EVENT       STATUS  LATENCY  UNACKED  ATTEMPT  OUTCOME    NEXT ATTEMPT`,
		`2025-01-31T08:00:00Z  `+sub+`  shop      invoice\.changed  -           200     12ms     1        -        -          -`,
		`2025-01-31T08:00:01Z  `+sub+`  shop      invoice\.changed  -           connection refused  0ms      2        -        -          -`,
		`2025-01-31T08:00:02Z  `+sub+`  shop      invoice\.changed  -           503                 1501ms   3        -        -          -`,
		`2025-01-31T08:00:03Z  `+sub+`  shop      invoice\.changed  -           Get "https://example\.com/hook": context deadline exceeded  1501ms   3        -        -          -`,
	)

	r = js.stop(t)
	if r.code != 0 {
		t.Fatalf("tail -o json exit %d, want 0\nstderr:\n%s", r.code, r.stderr)
	}
	got := lines(r.stdout)
	if len(got) != 4 {
		t.Fatalf("tail -o json printed %d lines, want 4:\n%s", len(got), r.stdout)
	}
	for i, l := range got {
		d := unmarshal[adminv1.Delivery](t, l)
		if d.GetSubscriptionId() != sub || !d.GetTime().AsTime().Equal(at.Add(time.Duration(i)*time.Second)) || d.GetUnacked() != uint32(min(i+1, 3)) {
			t.Errorf("line %d = %v", i+1, d)
		}
	}
}

// createPayload creates a payload subscription of acme with every payload
// flag, and answers what the server made of it.
func createPayload(t *testing.T, addr string) *adminv1.CreateSubscriptionResponse {
	t.Helper()
	r := ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "erp", "--type", "invoice.changed,3",
		"--url", "https://example.com/hook?src=kurier", "--mode", "payload", "--name", "ERP webhook",
		"--table", "Auftrag", "--field", "number,total", "--field", "customer,number", "--conditions", "status='open'",
		"--attr", "mandant=7", "--secret-attr", "token=s3=cr,et", "--attr", "lang=de",
		"--header", "X-Api-Key: abc:def", "--header", "X-Tenant:7",
		"--timeout", "20s", "--format", "flat", "--ordered=false", "--max-in-flight", "5", "--retry", "0,5s, 5m", "--retry", "1d",
		"-o", "json").ok(t)
	return unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout)
}

func TestSubPayload(t *testing.T) {
	addr, conn := startAdminBus(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)

	created := createPayload(t, addr)
	if !strings.HasPrefix(created.GetSigningSecret(), "whsec_") {
		t.Errorf("signing secret = %q", created.GetSigningSecret())
	}
	sub := created.GetSubscription()
	id := sub.GetSubscriptionId()
	want := &adminv1.Subscription{
		OrgId: "acme", System: "erp", Name: "ERP webhook", EventTypes: []string{"invoice.changed", "salesorder.changed"},
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: "https://example.com/hook?src=kurier", Active: true,
		Table: "Auftrag", Fields: []string{"number", "total", "customer"}, Conditions: "status='open'",
		Attributes: []*adminv1.Attribute{{Name: "mandant", Value: "7"}, {Name: "token", Value: "s3=cr,et", Secret: true}, {Name: "lang", Value: "de"}},
		Headers:    []*adminv1.Header{{Name: "X-Api-Key", Value: "abc:def"}, {Name: "X-Tenant", Value: "7"}},
		Timeout:    durationpb.New(20 * time.Second), PayloadFormat: adminv1.PayloadFormat_PAYLOAD_FORMAT_FLAT,
		Ordering: adminv1.Ordering_ORDERING_CONCURRENT, MaxInFlight: 5,
		RetrySchedule: []*durationpb.Duration{durationpb.New(0), durationpb.New(5 * time.Second), durationpb.New(5 * time.Minute), durationpb.New(24 * time.Hour)},
	}
	got := proto.Clone(sub).(*adminv1.Subscription)
	got.SubscriptionId, got.CreateTime, got.UpdateTime = "", nil, nil
	if !proto.Equal(got, want) {
		t.Errorf("sub create -o json =\n%v\nwant\n%v", got, want)
	}
	r := ctlAt(t, addr, "sub", "get", id, "-o", "json").ok(t)
	if got := unmarshal[adminv1.Subscription](t, r.stdout); !proto.Equal(got, sub) {
		t.Errorf("sub get -o json =\n%v\nwant what create answered\n%v", got, sub)
	}

	// The table shows the settings below the row, secret values masked.
	row := id + `  erp     ERP webhook  invoice\.changed,salesorder\.changed  payload  https://example\.com/hook\?src=kurier  yes     -        -          -`
	header := `ID                    SYSTEM  NAME         TYPES                               MODE     URL                                  ACTIVE  UNACKED  LAST PING  PENDING SINCE`
	settings := []string{
		``,
		`TABLE:          Auftrag`,
		`FIELDS:         number,total,customer`,
		`CONDITIONS:     status='open'`,
		`ATTRIBUTES:     mandant=7`,
		`                token=\*\*\*`,
		`                lang=de`,
		`HEADERS:        X-Api-Key: abc:def`,
		`                X-Tenant: 7`,
		`TIMEOUT:        20s`,
		`FORMAT:         flat`,
		`ORDERING:       concurrent`,
		`MAX IN FLIGHT:  5`,
		`RETRY:          0s,5s,5m,24h`,
	}
	r = ctlAt(t, addr, "sub", "get", id).ok(t)
	matchLines(t, r.stdout, append([]string{header, row}, settings...)...)

	// An update sends only the flags given: the rest stays.
	r = ctlAt(t, addr, "sub", "update", id, "--table", "Rechnung", "-o", "json").ok(t)
	updated := unmarshal[adminv1.Subscription](t, r.stdout)
	want = proto.Clone(sub).(*adminv1.Subscription)
	want.Table, want.UpdateTime = "Rechnung", updated.GetUpdateTime()
	if !proto.Equal(updated, want) {
		t.Errorf("sub update --table =\n%v\nwant\n%v", updated, want)
	}
	r = ctlAt(t, addr, "sub", "update", id, "--ordered").ok(t)
	settings[1], settings[11], settings[12] = `TABLE:          Rechnung`, `ORDERING:       ordered`, `MAX IN FLIGHT:  5`
	matchLines(t, r.stdout, append([]string{header, row}, settings...)...)
	// "" empties a list: all fields, no attributes or headers, the default
	// retries.
	r = ctlAt(t, addr, "sub", "update", id, "--field", "", "--attr", "", "--header", "", "--retry", "", "--timeout", "1m", "--format", "standard", "-o", "json").ok(t)
	cleared := unmarshal[adminv1.Subscription](t, r.stdout)
	if len(cleared.GetFields()) != 0 || len(cleared.GetAttributes()) != 0 || len(cleared.GetHeaders()) != 0 || len(cleared.GetRetrySchedule()) != 0 ||
		cleared.GetTimeout().AsDuration() != time.Minute || cleared.GetPayloadFormat() != adminv1.PayloadFormat_PAYLOAD_FORMAT_STANDARD ||
		cleared.GetTable() != "Rechnung" || cleared.GetConditions() != "status='open'" || cleared.GetOrdering() != adminv1.Ordering_ORDERING_ORDERED {
		t.Errorf("sub update clearing the lists = %v", cleared)
	}
	r = ctlAt(t, addr, "sub", "get", id).ok(t)
	for _, want := range []string{"\nFIELDS:         all\n", "\nATTRIBUTES:     -\n", "\nHEADERS:        -\n", "\nTIMEOUT:        1m\n", "\nRETRY:          default\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("sub get after clearing lacks %q:\n%s", want, r.stdout)
		}
	}

	// The server refuses what it does not take, naming the field.
	ctlAt(t, addr, "sub", "update", id, "--header", "Content-Type: text/plain").fails(t, 1, "kurierctl: headers[0].name: Content-Type is set by Kurier")
	ctlAt(t, addr, "sub", "update", id, "--timeout", "2m").fails(t, 1, "kurierctl: timeout: must be from 1s to 1m0s")
	ctlAt(t, addr, "sub", "update", id, "--attr", "event=x").fails(t, 1, "kurierctl: attributes[0].name: event is reserved")
	r = ctlAt(t, addr, "sub", "create", "--mode", "ping", "--org", "acme", "--system", "shop", "--type", "5", "--url", "https://example.com/ping", "-o", "json").ok(t)
	ping := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription().GetSubscriptionId()
	ctlAt(t, addr, "sub", "update", ping, "--table", "Auftrag").fails(t, 1, `kurierctl: update_mask: "table" cannot be updated`)
	// A ping subscription shows no settings block.
	r = ctlAt(t, addr, "sub", "get", ping).ok(t)
	if n := len(lines(r.stdout)); n != 2 {
		t.Errorf("sub get of a ping subscription printed %d lines:\n%s", n, r.stdout)
	}

	// What the dispatcher records of failing deliveries shows too.
	store, err := subs.Open(context.Background(), conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	failing := time.Date(2025, 1, 31, 8, 0, 0, 0, time.UTC)
	if _, _, err := store.UpdateState(context.Background(), id, func(st *subs.PingState) error {
		st.FailingSince = failing
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(context.Background(), id, func(s *subs.Subscription) error {
		s.Active, s.DisabledReason = false, "every delivery failed for 5 days"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r = ctlAt(t, addr, "sub", "get", id).ok(t)
	got2 := lines(r.stdout)
	if tail := strings.Join(got2[len(got2)-2:], "\n"); tail != "FAILING SINCE:  2025-01-31T08:00:00Z\nDISABLED:       every delivery failed for 5 days" {
		t.Errorf("sub get of a failing subscription ends with\n%s", tail)
	}
	r = ctlAt(t, addr, "sub", "get", id, "-o", "json").ok(t)
	if got := unmarshal[adminv1.Subscription](t, r.stdout); !got.GetFailingSince().AsTime().Equal(failing) || got.GetActive() ||
		got.GetDisabledReason() != "every delivery failed for 5 days" {
		t.Errorf("sub get -o json of a failing subscription = %v", got)
	}
}

func TestSubRotateSecret(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	created := createPayload(t, addr)
	id := created.GetSubscription().GetSubscriptionId()

	r := ctlAt(t, addr, "sub", "rotate-secret", id).ok(t)
	matchLines(t, r.stdout,
		`New signing secret \(shown only once; Kurier signs its requests to the URL with it, so store it now\):`,
		``,
		`    whsec_[A-Za-z0-9+/]+=*`,
		``,
		`The previous secret still signs until `+rfc3339UTC+`: requests carry a signature with each until then\.`,
	)
	first := strings.TrimSpace(lines(r.stdout)[2])
	if first == created.GetSigningSecret() {
		t.Errorf("rotate-secret printed the old secret")
	}
	r = ctlAt(t, addr, "sub", "rotate-secret", id, "-o", "json").ok(t)
	rotated := unmarshal[adminv1.RotateSecretResponse](t, r.stdout)
	if s := rotated.GetSigningSecret(); !strings.HasPrefix(s, "whsec_") || s == first || s == created.GetSigningSecret() || rotated.GetPreviousValidUntil() == nil {
		t.Errorf("rotate-secret -o json = %v", rotated)
	}
	r = ctlAt(t, addr, "sub", "get", id).ok(t)
	if strings.Contains(r.stdout, "whsec_") {
		t.Errorf("sub get shows a secret:\n%s", r.stdout)
	}
	ctlAt(t, addr, "sub", "rotate-secret", "0123456789abcdef0123").fails(t, 1, "kurierctl: subscription not found")
}

func TestSubPreview(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	id := createPayload(t, addr).GetSubscription().GetSubscriptionId()

	r := ctlAt(t, addr, "sub", "preview", id).ok(t)
	got := lines(r.stdout)
	wantURL := "POST https://example.com/hook?src=kurier&event=invoice.changed&table=Auftrag&conditions=status%3D%27open%27&mandant=7&token=s3%3Dcr%2Cet&lang=de"
	if len(got) < 6 || got[0] != wantURL || got[1] != "" || got[2] != "{" || got[len(got)-3] != "}" ||
		got[len(got)-1] != "The sample event would be delivered: it is of the subscription's types and its filter passes it." {
		t.Fatalf("sub preview printed\n%s\nwant first\n%s\nthen an indented body, then that the sample would be delivered", r.stdout, wantURL)
	}
	body := strings.Join(got[2:len(got)-2], "\n")
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil || doc["mandant"] != "7" {
		t.Errorf("sample body is not the flat JSON object with the attributes (%v):\n%s", err, body)
	}
	if !strings.HasPrefix(got[3], `  "`) {
		t.Errorf("sample body is not indented:\n%s", body)
	}

	r = ctlAt(t, addr, "sub", "preview", id, "--type", "salesorder.changed", "-o", "json").ok(t)
	preview := unmarshal[adminv1.PreviewSubscriptionResponse](t, r.stdout)
	if preview.GetMethod() != "POST" || !strings.Contains(preview.GetUrl(), "?src=kurier&event=salesorder.changed&table=Auftrag&conditions=") ||
		!json.Valid([]byte(preview.GetSampleBody())) {
		t.Errorf("sub preview --type -o json = %v", preview)
	}
	ctlAt(t, addr, "sub", "preview", id, "--type", "address.changed").fails(t, 1, `kurierctl: event_type: the subscription does not have "address.changed"`)

	// A ping is a GET with no body.
	r = ctlAt(t, addr, "sub", "create", "--mode", "ping", "--org", "acme", "--system", "shop", "--type", "5", "--url", "https://example.com/ping", "-o", "json").ok(t)
	ping := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription().GetSubscriptionId()
	r = ctlAt(t, addr, "sub", "preview", ping).ok(t)
	if r.stdout != "GET https://example.com/ping\n\nThe sample event would be delivered: it is of the subscription's types and its filter passes it.\n" {
		t.Errorf("sub preview of a ping subscription = %q", r.stdout)
	}
}

// deadLetter puts a delivery of event evt into sub's dead letters, as the
// dispatcher does when its retries run out, and answers its delivery id.
func deadLetter(t *testing.T, conn *jet.Conn, sub string, seq uint64, evt string) string {
	t.Helper()
	m := bus.DeliveryTask(sub, seq, time.Now(), []byte(`{"specversion":"1.0","id":"`+evt+
		`","source":"/erp","type":"invoice.changed","subject":"INV-1","data":{"number":"INV-1"}}`), "")
	m.Subject = bus.DeadSubject("acme", sub)
	m.Header.Del(jetstream.MsgIDHeader)
	if _, err := conn.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return bus.WebhookID(sub, "/erp", evt)
}

func TestDeadLetters(t *testing.T) {
	addr, conn := startAdminBus(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	skipIfUnimplemented(t, addr, "ListDeadLetters", func(ctx context.Context, api adminv1.AdminServiceClient) error {
		_, err := api.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: "acme"})
		return err
	})
	id := createPayload(t, addr).GetSubscription().GetSubscriptionId()

	// None yet: nothing on stdout, a hint on stderr.
	r := ctlAt(t, addr, "deadletters", "list", "--org", "acme").ok(t)
	if r.stdout != "" || !strings.Contains(r.stderr, "No dead letters for org acme") {
		t.Errorf("empty deadletters list: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	emptyList(t, ctlAt(t, addr, "deadletters", "list", "--org", "acme", "--sub", id, "-o", "json").ok(t), "deadLetters")

	first := deadLetter(t, conn, id, 7, "evt-7")
	second := deadLetter(t, conn, id, 9, "evt-9")
	r = ctlAt(t, addr, "deadletters", "list", "--org", "acme", "--sub", id).ok(t)
	matchLines(t, r.stdout,
		`DELIVERY ID {2,}SUBSCRIPTION          EVENT  TYPE             TIME`,
		first+`  `+id+`  evt-7  invoice\.changed  `+rfc3339UTC,
		second+`  `+id+`  evt-9  invoice\.changed  `+rfc3339UTC,
	)
	r = ctlAt(t, addr, "deadletters", "list", "--org", "acme", "--limit", "1").ok(t)
	if n := len(lines(r.stdout)); n != 2 || !strings.Contains(r.stderr, "--all") {
		t.Errorf("deadletters list --limit 1: stdout\n%s\nstderr %q", r.stdout, r.stderr)
	}
	r = ctlAt(t, addr, "deadletters", "list", "--org", "acme", "--limit", "1", "--all", "-o", "json").ok(t)
	if ds := unmarshal[adminv1.ListDeadLettersResponse](t, r.stdout).GetDeadLetters(); len(ds) != 2 || ds[0].GetDeliveryId() != first || ds[1].GetEventId() != "evt-9" {
		t.Errorf("deadletters list --all -o json = %v", ds)
	}

	r = ctlAt(t, addr, "deadletters", "redeliver", "--sub", id, "--id", first).ok(t)
	if r.stdout != "queued 1\n" {
		t.Errorf("redeliver --id printed %q", r.stdout)
	}
	ctlAt(t, addr, "deadletters", "redeliver", "--sub", id, "--id", first).fails(t, 1, "not found")
	r = ctlAt(t, addr, "deadletters", "redeliver", "--sub", id, "--all", "-o", "json").ok(t)
	if got := unmarshal[adminv1.RedeliverResponse](t, r.stdout); got.GetQueued() != 1 {
		t.Errorf("redeliver --all -o json = %v", got)
	}
	r = ctlAt(t, addr, "deadletters", "list", "--org", "acme").ok(t)
	if r.stdout != "" {
		t.Errorf("dead letters left after redelivering all:\n%s", r.stdout)
	}
	// No events were stored in the last hour.
	r = ctlAt(t, addr, "deadletters", "redeliver", "--sub", id, "--since", "1h", "--until", "1m").ok(t)
	if r.stdout != "queued 0\n" {
		t.Errorf("redeliver --since printed %q", r.stdout)
	}

	ctlAt(t, addr, "deadletters", "list", "--org", "nope").fails(t, 1, `org "nope" not found`)
	ctlAt(t, addr, "deadletters", "redeliver", "--sub", "0123456789abcdef0123", "--all").fails(t, 1, "subscription not found")
}

func TestDeliveriesExport(t *testing.T) {
	addr, conn := startAdminBus(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	r := ctlAt(t, addr, "sub", "create", "--mode", "ping", "--org", "acme", "--system", "shop", "--type", "5", "--url", "https://example.com/hook", "-o", "json").ok(t)
	ping := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription().GetSubscriptionId()
	hook := createPayload(t, addr).GetSubscription().GetSubscriptionId()

	at := time.Date(2025, 1, 31, 8, 0, 0, 0, time.UTC)
	next := at.Add(5 * time.Second)
	post := dlog.Record{Org: "acme", Subscription: hook, System: "erp", EventTypes: []string{"invoice.changed"}, Mode: "payload",
		URL: "https://example.com/hook?src=kurier&event=invoice.changed", EventID: "evt-1"}
	failed, delivered := post, post
	failed.Status, failed.LatencyMS, failed.Attempt, failed.Outcome, failed.Response, failed.NextAttempt = 500, 20, 1, "retry", "oops", &next
	delivered.Status, delivered.LatencyMS, delivered.Attempt, delivered.Outcome = 200, 8, 2, "delivered"
	logDeliveries(t, conn, at, append(attempts(ping), failed, delivered)...)

	// list shows the event, the attempt, how it ended and when the next
	// attempt is due.
	r = ctlAt(t, addr, "deliveries", "list", "--org", "acme", "--sub", hook).ok(t)
	matchLines(t, r.stdout,
		`TIME                  SUBSCRIPTION          SYSTEM  TYPES            EVENT  STATUS  LATENCY  UNACKED  ATTEMPT  OUTCOME    NEXT ATTEMPT`,
		`2025-01-31T08:00:03Z  `+hook+`  erp     invoice\.changed  evt-1  500     20ms     -        1        retry      2025-01-31T08:00:05Z`,
		`2025-01-31T08:00:04Z  `+hook+`  erp     invoice\.changed  evt-1  200     8ms      -        2        delivered  -`,
	)

	dir := t.TempDir()
	file := filepath.Join(dir, "out.jsonl")
	r = ctlAt(t, addr, "deliveries", "export", "--org", "acme", "--format", "jsonl", "-f", file).ok(t)
	if r.stdout != "" || !strings.Contains(r.stderr, "Exported 5 deliveries of org acme to "+file) {
		t.Errorf("export -f: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got := lines(string(b))
	if len(got) != 5 {
		t.Fatalf("export wrote %d lines, want 5:\n%s", len(got), b)
	}
	for i, l := range got {
		if !json.Valid([]byte(l)) {
			t.Errorf("line %d is not JSON: %s", i+1, l)
		}
		d := unmarshal[adminv1.Delivery](t, l)
		if !d.GetTime().AsTime().Equal(at.Add(time.Duration(i) * time.Second)) {
			t.Errorf("line %d = %v, out of order", i+1, d)
		}
	}
	if d := unmarshal[adminv1.Delivery](t, got[3]); d.GetAttempt() != 1 || d.GetOutcome() != "retry" || d.GetEventId() != "evt-1" ||
		d.GetResponse() != "oops" || !d.GetNextAttempt().AsTime().Equal(next) || d.GetStatusCode() != 500 {
		t.Errorf("line 4 = %v", d)
	}

	// Standard output is the default, -f - names it; --sub and --since
	// choose as in deliveries list.
	r = ctlAt(t, addr, "deliveries", "export", "--org", "acme", "--sub", hook).ok(t)
	if got := lines(r.stdout); len(got) != 2 || unmarshal[adminv1.Delivery](t, got[1]).GetOutcome() != "delivered" || r.stderr != "" {
		t.Errorf("export --sub to stdout: stdout\n%s\nstderr %q", r.stdout, r.stderr)
	}
	r = ctlAt(t, addr, "deliveries", "export", "--org", "acme", "-f", "-", "--since", "2099-01-01T00:00:00Z").ok(t)
	if r.stdout != "" {
		t.Errorf("export --since the future: %q", r.stdout)
	}

	// A failed export leaves no file, nor a partial one.
	failedFile := filepath.Join(dir, "failed.jsonl")
	ctlAt(t, addr, "deliveries", "export", "--org", "nope", "-f", failedFile).fails(t, 1, `org "nope" not found`)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "out.jsonl" {
		t.Errorf("after a failed export the folder holds %v", entries)
	}
}

func TestSubDailySchedule(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	r := ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "sv", "--mode", "payload", "--type", "recurringinvoice.created",
		"--url", "https://sv.example/hook", "--daily-at", "08:00", "--time-zone", "Europe/Berlin", "-o", "json").ok(t)
	created := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription()
	if s := created.GetSchedule(); s.GetDailyAt() != "08:00" || s.GetTimeZone() != "Europe/Berlin" {
		t.Fatalf("schedule %v", s)
	}
	// --daily-at "" makes it immediate again.
	r = ctlAt(t, addr, "sub", "update", created.GetSubscriptionId(), "--daily-at", "", "-o", "json").ok(t)
	if s := unmarshal[adminv1.Subscription](t, r.stdout).GetSchedule(); s.GetDailyAt() != "" {
		t.Fatalf("after --daily-at \"\": %v", s)
	}
	ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "x", "--mode", "payload", "--type", "5",
		"--url", "https://x.example/", "--time-zone", "Europe/Berlin").fails(t, 2, "--time-zone goes with --daily-at")
	ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "y", "--mode", "payload", "--type", "5",
		"--url", "https://x.example/", "--daily-at", "25:00").fails(t, 1, "schedule.daily_at")
}

// Queue subscriptions name a queue of their org; queue list shows each
// queue's depth, queue delete removes it.
func TestQueueCommands(t *testing.T) {
	addr, conn := startAdminBus(t)
	ctx := context.Background()
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	ctlAt(t, addr, "org", "create", "beta").ok(t)
	r := ctlAt(t, addr, "queue", "list", "--org", "acme").ok(t)
	if r.stdout != "" || !strings.Contains(r.stderr, "POST /api/queues") {
		t.Fatalf("empty queue list: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	store, err := queues.Open(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := queues.NewID(), queues.NewID()
	for id, org := range map[string]string{mine: "acme", theirs: "beta"} {
		if err := store.Create(ctx, queues.Queue{ID: id, Org: org, Created: time.Now()}, 10); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := store.Post(ctx, mine, []byte(`{}`), ""); err != nil {
			t.Fatal(err)
		}
	}

	r = ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "hub", "--type", "5", "--mode", "queue", "--queue", mine, "-o", "json").ok(t)
	sub := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription()
	if sub.GetQueueId() != mine || sub.GetMode() != adminv1.DeliveryMode_DELIVERY_MODE_QUEUE || sub.GetUrl() != "" {
		t.Fatalf("queue subscription %v", sub)
	}
	if r := ctlAt(t, addr, "sub", "get", sub.GetSubscriptionId()).ok(t); !strings.Contains(r.stdout, "QUEUE:  "+mine) {
		t.Fatalf("sub get:\n%s", r.stdout)
	}
	r = ctlAt(t, addr, "sub", "preview", sub.GetSubscriptionId()).ok(t)
	if !strings.Contains(r.stdout, `"type": "invoice.changed"`) || !strings.Contains(r.stdout, `"data": {`) {
		t.Fatalf("queue preview:\n%s", r.stdout)
	}
	// Another org's queue, an unknown one, a URL: refused.
	ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "x", "--type", "5", "--mode", "queue", "--queue", theirs).
		fails(t, 1, "queue_id: org acme has no queue "+theirs)
	ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "x", "--type", "5", "--mode", "queue", "--queue", "nope").
		fails(t, 1, "queue_id: must be")
	ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "x", "--type", "5", "--mode", "queue", "--queue", mine, "--url", "https://x.example/").
		fails(t, 1, "url: a queue subscription has no URL")
	ctlAt(t, addr, "sub", "update", sub.GetSubscriptionId(), "--queue", theirs).fails(t, 1, "queue_id: org acme has no queue")
	ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "x", "--type", "5", "--url", "https://x.example/", "--queue", mine).
		fails(t, 2, "--queue <queue-id> goes with --mode queue")

	r = ctlAt(t, addr, "queue", "list", "--org", "acme").ok(t)
	if !regexp.MustCompile(`(?m)^`+mine+`\s+acme\s+`+rfc3339UTC+`\s+2\s+\d+s$`).MatchString(r.stdout) || strings.Contains(r.stdout, theirs) {
		t.Fatalf("queue list:\n%s", r.stdout)
	}
	r = ctlAt(t, addr, "queue", "list", "--org", "acme", "-o", "json").ok(t)
	if list := unmarshal[adminv1.ListQueuesResponse](t, r.stdout).GetQueues(); len(list) != 1 || list[0].GetDepth() != 2 || list[0].GetOldestMessageAge() == nil {
		t.Fatalf("queue list -o json: %s", r.stdout)
	}
	ctlAt(t, addr, "queue", "delete", "--org", "acme", theirs).fails(t, 1, "not found")
	if r := ctlAt(t, addr, "queue", "delete", "--org", "acme", mine).ok(t); r.stdout != "Deleted queue "+mine+".\n" {
		t.Fatalf("queue delete printed %q", r.stdout)
	}
	ctlAt(t, addr, "queue", "delete", "--org", "acme", mine).fails(t, 1, "not found")
	if r := ctlAt(t, addr, "queue", "list", "--org", "beta", "-o", "json").ok(t); len(unmarshal[adminv1.ListQueuesResponse](t, r.stdout).GetQueues()) != 1 {
		t.Fatalf("beta's queue went too: %s", r.stdout)
	}
	// Deleting an org deletes its queues.
	ctlAt(t, addr, "org", "delete", "beta").ok(t)
	if _, err := store.Get(ctx, theirs); !errors.Is(err, queues.ErrNotFound) {
		t.Fatalf("queue of a deleted org: %v", err)
	}
}

// sub create makes an active payload subscription unless told otherwise:
// --mode ping for a ping one, --inactive for one switched off.
func TestSubCreateDefaults(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)

	r := ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "crm", "--type", "5", "--url", "https://crm.example/hook", "-o", "json").ok(t)
	if s := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription(); s.GetMode() != adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD || !s.GetActive() {
		t.Errorf("sub create without --mode: mode %v, active %v", s.GetMode(), s.GetActive())
	}
	r = ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "shop", "--type", "5", "--url", "https://shop.example/ping", "--mode", "ping").ok(t)
	if row := strings.Fields(lines(r.stdout)[1]); row[4] != "ping" || row[6] != "yes" {
		t.Errorf("sub create --mode ping:\n%s", r.stdout)
	}
	r = ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "erp", "--type", "5", "--url", "https://erp.example/hook", "--inactive", "-o", "json").ok(t)
	if s := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription(); s.GetMode() != adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD || s.GetActive() {
		t.Errorf("sub create --inactive: mode %v, active %v", s.GetMode(), s.GetActive())
	}
	// JSON shows every field, false too.
	r = ctlAt(t, addr, "sub", "list", "--org", "acme", "-o", "json").ok(t)
	var list struct{ Subscriptions []map[string]json.RawMessage }
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatal(err)
	}
	var active []string
	for _, s := range list.Subscriptions {
		active = append(active, string(s["active"]))
	}
	if slices.Sort(active); strings.Join(active, ",") != "false,true,true" {
		t.Errorf("sub list -o json: active %v, want one false and two true", active)
	}

	r = ctl(t, "sub", "create", "-h").ok(t)
	for _, want := range []string{"(default payload)", "[--mode payload|ping|queue]", "active\nunless --inactive"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("sub create -h lacks %q:\n%s", want, r.stdout)
		}
	}
}

// A queue subscription signs nothing: sub create offers no secret to
// store and says where its events go instead.
func TestQueueSubCreateNoSecret(t *testing.T) {
	addr, conn := startAdminBus(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	store, err := queues.Open(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	q := queues.NewID()
	if err := store.Create(context.Background(), queues.Queue{ID: q, Org: "acme", Created: time.Now()}, 10); err != nil {
		t.Fatal(err)
	}
	r := ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "hub", "--type", "5", "--mode", "queue", "--queue", q).ok(t)
	if want := "\nIts events go into queue " + q + " unsigned: a queue subscription needs no signing secret.\n"; !strings.HasSuffix(r.stdout, want) ||
		strings.Contains(r.stdout, "to the URL") || strings.Contains(r.stdout, "whsec_") {
		t.Errorf("sub create --mode queue:\n%s", r.stdout)
	}
}
