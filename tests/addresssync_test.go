package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// fe2Answer is an answer of the address-book sync API.
type fe2Answer struct {
	Status        int
	Created       int `json:"created"`
	Updated       int `json:"updated"`
	Deleted       int `json:"deleted"`
	MarkedDeleted int `json:"markedDeleted"`
	Unchanged     int `json:"unchanged"`
	Error         *struct {
		Code  string `json:"code"`
		Field string `json:"field"`
		Index *int   `json:"index"`
	} `json:"error"`
}

func (a fe2Answer) String() string {
	if a.Error != nil {
		return fmt.Sprintf("%d %s %s", a.Status, a.Error.Code, a.Error.Field)
	}
	return fmt.Sprintf("%d created %d, updated %d, deleted %d, marked %d, unchanged %d", a.Status, a.Created, a.Updated, a.Deleted, a.MarkedDeleted, a.Unchanged)
}

// fe2 calls the sync API as FE2's clients do: the key as the whole
// Authorization header.
func fe2(t *testing.T, base, key, method, path string, body []byte) fe2Answer {
	t.Helper()
	h := map[string]string{"Authorization": key}
	if body != nil {
		h["Content-Type"] = "application/json"
	}
	r := contract.Do(t, contract.Request{Method: method, URL: base + path, Header: h, Body: body})
	a := fe2Answer{Status: r.Status}
	if err := json.Unmarshal(r.Body, &a); err != nil || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("answer %d is not JSON: %s", r.Status, r.Body)
	}
	return a
}

func syncBody(t *testing.T, persons ...map[string]any) []byte {
	t.Helper()
	if persons == nil {
		persons = []map[string]any{}
	}
	return mustJSON(t, map[string]any{"source": "Personalverwaltung", "personList": persons})
}

func pushSync(t *testing.T, k *harness.Kurier, key string, persons ...map[string]any) fe2Answer {
	t.Helper()
	return fe2(t, k.HTTP, key, http.MethodPost, "/rest/addressbook/sync", syncBody(t, persons...))
}

func updateOrg(t *testing.T, adm adminv1.AdminServiceClient, o *adminv1.Org, paths ...string) {
	t.Helper()
	if _, err := adm.UpdateOrg(context.Background(), &adminv1.UpdateOrgRequest{Org: o, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}); err != nil {
		t.Fatal(err)
	}
}

func addressbookOrg(t *testing.T, k *harness.Kurier, org string) (adminv1.AdminServiceClient, string) {
	t.Helper()
	adm, key := setup(t, k, org, adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK)
	updateOrg(t, adm, &adminv1.Org{OrgId: org, AddressbookSyncEnabled: true}, "addressbook_sync_enabled")
	return adm, key
}

func wantFE2(t *testing.T, got fe2Answer, want string) {
	t.Helper()
	if got.String() != want {
		t.Fatalf("answer %s, want %s", got, want)
	}
}

func persons(t *testing.T, adm adminv1.AdminServiceClient, org string, deleted bool) map[string]*adminv1.Person {
	t.Helper()
	out := map[string]*adminv1.Person{}
	req := &adminv1.ListPersonsRequest{OrgId: org, IncludeDeleted: deleted, PageSize: 1000}
	for {
		resp, err := adm.ListPersons(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.GetPersons() {
			out[p.GetExternalDbId()] = p
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			return out
		}
	}
}

// bigList is n persons, enough to keep a sync busy for a while.
func bigList(n int) []map[string]any {
	list := make([]map[string]any, n)
	for i := range list {
		list[i] = contract.FE2Person(strconv.Itoa(i), "p"+strconv.Itoa(i))
	}
	return list
}

func TestAddressBookSyncOneAtATime(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_SYNC_LOCK_WAIT=300ms"}})
	adm, key := addressbookOrg(t, k, "acme")
	// A second replica of the service, on the same NATS.
	replica := harness.Start(t, harness.Options{Role: "addresssync", NATSURL: k.NATS, Env: []string{"KURIER_SYNC_LOCK_WAIT=30s"}})
	ctx := context.Background()
	js, err := jetstream.New(k.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	locks, err := js.KeyValue(ctx, bus.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}

	// While another holds acme's lock, waiting 300 ms is not enough: 423,
	// nothing changed.
	if _, err := locks.Create(ctx, bus.BookLockKey("acme"), []byte("another replica")); err != nil {
		t.Fatal(err)
	}
	if a := pushSync(t, k, key, contract.FE2Person("x", "x")); a.Status != 423 || a.Error.Code != "locked" {
		t.Fatalf("second sync while the first runs: %s", a)
	}
	if got := persons(t, adm, "acme", true); len(got) != 0 {
		t.Fatalf("a refused sync left persons: %v", got)
	}
	if err := locks.Delete(ctx, bus.BookLockKey("acme")); err != nil {
		t.Fatal(err)
	}

	// Two real syncs at once: the patient replica waits its turn and finds
	// the list synced, whichever finishes when.
	held, err := locks.Watch(ctx, bus.BookLockKey("acme"), jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Stop()
	big := syncBody(t, bigList(5000)...)
	done := make(chan fe2Answer, 1)
	go func() { done <- fe2(t, k.HTTP, key, http.MethodPost, "/rest/addressbook/sync", big) }()
	<-held.Updates() // the big sync has the lock
	wantFE2(t, fe2(t, replica.HTTP, key, http.MethodPost, "/rest/addressbook/sync", big), "200 created 0, updated 0, deleted 0, marked 0, unchanged 5000")
	wantFE2(t, <-done, "200 created 5000, updated 0, deleted 0, marked 0, unchanged 0")
}

func TestAddressBookSyncKilledMidway(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_SYNC_LOCK_TTL=2s"}})
	_, key := addressbookOrg(t, k, "acme")
	syncKilledMidway(t, k, key, func(k *harness.Kurier) adminv1.AdminServiceClient { return k.Admin(t) })
}

// syncKilledMidway has k, which serves the sync API of acme's key, sync
// 3000 persons, then a list that changes each of them and adds as many,
// and kills k as soon as that sync's journal says it has begun. Restarted,
// k finishes or undoes the sync: the book is as before it or as after,
// never in between, and each change is announced once. admin dials an
// admin API, which may be k's.
func syncKilledMidway(t *testing.T, k *harness.Kurier, key string, admin func(*harness.Kurier) adminv1.AdminServiceClient) {
	t.Helper()
	list := bigList(6000)
	wantFE2(t, syncTaken(t, k, key, list[:3000]...), "200 created 3000, updated 0, deleted 0, marked 0, unchanged 0")

	// The next sync changes every person it had and adds as many: killed
	// as soon as its journal says it has begun.
	for _, p := range list[:3000] {
		p["note"] = "geändert"
	}
	begun, err := k.Conn(t).SubscribeSync(bus.SyncState("acme"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, k.HTTP+"/rest/addressbook/sync", bytes.NewReader(syncBody(t, list...)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", key)
	req.Header.Set("Content-Type", "application/json")
	answered := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("answered %d before the kill", resp.StatusCode)
		}
		answered <- err
	}()
	if _, err := begun.NextMsg(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	k.Stop(t, syscall.SIGKILL)
	t.Logf("sync request: %v", <-answered)

	// Restarted, it finishes or undoes the sync on its own.
	k = k.Restart(t)
	adm := admin(k)
	js, err := jetstream.New(k.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitForErr(t, 30*time.Second, "an empty journal", func() error {
		st, err := js.Stream(context.Background(), bus.StreamSyncJournal)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("it still holds %d messages", info.State.Msgs)
		}
		return nil
	})
	book := persons(t, adm, "acme", true)
	changed := 0
	for _, p := range book {
		if p.GetNote() == "geändert" {
			changed++
		}
	}
	events := len(stored(t, k, "acme"))
	switch {
	case len(book) == 3000 && changed == 0 && events == 3000:
		t.Log("the sync was undone")
	case len(book) == 6000 && changed == 3000 && events == 9000:
		t.Log("the sync was finished")
	default:
		t.Fatalf("book between before and after: %d persons, %d changed, %d events", len(book), changed, events)
	}
	// Sent again, it makes the book as it should be, announcing each change
	// once.
	if a := syncTaken(t, k, key, list...); a.Status != 200 || a.Created+a.Updated+a.Unchanged != 6000 {
		t.Fatalf("the sync sent again: %s", a)
	}
	// A sync answers once its changes are made; the events of a sync that
	// could not send them all at once follow from its journal.
	natstest.WaitForErr(t, 30*time.Second, "each change announced once", func() error {
		switch events := len(stored(t, k, "acme")); {
		case events > 9000:
			t.Fatalf("%d events, want 9000: each change announced once", events)
		case events < 9000:
			return fmt.Errorf("%d events of 9000", events)
		}
		return nil
	})
}

// syncTaken pushes a sync as a client does: a 503 changed nothing and asks
// to retry (a loaded machine may not confirm a short lock lease in time).
func syncTaken(t *testing.T, k *harness.Kurier, key string, persons ...map[string]any) fe2Answer {
	t.Helper()
	var a fe2Answer
	natstest.WaitForErr(t, 60*time.Second, "a sync taken", func() error {
		if a = pushSync(t, k, key, persons...); a.Status == http.StatusServiceUnavailable {
			return fmt.Errorf("%s", a)
		}
		return nil
	})
	return a
}

// TestPersonChangesAreCollmexEvent9: a Collmex system that subscribed to
// event 9 ("address or member changed") is pinged for the persons a sync
// changes and finds them in its change feed.
func TestPersonChangesAreCollmexEvent9(t *testing.T) {
	t.Parallel()
	k := pingKurier(t)
	adm, key := addressbookOrg(t, k, "acme")
	ctx := context.Background()
	kr, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "acme", Description: "feed", Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_CHANGES}})
	if err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t)
	pingSub(t, adm, "acme", "collmex", rcv.URL+"/collmex", "9")
	wantFE2(t, pushSync(t, k, key, contract.FE2Person("P-1", "Erika")), "200 created 1, updated 0, deleted 0, marked 0, unchanged 0")
	rcv.next(t, 10*delay)
	c := feed(t, k, kr.GetSecret(), "system=collmex&type=9")
	if c.Status != http.StatusOK || len(c.Changes) != 1 || c.Changes[0].Type != "person.created" || c.Changes[0].Subject != "P-1" {
		t.Fatalf("feed for event 9: %+v", c)
	}
}
