package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/addresssync"
	"kurier.dev/services/natstest"
)

func TestOrgUpdate(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme", "--name", "ACME").ok(t)

	r := ctlAt(t, addr, "org", "update", "acme", "--addressbook-sync", "--person-quota", "2").ok(t)
	matchLines(t, r.stdout,
		`ORG ID  DISPLAY NAME  CREATED`,
		`acme    ACME          `+rfc3339UTC,
		``,
		`ADDRESS BOOK SYNC:  yes`,
		`PERSON QUOTA:       2`,
		`PERSON DELETION:    no: a sync marks the persons its list lacks deleted`,
	)
	// Only what is given changes.
	r = ctlAt(t, addr, "-o", "json", "org", "update", "acme", "--allow-person-deletion", "--name", "ACME GmbH").ok(t)
	org := unmarshal[adminv1.Org](t, r.stdout)
	if !org.GetAddressbookSyncEnabled() || org.GetPersonQuota() != 2 || !org.GetAllowPersonDeletion() || org.GetDisplayName() != "ACME GmbH" {
		t.Fatalf("after a partial update: %v", org)
	}
	r = ctlAt(t, addr, "org", "update", "acme", "--person-quota", "0", "--addressbook-sync=false").ok(t)
	matchLines(t, r.stdout, `ORG ID .*`, `acme .*`, ``, `ADDRESS BOOK SYNC:  no`, `PERSON QUOTA:       none`, `PERSON DELETION:    yes: .*`)

	ctlAt(t, addr, "org", "update", "acme").fails(t, 2, "org update needs at least one of")
	ctlAt(t, addr, "org", "update", "nope", "--person-quota", "1").fails(t, 1, `org "nope" not found`)
}

func TestPersonCommands(t *testing.T) {
	addr := startAdmin(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	ctlAt(t, addr, "org", "update", "acme", "--person-quota", "2").ok(t)

	r := ctlAt(t, addr, "person", "create", "--org", "acme", "--id", "p-1", "--first-name", "Max", "--last-name", "Mustermann",
		"--os-functions", "AGT,MA", "--alarm-groups", "Alarm Gruppe", "--mobil", "0049151123456", "--mode", "token").ok(t)
	matchLines(t, r.stdout,
		`EXTERNAL DB ID  FIRST NAME  LAST NAME   ORIGIN  DELETED  MODE   MOBIL          EMAIL`,
		`p-1             Max         Mustermann  manual  no       token  0049151123456  -`,
		``,
		`NOTE:          -`,
		`OS FUNCTIONS:  AGT`,
		`               MA`,
		`OS GROUPS:     -`,
		`ALARM GROUPS:  Alarm Gruppe`,
		`ISSI:          -`,
		`XMPP:          -`,
		`APAGER PRO:    -`,
		`TOKEN:         [0-9a-f]{32}`,
	)
	ctlAt(t, addr, "person", "create", "--org", "acme", "--id", "p-2", "--mobil", "+49151").fails(t, 1, "person.mobil: must be a mobile number")
	ctlAt(t, addr, "person", "create", "--org", "acme", "--id", "p-1").fails(t, 1, `already has a person "p-1"`)
	ctlAt(t, addr, "person", "create", "--org", "acme", "--id", "p-2", "--first-name", "Erika").ok(t)
	ctlAt(t, addr, "person", "create", "--org", "acme", "--id", "p-3").fails(t, 1, "its quota")
	ctlAt(t, addr, "person", "create", "--org", "acme").fails(t, 2, "person create needs --id")

	r = ctlAt(t, addr, "person", "list", "--org", "acme").ok(t)
	matchLines(t, r.stdout, `EXTERNAL DB ID .*`, `p-1 +Max .*`, `p-2 +Erika .*legacy .*`)
	r = ctlAt(t, addr, "-o", "json", "person", "get", "--org", "acme", "p-1").ok(t)
	p := unmarshal[adminv1.Person](t, r.stdout)
	if p.GetOrigin() != adminv1.PersonOrigin_PERSON_ORIGIN_MANUAL || len(p.GetOsFunctions()) != 2 || p.GetToken() == "" {
		t.Fatalf("person get: %v", p)
	}

	r = ctlAt(t, addr, "person", "delete", "--org", "acme", "p-1").ok(t)
	if r.stdout != "Deleted person p-1 of org acme.\n" {
		t.Fatalf("person delete printed %q", r.stdout)
	}
	ctlAt(t, addr, "person", "get", "--org", "acme", "p-1").fails(t, 1, `person "p-1" not found`)
	ctlAt(t, addr, "person", "delete", "--org", "acme", "p-1").fails(t, 1, `person "p-1" not found`)
	r = ctlAt(t, addr, "person", "list", "--org", "acme", "--limit", "1").ok(t)
	if len(lines(r.stdout)) != 2 {
		t.Fatalf("a page of 1:\n%s", r.stdout)
	}
}

// TestPersonBook: person book shows the counts and how the last sync
// through the real sync API ended.
func TestPersonBook(t *testing.T) {
	addr, conn := startAdminBus(t)
	sync, err := addresssync.New(context.Background(), addresssync.DefaultConfig(), conn, natstest.Log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	sync.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	ctlAt(t, addr, "org", "create", "acme").ok(t)
	ctlAt(t, addr, "org", "update", "acme", "--addressbook-sync").ok(t)
	secret := ctlAt(t, addr, "key", "create", "--org", "acme", "--scope", "addressbook", "-o", "value=secret").ok(t).stdout

	r := ctlAt(t, addr, "person", "book", "--org", "acme").ok(t)
	matchLines(t, r.stdout,
		`ORG ID  PERSONS  MARKED DELETED`,
		`acme    0        0`,
		``,
		`LAST SYNC:  none yet`,
	)
	r = ctlAt(t, addr, "-o", "json", "person", "book", "--org", "acme").ok(t)
	if b := unmarshal[adminv1.AddressBook](t, r.stdout); b.GetOrgId() != "acme" || b.GetPersons() != 0 || b.GetLastSync() != nil {
		t.Fatalf("person book -o json before a sync: %v", b)
	}

	post := func(body string, want int) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/rest/addressbook/sync", bytes.NewBufferString(body))
		req.Header.Set("Authorization", strings.TrimSpace(secret))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("sync %s: %d, want %d", body, resp.StatusCode, want)
		}
	}
	post(`{"source":"dir","personList":[{"externalDbId":"1","lastName":"A"},{"externalDbId":"2","lastName":"B"}]}`, http.StatusOK)
	// The one left out is marked deleted: the org does not allow deleting.
	post(`{"source":"dir","personList":[{"externalDbId":"1","lastName":"A"}]}`, http.StatusOK)
	r = ctlAt(t, addr, "person", "book", "--org", "acme").ok(t)
	matchLines(t, r.stdout,
		`ORG ID  PERSONS  MARKED DELETED`,
		`acme    1        1`,
		``,
		`LAST SYNC:  `+rfc3339UTC,
		`SOURCE:     dir`,
		`OUTCOME:    accepted \(HTTP 200\)`,
		`CHANGES:    created 0, updated 0, deleted 0, marked deleted 1, unchanged 1`,
	)

	// A sync refused for what it sent leaves the last one shown.
	post(`{"source":"dir","personList":[{"externalDbId":"1","lastName":"A","mobil":"not a number"}]}`, http.StatusBadRequest)
	if r := ctlAt(t, addr, "-o", "value=lastSync.status", "person", "book", "--org", "acme").ok(t); r.stdout != "200\n" {
		t.Errorf("-o value=lastSync.status printed %q after a refused sync", r.stdout)
	}

	ctlAt(t, addr, "person", "book", "--org", "nope").fails(t, 1, `org "nope" not found`)
}
