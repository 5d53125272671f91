package contract

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// AddressBook is the contract of the FE2 address-book API under /rest/addressbook.
func AddressBook(t *testing.T, tg Target) {
	t.Run("Switch", func(t *testing.T) { bookSwitch(t, tg) })
	t.Run("Keys", func(t *testing.T) { bookKeys(t, tg) })
	t.Run("Reconcile", func(t *testing.T) { bookReconcile(t, tg) })
	t.Run("Refusals", func(t *testing.T) { bookRefusals(t, tg) })
	t.Run("Delete", func(t *testing.T) { bookDelete(t, tg) })
}

// bookCounts answer an accepted sync or delete: what happened to how many
// persons.
type bookCounts struct {
	Created       int `json:"created"`
	Updated       int `json:"updated"`
	Deleted       int `json:"deleted"`
	MarkedDeleted int `json:"markedDeleted"`
	Unchanged     int `json:"unchanged"`
}

// bookOrg is an org of the suite's with its access key, and a queue that
// a queue subscription fills with the org's person events.
type bookOrg struct {
	tg      Target
	id, key string
	prefix  string // of the org's externalDbIds, which are unique across orgs
	events  *Queue
}

// bookNewOrg makes an org with the sync switched on and the given person
// quota and deletion rule.
func bookNewOrg(t *testing.T, tg Target, quota uint32, allowDeletion bool) *bookOrg {
	t.Helper()
	o := bookNewOrgOff(t, tg)
	o.update(t, &adminv1.Org{AddressbookSyncEnabled: true, PersonQuota: quota, AllowPersonDeletion: allowDeletion},
		"addressbook_sync_enabled", "person_quota", "allow_person_deletion")
	return o
}

// bookNewOrgOff makes an org as the admin API makes it: sync switched
// off.
func bookNewOrgOff(t *testing.T, tg Target) *bookOrg {
	t.Helper()
	ctx := context.Background()
	id, key := tg.Org(t, adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK)
	partner, err := tg.Admin.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: id, Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_PARTNER}})
	if err != nil {
		t.Fatalf("create a partner key: %v", err)
	}
	q := CreateQueue(t, tg.HTTP, partner.GetSecret())
	// The tests change persons right after this: the events of those
	// changes must be queued, as every event after CreateSubscription
	// answered is.
	if _, err := tg.Admin.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: id, System: "directory", EventTypes: []string{"person.created", "person.updated", "person.deleted"},
		Mode: adminv1.DeliveryMode_DELIVERY_MODE_QUEUE, QueueId: q.QueueID,
	}}); err != nil {
		t.Fatalf("subscribe the person events: %v", err)
	}
	return &bookOrg{tg: tg, id: id, key: key, prefix: id + "-", events: q}
}

// update sets the org's fields named by paths through the admin API.
func (o *bookOrg) update(t *testing.T, set *adminv1.Org, paths ...string) {
	t.Helper()
	set.OrgId = o.id
	if _, err := o.tg.Admin.UpdateOrg(context.Background(), &adminv1.UpdateOrgRequest{Org: set, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}); err != nil {
		t.Fatalf("UpdateOrg %v: %v", paths, err)
	}
}

// ids makes every "P-x" in s the org's person x.
func (o *bookOrg) ids(s string) string { return strings.ReplaceAll(s, `P-`, o.prefix) }

// person is FE2Person with the org's id for n.
func (o *bookOrg) person(n, first string, more ...any) map[string]any {
	return FE2Person(o.prefix+n, first, more...)
}

// FE2Person is a person as FE2's documentation shows one, with the fields
// more names (name, value, ...) changed.
func FE2Person(id, first string, more ...any) map[string]any {
	p := map[string]any{"externalDbId": id, "firstName": first, "lastName": "Mustermann", "note": "Das ist eine Notiz",
		"osFunctions": []string{"AGT", "MA"}, "osGroups": []string{"Löschgruppe 1"}, "alarmGroups": []string{"Alarm Gruppe", "Alarm Gruppe 2"},
		"issi": "", "xmpp": "", "aPagerPro": first + "@example.com", "email": first + "@example.com", "mobil": "0049151123456",
		"aPagerProFieldMode": "LEGACY"}
	for i := 0; i+1 < len(more); i += 2 {
		p[more[i].(string)] = more[i+1]
	}
	return p
}

// call makes a request of the API as FE2's clients do: the key as the
// whole Authorization header (none if auth is empty).
func (o *bookOrg) call(t *testing.T, method, path, auth, contentType string, body []byte) Answer {
	t.Helper()
	h := map[string]string{}
	if auth != "" {
		h["Authorization"] = auth
	}
	if contentType != "" {
		h["Content-Type"] = contentType
	}
	return Do(t, Request{Method: method, URL: o.tg.HTTP + path, Header: h, Body: body})
}

// sync pushes the person list with the org's key.
func (o *bookOrg) sync(t *testing.T, persons ...map[string]any) Answer {
	t.Helper()
	if persons == nil {
		persons = []map[string]any{}
	}
	return o.call(t, http.MethodPost, "/rest/addressbook/sync", o.key, "application/json",
		JSON(t, map[string]any{"source": "Personalverwaltung", "personList": persons}))
}

// delete deletes a person of the org's by its id n, with auth.
func (o *bookOrg) delete(t *testing.T, auth, n string) Answer {
	t.Helper()
	return o.call(t, http.MethodDelete, "/rest/addressbook/external/persons/"+url.PathEscape(o.prefix+n), auth, "", nil)
}

// bookAccepted fails the test unless a is 200 with the five counts, as
// want has them, and nothing else.
func bookAccepted(t *testing.T, what string, a Answer, want bookCounts) {
	t.Helper()
	var got, wantDoc map[string]int
	if err := json.Unmarshal(JSON(t, want), &wantDoc); err != nil {
		t.Fatal(err)
	}
	if a.Status != http.StatusOK || a.Header.Get("Content-Type") != "application/json" || json.Unmarshal(a.Body, &got) != nil || !maps.Equal(got, wantDoc) {
		t.Fatalf("%s: %d %s, want 200 %s", what, a.Status, a.Body, JSON(t, want))
	}
}

// bookRefused fails the test unless a is status in the error form with
// code, field and, unless it is -1, index.
func bookRefused(t *testing.T, what string, a Answer, status int, code, field string, index int) APIError {
	t.Helper()
	e, ok := a.ErrorForm()
	if a.Status != status || !ok || e.Code != code || e.Field != field || (index < 0) != (e.Index == nil) || index >= 0 && *e.Index != index {
		t.Errorf("%s: %d %s, want %d %s naming %q at index %d", what, a.Status, a.Body, status, code, field, index)
	}
	return e
}

// persons answers the org's book through the admin API, by external id
// with the org's prefix taken off.
func (o *bookOrg) persons(t *testing.T, includeDeleted bool) map[string]*adminv1.Person {
	t.Helper()
	out := map[string]*adminv1.Person{}
	req := &adminv1.ListPersonsRequest{OrgId: o.id, IncludeDeleted: includeDeleted, PageSize: 1000}
	for {
		resp, err := o.tg.Admin.ListPersons(context.Background(), req)
		if err != nil {
			t.Fatalf("ListPersons: %v", err)
		}
		for _, p := range resp.GetPersons() {
			out[strings.TrimPrefix(p.GetExternalDbId(), o.prefix)] = p
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			return out
		}
	}
}

// has fails the test unless the org's book (with the persons marked
// deleted if includeDeleted) holds exactly the ids, and answers it.
func (o *bookOrg) has(t *testing.T, what string, includeDeleted bool, ids ...string) map[string]*adminv1.Person {
	t.Helper()
	got := o.persons(t, includeDeleted)
	if have := slices.Sorted(maps.Keys(got)); !slices.Equal(have, slices.Sorted(slices.Values(ids))) {
		t.Fatalf("%s: the book holds %v, want %v", what, have, ids)
	}
	return got
}

// bookPersonData is a person event's data.
type bookPersonData struct {
	ExternalDbID string `json:"externalDbId"`
	FirstName    string `json:"firstName"`
	Origin       string `json:"origin"`
	Deleted      bool   `json:"deleted"`
	Token        string `json:"token"`
}

// announced waits for the person events want names ("person.created 1"
// for the org's person 1), each once, and fails the test if others come
// with them: as every step waits for its own, one that sent too much is
// caught by the next. It answers the events' data by name.
func (o *bookOrg) announced(t *testing.T, want ...string) map[string]bookPersonData {
	t.Helper()
	data := map[string]bookPersonData{}
	key := func(m QueueMessage) string {
		e, ok := m.Event()
		if !ok {
			return ""
		}
		k := e.Type + " " + strings.TrimPrefix(e.Subject, o.prefix)
		var d bookPersonData
		if err := json.Unmarshal(e.Data, &d); err != nil || d.ExternalDbID != e.Subject {
			k += fmt.Sprintf(" with data %s", e.Data)
		}
		data[k] = d
		return k
	}
	got := o.events.Drain(t, 30*time.Second, want, key)
	wantN := map[string]int{}
	for _, k := range want {
		wantN[k]++
	}
	if !maps.Equal(got, wantN) {
		t.Fatalf("person events %v, want %v, each once", got, wantN)
	}
	return data
}

// The org's switch: a sync is 503 while addressbook_sync_enabled is off,
// as an org is made, and works once UpdateOrg switches it on.
func bookSwitch(t *testing.T, tg Target) {
	ctx := context.Background()
	o := bookNewOrgOff(t, tg)
	bookRefused(t, "sync of an org that has it off", o.sync(t, o.person("1", "max")), http.StatusServiceUnavailable, "sync_disabled", "", -1)
	bookRefused(t, "delete of an org that has the sync off", o.delete(t, o.key, "1"), http.StatusServiceUnavailable, "sync_disabled", "", -1)
	o.has(t, "after refused syncs", true)

	// A partial update changes the fields named and no other.
	o.update(t, &adminv1.Org{AddressbookSyncEnabled: true, PersonQuota: 4, DisplayName: "not named"}, "addressbook_sync_enabled", "person_quota")
	org, err := tg.Admin.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: o.id})
	if err != nil || !org.GetAddressbookSyncEnabled() || org.GetPersonQuota() != 4 || org.GetAllowPersonDeletion() || org.GetDisplayName() != "Contract "+o.id {
		t.Fatalf("org after a partial update: %v %v", org, err)
	}
	bookAccepted(t, "sync once switched on", o.sync(t, o.person("1", "max")), bookCounts{Created: 1})
	o.announced(t, "person.created 1")

	o.update(t, &adminv1.Org{}, "addressbook_sync_enabled")
	bookRefused(t, "sync once switched off again", o.sync(t), http.StatusServiceUnavailable, "sync_disabled", "", -1)
	o.has(t, "after a sync refused", true, "1")
}

// FE2's API takes the org's access key (scope ADDRESSBOOK) as the whole
// Authorization header; a key sent as a bearer token is refused with a
// message that says so, the same whether the key exists or not.
func bookKeys(t *testing.T, tg Target) {
	ctx := context.Background()
	o := bookNewOrg(t, tg, 0, true)
	bookAccepted(t, "sync", o.sync(t, o.person("1", "Ada")), bookCounts{Created: 1})
	o.announced(t, "person.created 1")

	ingest, err := tg.Admin.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: o.id, Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := tg.Admin.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: o.id, Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Admin.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: revoked.GetKey().GetKeyId()}); err != nil {
		t.Fatal(err)
	}
	unknown := "kur_0123456789abcdef_" + strings.Repeat("A", 43)
	empty := []byte(`{"personList":[]}`)
	for name, auth := range map[string]string{
		"no key":                              "",
		"an unknown key":                      unknown,
		"a revoked key":                       revoked.GetSecret(),
		"a key without the ADDRESSBOOK scope": ingest.GetSecret(),
	} {
		for call, a := range map[string]Answer{
			"sync":   o.call(t, http.MethodPost, "/rest/addressbook/sync", auth, "application/json", empty),
			"delete": o.delete(t, auth, "1"),
		} {
			if e := bookRefused(t, call+" with "+name, a, http.StatusUnauthorized, "unauthenticated", "Authorization", -1); strings.Contains(e.Message, "Bearer") {
				t.Errorf("%s with %s: %s, a hint about Bearer that does not apply", call, name, a.Body)
			}
		}
	}
	for name, auth := range map[string]string{
		"the key as a bearer token":        "Bearer " + o.key,
		"the key as a bearer token, lower": "bearer " + o.key,
		"an unknown key as a bearer token": "Bearer " + unknown,
	} {
		for call, a := range map[string]Answer{
			"sync":   o.call(t, http.MethodPost, "/rest/addressbook/sync", auth, "application/json", empty),
			"delete": o.delete(t, auth, "1"),
		} {
			if e := bookRefused(t, call+" with "+name, a, http.StatusUnauthorized, "unauthenticated", "Authorization", -1); !strings.Contains(e.Message, `without "Bearer "`) {
				t.Errorf("%s with %s: %s, want a message saying to send the key without \"Bearer \"", call, name, a.Body)
			}
		}
	}
	o.has(t, "after refused calls", true, "1")
	// Nothing was announced: the next change is the only event.
	bookAccepted(t, "sync", o.sync(t, o.person("1", "Ada"), o.person("2", "Bob")), bookCounts{Created: 1, Unchanged: 1})
	o.announced(t, "person.created 2")
}

// A sync makes the book agree with the list, announcing every change as
// an event: listed persons created or updated; synced persons the list
// lacks marked deleted or, where the org allows it, deleted. Persons made
// by hand are left alone.
func bookReconcile(t *testing.T, tg Target) {
	ctx := context.Background()
	o := bookNewOrg(t, tg, 0, false)
	manual, err := tg.Admin.CreatePerson(ctx, &adminv1.CreatePersonRequest{OrgId: o.id, Person: &adminv1.Person{ExternalDbId: o.prefix + "m1", FirstName: "Hand", LastName: "Made"}})
	if err != nil || manual.GetOrigin() != adminv1.PersonOrigin_PERSON_ORIGIN_MANUAL {
		t.Fatalf("CreatePerson: %v %v", manual, err)
	}
	if d := o.announced(t, "person.created m1"); d["person.created m1"].Origin != "manual" {
		t.Fatalf("event of a person made by hand: %+v", d)
	}

	first := []map[string]any{o.person("1", "Ada", "aPagerProFieldMode", "TOKEN", "aPagerPro", ""), o.person("2", "Bob"), o.person("3", "Cem")}
	bookAccepted(t, "first sync", o.sync(t, first...), bookCounts{Created: 3})
	events := o.announced(t, "person.created 1", "person.created 2", "person.created 3")
	got := o.has(t, "after the first sync", false, "m1", "1", "2", "3")
	token := got["1"].GetToken()
	bob := got["2"]
	if token == "" || got["1"].GetAPagerProFieldMode() != adminv1.APagerProFieldMode_A_PAGER_PRO_FIELD_MODE_TOKEN || events["person.created 1"].Token != token {
		t.Fatalf("a person in token mode: %v, event %+v: want a token, the same in both", got["1"], events["person.created 1"])
	}
	if bob.GetToken() != "" || bob.GetOrigin() != adminv1.PersonOrigin_PERSON_ORIGIN_SYNC || bob.GetFirstName() != "Bob" || bob.GetLastName() != "Mustermann" ||
		bob.GetNote() != "Das ist eine Notiz" || !slices.Equal(bob.GetOsFunctions(), []string{"AGT", "MA"}) || !slices.Equal(bob.GetOsGroups(), []string{"Löschgruppe 1"}) ||
		!slices.Equal(bob.GetAlarmGroups(), []string{"Alarm Gruppe", "Alarm Gruppe 2"}) || bob.GetAPagerPro() != "Bob@example.com" ||
		bob.GetEmail() != "Bob@example.com" || bob.GetMobil() != "0049151123456" || bob.GetAPagerProFieldMode() != adminv1.APagerProFieldMode_A_PAGER_PRO_FIELD_MODE_LEGACY {
		t.Fatalf("a synced person as FE2's documentation shows one: %v", bob)
	}
	if d := events["person.created 2"]; d.Origin != "sync" || d.FirstName != "Bob" || d.Deleted {
		t.Fatalf("event of a synced person: %+v", d)
	}

	// The same list again changes nothing and announces nothing.
	bookAccepted(t, "the same list again", o.sync(t, first...), bookCounts{Unchanged: 3})

	// Bob changes, Cem is gone (marked: deleting is not allowed), Ada's
	// token stays though her mode changes.
	second := []map[string]any{o.person("1", "Ada", "aPagerProFieldMode", "LEGACY", "aPagerPro", "ada@example.com"), o.person("2", "Bobby")}
	bookAccepted(t, "a list without Cem", o.sync(t, second...), bookCounts{Updated: 2, MarkedDeleted: 1})
	if d := o.announced(t, "person.updated 1", "person.updated 2", "person.deleted 3"); !d["person.deleted 3"].Deleted || d["person.updated 2"].FirstName != "Bobby" {
		t.Fatalf("events of an update and a marking: %+v", d)
	}
	got = o.has(t, "without the persons marked deleted", false, "m1", "1", "2")
	if got["1"].GetToken() != token || got["1"].GetAPagerPro() != "ada@example.com" || got["2"].GetFirstName() != "Bobby" || got["m1"].GetDeleted() {
		t.Fatalf("after the second sync: %v", got)
	}
	if all := o.has(t, "with the persons marked deleted", true, "m1", "1", "2", "3"); !all["3"].GetDeleted() {
		t.Fatalf("Cem is not marked deleted: %v", all["3"])
	}
	// Marked again is no change.
	bookAccepted(t, "the list without Cem again", o.sync(t, second...), bookCounts{Unchanged: 2})

	// Listed again, Cem is back, as listed.
	bookAccepted(t, "Cem listed again", o.sync(t, append(second, o.person("3", "Cem", "mobil", ""))...), bookCounts{Updated: 1, Unchanged: 2})
	if d := o.announced(t, "person.updated 3")["person.updated 3"]; d.Deleted || d.Origin != "sync" {
		t.Fatalf("event of a person back: %+v", d)
	}
	if got := o.has(t, "with Cem back", false, "m1", "1", "2", "3"); got["3"].GetDeleted() || got["3"].GetMobil() != "" {
		t.Fatalf("Cem back: %v", got["3"])
	}

	// With deletion allowed, the missing are deleted; the manual person stays.
	o.update(t, &adminv1.Org{AllowPersonDeletion: true}, "allow_person_deletion")
	bookAccepted(t, "a list of Ada alone", o.sync(t, second[0]), bookCounts{Unchanged: 1, Deleted: 2})
	if d := o.announced(t, "person.deleted 2", "person.deleted 3"); d["person.deleted 2"].FirstName != "Bobby" {
		t.Fatalf("the event of a deletion: %+v, want the person as it was", d)
	}
	if got := o.has(t, "after deleting", true, "m1", "1"); got["m1"].GetFirstName() != "Hand" || got["1"].GetToken() != token {
		t.Fatalf("after deleting: %v", got)
	}

	// An empty list deletes every synced person, never the manual one.
	bookAccepted(t, "an empty list", o.sync(t), bookCounts{Deleted: 1})
	o.announced(t, "person.deleted 1")
	if got := o.has(t, "after an empty list", true, "m1"); got["m1"].GetOrigin() != adminv1.PersonOrigin_PERSON_ORIGIN_MANUAL {
		t.Fatalf("after an empty list: %v", got)
	}
	// The admin API's deletions are announced too.
	if _, err := tg.Admin.DeletePerson(ctx, &adminv1.DeletePersonRequest{OrgId: o.id, ExternalDbId: o.prefix + "m1"}); err != nil {
		t.Fatalf("DeletePerson: %v", err)
	}
	o.announced(t, "person.deleted m1")
	o.has(t, "after DeletePerson", true)
}

// Every refused sync is answered in the error form, naming the person and
// field at fault, and changes nothing.
func bookRefusals(t *testing.T, tg Target) {
	ctx := context.Background()
	o := bookNewOrg(t, tg, 3, false)
	globex := bookNewOrg(t, tg, 0, true)
	bookAccepted(t, "the other org's sync", globex.sync(t, globex.person("g1", "Gina")), bookCounts{Created: 1})
	bookAccepted(t, "sync", o.sync(t, o.person("1", "Ada")), bookCounts{Created: 1})
	if _, err := tg.Admin.CreatePerson(ctx, &adminv1.CreatePersonRequest{OrgId: o.id, Person: &adminv1.Person{ExternalDbId: o.prefix + "m1"}}); err != nil {
		t.Fatalf("CreatePerson: %v", err)
	}
	o.announced(t, "person.created 1", "person.created m1")

	// "P-x" is the org's x; "G-g1" the other org's person.
	valid := `{"source":"x","personList":[{"externalDbId":"P-1","firstName":"Ada"}]}`
	for _, c := range []struct {
		name, ct, body string
		status         int
		code, field    string
		index          int // -1: none
	}{
		{"not JSON", "text/plain", valid, 415, "unsupported_media_type", "Content-Type", -1},
		{"no content type", "", valid, 415, "unsupported_media_type", "Content-Type", -1},
		{"no personList", "application/json", `{"source":"x"}`, 400, "invalid_body", "personList", -1},
		{"body not an object", "application/json", `[1]`, 400, "invalid_body", "body", -1},
		{"body not JSON", "application/json", `{"personList":`, 400, "invalid_body", "body", -1},
		{"source not a string", "application/json", `{"source":1,"personList":[]}`, 400, "invalid_body", "source", -1},
		{"personList not an array", "application/json", `{"personList":{}}`, 400, "invalid_body", "personList", -1},
		{"person not an object", "application/json", `{"personList":[{"externalDbId":"P-1"},"x"]}`, 400, "invalid_person", "personList[1]", 1},
		{"firstName a number", "application/json", `{"personList":[{"externalDbId":"P-1"},{"externalDbId":"P-2","firstName":5}]}`, 400, "invalid_person", "personList[1].firstName", 1},
		{"osGroups a string", "application/json", `{"personList":[{"externalDbId":"P-1","osGroups":"x"}]}`, 400, "invalid_person", "personList[0].osGroups", 0},
		{"osFunctions a string", "application/json", `{"personList":[{"externalDbId":"P-1","osFunctions":"AGT"}]}`, 400, "invalid_person", "personList[0].osFunctions", 0},
		{"no externalDbId", "application/json", `{"personList":[{"externalDbId":"P-1"},{"externalDbId":"P-2"},{"firstName":"x"}]}`, 400, "invalid_person", "personList[2].externalDbId", 2},
		{"twice the same id", "application/json", `{"personList":[{"externalDbId":"P-1"},{"externalDbId":"P-1"}]}`, 400, "invalid_person", "personList[1].externalDbId", 1},
		{"mobil not 0049", "application/json", `{"personList":[{"externalDbId":"P-1","mobil":"+49151"}]}`, 400, "invalid_person", "personList[0].mobil", 0},
		{"mobil with a space", "application/json", `{"personList":[{"externalDbId":"P-1"},{"externalDbId":"P-2","mobil":"0151 123456"}]}`, 400, "invalid_person", "personList[1].mobil", 1},
		{"aPagerPro in token mode", "application/json", `{"personList":[{"externalDbId":"P-1","aPagerPro":"a@example.com","aPagerProFieldMode":"TOKEN"}]}`, 400, "invalid_person", "personList[0].aPagerPro", 0},
		{"aPagerPro a bad number", "application/json", `{"personList":[{"externalDbId":"P-1","aPagerPro":"0151"}]}`, 400, "invalid_person", "personList[0].aPagerPro", 0},
		{"aPagerPro neither number nor address", "application/json", `{"personList":[{"externalDbId":"P-1","aPagerPro":"max"}]}`, 400, "invalid_person", "personList[0].aPagerPro", 0},
		{"bad mode", "application/json", `{"personList":[{"externalDbId":"P-1","aPagerProFieldMode":"PAGER"}]}`, 400, "invalid_person", "personList[0].aPagerProFieldMode", 0},
		{"bad email", "application/json", `{"personList":[{"externalDbId":"P-1","email":"ada"}]}`, 400, "invalid_person", "personList[0].email", 0},
		{"another org's person", "application/json", `{"personList":[{"externalDbId":"P-1"},{"externalDbId":"G-g1"}]}`, 412, "person_of_other_org", "personList[1].externalDbId", 1},
		{"a person made by hand", "application/json", `{"personList":[{"externalDbId":"P-1"},{"externalDbId":"P-m1"}]}`, 412, "person_made_by_hand", "personList[1].externalDbId", 1},
		// With the manual person, 4 over a quota of 3.
		{"over the quota", "application/json", `{"personList":[{"externalDbId":"P-1"},{"externalDbId":"P-2"},{"externalDbId":"P-3"}]}`, 403, "quota_exceeded", "personList", -1},
	} {
		body := strings.ReplaceAll(o.ids(c.body), `"G-`, `"`+globex.prefix)
		a := o.call(t, http.MethodPost, "/rest/addressbook/sync", o.key, c.ct, []byte(body))
		bookRefused(t, c.name, a, c.status, c.code, c.field, c.index)
	}
	if got := o.has(t, "after refused syncs", true, "1", "m1"); got["1"].GetFirstName() != "Ada" {
		t.Fatalf("after refused syncs: %v", got["1"])
	}
	globex.has(t, "the other org's book after refused syncs", true, "g1")

	// At the quota's edge: Ada, the manual person and one more make 3.
	bookAccepted(t, "a sync to the quota", o.sync(t, o.person("1", "Ada"), o.person("2", "Bob")), bookCounts{Created: 1, Unchanged: 1})
	o.announced(t, "person.created 2") // and nothing of the refused ones
	// An id the other org gave up is free again; Bob, marked deleted,
	// counts no more.
	bookAccepted(t, "the other org deletes its person", globex.delete(t, globex.key, "g1"), bookCounts{Deleted: 1})
	gina := map[string]any{"externalDbId": globex.prefix + "g1", "firstName": "Gina"}
	bookAccepted(t, "a sync with the id given up", o.sync(t, o.person("1", "Ada"), gina), bookCounts{Created: 1, Unchanged: 1, MarkedDeleted: 1})
	events := o.announced(t, "person.deleted 2", "person.created "+globex.prefix+"g1")
	if d := events["person.created "+globex.prefix+"g1"]; d.FirstName != "Gina" || d.Origin != "sync" {
		t.Fatalf("the person with the id given up: %+v", d)
	}
	if _, err := tg.Admin.GetPerson(ctx, &adminv1.GetPersonRequest{OrgId: globex.id, ExternalDbId: globex.prefix + "g1"}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetPerson of the person the other org gave up, through that org: %v, want NotFound", err)
	}
}

// DELETE /rest/addressbook/external/persons/{externalDbId} deletes one
// synced person of the key's org, where the org allows deleting.
func bookDelete(t *testing.T, tg Target) {
	ctx := context.Background()
	o := bookNewOrg(t, tg, 0, false)
	globex := bookNewOrg(t, tg, 0, true)
	bookAccepted(t, "sync", o.sync(t, o.person("a/1 ä", "Ada"), o.person("2", "Bob")), bookCounts{Created: 2})
	bookAccepted(t, "the other org's sync", globex.sync(t, globex.person("g1", "Gina")), bookCounts{Created: 1})
	if _, err := tg.Admin.CreatePerson(ctx, &adminv1.CreatePersonRequest{OrgId: o.id, Person: &adminv1.Person{ExternalDbId: o.prefix + "m1"}}); err != nil {
		t.Fatalf("CreatePerson: %v", err)
	}
	o.announced(t, "person.created a/1 ä", "person.created 2", "person.created m1")

	bookRefused(t, "delete where the org does not allow it", o.delete(t, o.key, "2"), http.StatusForbidden, "deletion_not_allowed", "", -1)
	o.update(t, &adminv1.Org{AllowPersonDeletion: true}, "allow_person_deletion")
	for name, id := range map[string]string{"no such person": "nobody", "a person made by hand": "m1"} {
		bookRefused(t, "delete "+name, o.delete(t, o.key, id), http.StatusNotFound, "not_found", "externalDbId", -1)
	}
	bookRefused(t, "delete the other org's person by its id", o.call(t, http.MethodDelete, "/rest/addressbook/external/persons/"+globex.prefix+"g1", o.key, "", nil),
		http.StatusNotFound, "not_found", "externalDbId", -1)
	bookRefused(t, "delete without a key", o.delete(t, "", "2"), http.StatusUnauthorized, "unauthenticated", "Authorization", -1)
	o.has(t, "after refused deletes", true, "a/1 ä", "2", "m1")
	globex.has(t, "the other org's book after refused deletes", true, "g1")

	bookAccepted(t, "delete", o.delete(t, o.key, "a/1 ä"), bookCounts{Deleted: 1})
	if d := o.announced(t, "person.deleted a/1 ä")["person.deleted a/1 ä"]; d.FirstName != "Ada" {
		t.Fatalf("the event of a deletion: %+v, want the person as it was", d)
	}
	o.has(t, "after a delete", true, "2", "m1")
	bookRefused(t, "delete a deleted person", o.delete(t, o.key, "a/1 ä"), http.StatusNotFound, "not_found", "externalDbId", -1)
	globex.has(t, "the other org's book after a delete", true, "g1")
	if _, err := tg.Admin.GetPerson(ctx, &adminv1.GetPersonRequest{OrgId: globex.id, ExternalDbId: o.prefix + "2"}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetPerson of another org's person: %v, want NotFound", err)
	}
	// Deleted, the person is gone for good: a sync without it changes
	// nothing of it.
	bookAccepted(t, "a sync of the rest", o.sync(t, o.person("2", "Bob")), bookCounts{Unchanged: 1})
}
