package addresssync

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/internal/book"
	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/natstest"
)

type env struct {
	t       *testing.T
	conn    *jet.Conn
	tenants *tenant.Store
	book    *book.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	conn := natstest.Start(t, bus.DefaultLimits())
	ts, err := tenant.Open(context.Background(), conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	b, err := book.Open(context.Background(), conn, book.Locking{TTL: 3 * time.Second, Wait: time.Second}, natstest.Log)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, conn: conn, tenants: ts, book: b}
}

// service starts a replica of the service and answers its base URL.
func (e *env) service(wait time.Duration) string {
	e.t.Helper()
	return e.replica(e.conn, wait)
}

// replica starts a replica of the service on its own connection.
func (e *env) replica(conn *jet.Conn, wait time.Duration) string {
	e.t.Helper()
	cfg := DefaultConfig()
	cfg.Lock = book.Locking{TTL: 3 * time.Second, Wait: wait}
	cfg.RecoveryInterval = 200 * time.Millisecond
	cfg.MaxBody = 1 << 20
	s, err := New(context.Background(), cfg, conn, natstest.Log, prometheus.NewRegistry())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
	mux := http.NewServeMux()
	s.Routes(mux)
	srv := httptest.NewServer(mux)
	e.t.Cleanup(srv.Close)
	return srv.URL
}

// org makes an org with the sync on and answers its address-book key.
func (e *env) org(id string, change func(*tenant.Org)) string {
	e.t.Helper()
	o := tenant.Org{ID: id, Created: time.Now(), AddressbookSync: true}
	if change != nil {
		change(&o)
	}
	if err := e.tenants.CreateOrg(context.Background(), o); err != nil {
		e.t.Fatal(err)
	}
	return e.key(id, tenant.ScopeAddressbook)
}

func (e *env) key(org string, scope tenant.Scope) string {
	e.t.Helper()
	id, secret := tenant.NewSecret()
	if err := e.tenants.CreateKey(context.Background(), tenant.Key{ID: id, Org: org, Scopes: []tenant.Scope{scope},
		Hash: tenant.HashSecret(secret), Created: time.Now()}); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

func (e *env) set(org string, change func(*tenant.Org)) {
	e.t.Helper()
	if _, err := e.tenants.UpdateOrg(context.Background(), org, func(o *tenant.Org) error { change(o); return nil }); err != nil {
		e.t.Fatal(err)
	}
}

type answer struct {
	Status int
	Counts
	Error *struct {
		Code    string `json:"code"`
		Field   string `json:"field"`
		Index   *int   `json:"index"`
		Message string `json:"message"`
	} `json:"error"`
}

func (a answer) String() string {
	if a.Error != nil {
		return fmt.Sprintf("%d %s %s", a.Status, a.Error.Code, a.Error.Field)
	}
	return fmt.Sprintf("%d %+v", a.Status, a.Counts)
}

func call(t *testing.T, method, url, key, contentType string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode}
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, b)
	}
	return a
}

func syncList(t *testing.T, base, key string, persons ...map[string]any) answer {
	t.Helper()
	if persons == nil {
		persons = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"source": "test", "personList": persons})
	if err != nil {
		t.Fatal(err)
	}
	return call(t, http.MethodPost, base+"/rest/addressbook/sync", key, "application/json", b)
}

func p(id, first string, more ...any) map[string]any {
	m := map[string]any{"externalDbId": id, "firstName": first, "lastName": "Muster"}
	for i := 0; i+1 < len(more); i += 2 {
		m[more[i].(string)] = more[i+1]
	}
	return m
}

func (e *env) persons(org string) map[string]book.Person {
	e.t.Helper()
	w, err := e.book.Lock(context.Background(), org)
	if err != nil {
		e.t.Fatal(err)
	}
	defer w.Release()
	b, err := w.Book(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]book.Person{}
	for id, en := range b.Persons {
		out[id] = en.Person
	}
	return out
}

// writes answers the last sequences of the persons bucket and the events
// stream, which move with every write.
func (e *env) writes() [2]uint64 {
	e.t.Helper()
	var out [2]uint64
	for i, name := range []string{bus.KVStream(bus.BucketPersons), bus.StreamEvents} {
		st, err := e.conn.JS.Stream(context.Background(), name)
		if err != nil {
			e.t.Fatal(err)
		}
		info, err := st.Info(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		out[i] = info.State.LastSeq
	}
	return out
}

func (e *env) events(org string) []string {
	e.t.Helper()
	var out []string
	_, _, err := jet.Read(context.Background(), e.conn.JS, bus.StreamEvents,
		jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.EventsOrgFilter(org)}}, 1<<20,
		func(m jetstream.Msg) (bool, error) {
			var ev struct{ Type, Subject string }
			err := json.Unmarshal(m.Data(), &ev)
			out = append(out, ev.Type+" "+ev.Subject)
			return false, err
		})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func want(t *testing.T, got answer, status int, c Counts) {
	t.Helper()
	if got.Status != status || got.Counts != c || (status == http.StatusOK) != (got.Error == nil) {
		t.Fatalf("answer %v, want %d %+v", got, status, c)
	}
}

func TestSyncReconciles(t *testing.T) {
	e := newEnv(t)
	base := e.service(time.Second)
	key := e.org("acme", nil)
	manual := book.NewPerson(book.Fields{ExternalDbID: "m1", FirstName: "Manu", APagerProFieldMode: book.ModeLegacy}, book.OriginManual, nil)
	w, err := e.book.Lock(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := w.Book(context.Background())
	if err := w.Commit(context.Background(), []book.Change{b.Change("m1", &manual)}); err != nil {
		t.Fatal(err)
	}
	w.Release()

	first := []map[string]any{p("1", "Ada", "aPagerProFieldMode", "TOKEN"), p("2", "Bob"), p("3", "Cem", "mobil", "0049151123456")}
	want(t, syncList(t, base, key, first...), 200, Counts{Created: 3})
	got := e.persons("acme")
	token := got["1"].Token
	if len(got) != 4 || token == "" || got["2"].Token != "" || got["3"].Mobil != "0049151123456" || got["2"].Origin != book.OriginSync {
		t.Fatalf("book after the first sync: %+v", got)
	}

	// The same list again writes nothing and announces nothing.
	before := e.writes()
	want(t, syncList(t, base, key, first...), 200, Counts{Unchanged: 3})
	if after := e.writes(); after != before {
		t.Fatalf("an identical sync wrote: persons and events at %v, were %v", after, before)
	}

	// Bob changes, Cem is gone (marked: deleting is not allowed), Ada's
	// token stays though her mode changes.
	second := []map[string]any{p("1", "Ada", "aPagerProFieldMode", "LEGACY", "aPagerPro", "ada@example.com"), p("2", "Bobby")}
	want(t, syncList(t, base, key, second...), 200, Counts{Updated: 2, MarkedDeleted: 1})
	got = e.persons("acme")
	if got["1"].Token != token || got["2"].FirstName != "Bobby" || !got["3"].Deleted || got["m1"].Deleted {
		t.Fatalf("book after the second sync: %+v", got)
	}
	// Marked again is no change.
	want(t, syncList(t, base, key, second...), 200, Counts{Unchanged: 2})

	// Listed again, Cem is back.
	want(t, syncList(t, base, key, append(second, p("3", "Cem"))...), 200, Counts{Unchanged: 2, Updated: 1})
	if got = e.persons("acme"); got["3"].Deleted || got["3"].Mobil != "" {
		t.Fatalf("restored person: %+v", got["3"])
	}

	// With deletion allowed, the missing are deleted; the manual person stays.
	e.set("acme", func(o *tenant.Org) { o.AllowPersonDeletion = true })
	want(t, syncList(t, base, key, second[0]), 200, Counts{Unchanged: 1, Deleted: 2})
	got = e.persons("acme")
	if _, ok := got["2"]; ok || len(got) != 2 || got["m1"].FirstName != "Manu" {
		t.Fatalf("book after deleting: %+v", got)
	}
	wantEvents := []string{"person.created m1", "person.created 1", "person.created 2", "person.created 3",
		"person.updated 1", "person.updated 2", "person.deleted 3", "person.updated 3", "person.deleted 2", "person.deleted 3"}
	if ev := e.events("acme"); !slices.Equal(ev, wantEvents) {
		t.Fatalf("events\n got %q\nwant %q", ev, wantEvents)
	}

	// An empty list deletes every synced person, never the manual one.
	want(t, syncList(t, base, key), 200, Counts{Deleted: 1})
	if got = e.persons("acme"); len(got) != 1 || got["m1"].Origin != book.OriginManual {
		t.Fatalf("book after an empty list: %+v", got)
	}
}

func TestSyncRefusals(t *testing.T) {
	e := newEnv(t)
	base := e.service(time.Second)
	key := e.org("acme", func(o *tenant.Org) { o.PersonQuota = 3 })
	globex := e.org("globex", nil)
	off := e.org("off", func(o *tenant.Org) { o.AddressbookSync = false })
	ingestKey := e.key("acme", tenant.ScopeIngest)
	revoked := e.key("acme", tenant.ScopeAddressbook)
	if _, err := e.tenants.RevokeKey(context.Background(), revoked[4:20], time.Now()); err != nil {
		t.Fatal(err)
	}
	want(t, syncList(t, base, globex, p("g1", "Gina")), 200, Counts{Created: 1})
	want(t, syncList(t, base, key, p("1", "Ada")), 200, Counts{Created: 1})
	manual := book.NewPerson(book.Fields{ExternalDbID: "m1", APagerProFieldMode: book.ModeLegacy}, book.OriginManual, nil)
	w, err := e.book.Lock(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := w.Book(context.Background())
	if err := w.Commit(context.Background(), []book.Change{b.Change("m1", &manual)}); err != nil {
		t.Fatal(err)
	}
	w.Release()
	before := e.writes()

	syncURL := base + "/rest/addressbook/sync"
	valid := []byte(`{"source":"x","personList":[{"externalDbId":"1","firstName":"Ada"}]}`)
	tests := []struct {
		name        string
		key, ct     string
		body        string
		status      int
		code, field string
		index       int // -1: none
	}{
		{"no key", "", "application/json", string(valid), 401, "unauthenticated", "Authorization", -1},
		{"wrong key", "kur_0123456789abcdef_" + strings.Repeat("A", 43), "application/json", string(valid), 401, "unauthenticated", "Authorization", -1},
		{"Bearer form", "Bearer " + key, "application/json", string(valid), 401, "unauthenticated", "Authorization", -1},
		{"revoked key", revoked, "application/json", string(valid), 401, "unauthenticated", "Authorization", -1},
		{"an ingest key", ingestKey, "application/json", string(valid), 401, "unauthenticated", "Authorization", -1},
		{"sync off", off, "application/json", string(valid), 503, "sync_disabled", "", -1},
		{"not JSON", key, "text/plain", string(valid), 415, "unsupported_media_type", "Content-Type", -1},
		{"no personList", key, "application/json", `{"source":"x"}`, 400, "invalid_body", "personList", -1},
		{"body not an object", key, "application/json", `[1]`, 400, "invalid_body", "body", -1},
		{"source not a string", key, "application/json", `{"source":1,"personList":[]}`, 400, "invalid_body", "source", -1},
		{"personList not an array", key, "application/json", `{"personList":{}}`, 400, "invalid_body", "personList", -1},
		{"person not an object", key, "application/json", `{"personList":[{"externalDbId":"1"},"x"]}`, 400, "invalid_person", "personList[1]", 1},
		{"firstName a number", key, "application/json", `{"personList":[{"externalDbId":"1"},{"externalDbId":"2","firstName":5}]}`, 400, "invalid_person", "personList[1].firstName", 1},
		{"osGroups a string", key, "application/json", `{"personList":[{"externalDbId":"1","osGroups":"x"}]}`, 400, "invalid_person", "personList[0].osGroups", 0},
		{"no externalDbId", key, "application/json", `{"personList":[{"externalDbId":"1"},{"externalDbId":"2"},{"firstName":"x"}]}`, 400, "invalid_person", "personList[2].externalDbId", 2},
		{"twice the same id", key, "application/json", `{"personList":[{"externalDbId":"1"},{"externalDbId":"1"}]}`, 400, "invalid_person", "personList[1].externalDbId", 1},
		{"mobil not 0049", key, "application/json", `{"personList":[{"externalDbId":"1","mobil":"+49151"}]}`, 400, "invalid_person", "personList[0].mobil", 0},
		{"aPagerPro in token mode", key, "application/json", `{"personList":[{"externalDbId":"1","aPagerPro":"a@example.com","aPagerProFieldMode":"TOKEN"}]}`, 400, "invalid_person", "personList[0].aPagerPro", 0},
		{"bad aPagerPro", key, "application/json", `{"personList":[{"externalDbId":"1","aPagerPro":"0151"}]}`, 400, "invalid_person", "personList[0].aPagerPro", 0},
		{"bad mode", key, "application/json", `{"personList":[{"externalDbId":"1","aPagerProFieldMode":"PAGER"}]}`, 400, "invalid_person", "personList[0].aPagerProFieldMode", 0},
		{"bad email", key, "application/json", `{"personList":[{"externalDbId":"1","email":"ada"}]}`, 400, "invalid_person", "personList[0].email", 0},
		{"too large", key, "application/json", `{"personList":[{"externalDbId":"1","note":"` + strings.Repeat("n", 1<<20) + `"}]}`, 413, "too_large", "body", -1},
		{"another org's person", key, "application/json", `{"personList":[{"externalDbId":"1"},{"externalDbId":"g1"}]}`, 412, "person_of_other_org", "personList[1].externalDbId", 1},
		{"a manual person", key, "application/json", `{"personList":[{"externalDbId":"m1"}]}`, 412, "person_made_by_hand", "personList[0].externalDbId", 0},
		{"over the quota", key, "application/json", `{"personList":[{"externalDbId":"1"},{"externalDbId":"2"},{"externalDbId":"3"}]}`, 403, "quota_exceeded", "personList", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, http.MethodPost, syncURL, tt.key, tt.ct, []byte(tt.body))
			if a.Status != tt.status || a.Error == nil || a.Error.Code != tt.code || a.Error.Field != tt.field {
				t.Fatalf("answer %v, want %d %s %s", a, tt.status, tt.code, tt.field)
			}
			if (tt.index < 0) != (a.Error.Index == nil) || tt.index >= 0 && *a.Error.Index != tt.index {
				t.Fatalf("index %v, want %d", a.Error.Index, tt.index)
			}
		})
	}
	if after := e.writes(); after != before {
		t.Fatalf("refused syncs wrote: persons and events at %v, were %v", after, before)
	}
	// At the quota's edge: Ada, the manual person and one more make 3.
	want(t, syncList(t, base, key, p("1", "Ada"), p("2", "Bob")), 200, Counts{Created: 1, Unchanged: 1})
	// A synced id the other org gave up is free again.
	e.set("globex", func(o *tenant.Org) { o.AllowPersonDeletion = true })
	want(t, call(t, http.MethodDelete, base+"/rest/addressbook/external/persons/g1", globex, "", nil), 200, Counts{Deleted: 1})
	want(t, syncList(t, base, key, p("1", "Ada"), p("g1", "Gina")), 200, Counts{Created: 1, Unchanged: 1, MarkedDeleted: 1})
}

func TestDeletePerson(t *testing.T) {
	e := newEnv(t)
	base := e.service(300 * time.Millisecond)
	key := e.org("acme", nil)
	globex := e.org("globex", func(o *tenant.Org) { o.AllowPersonDeletion = true })
	want(t, syncList(t, base, key, p("a/1 ä", "Ada"), p("2", "Bob")), 200, Counts{Created: 2})
	want(t, syncList(t, base, globex, p("g1", "Gina")), 200, Counts{Created: 1})
	del := func(key, id string) answer {
		return call(t, http.MethodDelete, base+"/rest/addressbook/external/persons/"+url.PathEscape(id), key, "", nil)
	}
	if a := del(key, "2"); a.Status != 403 || a.Error.Code != "deletion_not_allowed" {
		t.Fatalf("without permission: %v", a)
	}
	e.set("acme", func(o *tenant.Org) { o.AllowPersonDeletion = true })
	for _, id := range []string{"nobody", "g1"} {
		if a := del(key, id); a.Status != 404 {
			t.Fatalf("delete %s: %v", id, a)
		}
	}
	if a := del("", "2"); a.Status != 401 {
		t.Fatalf("without a key: %v", a)
	}
	w, err := e.book.Lock(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if a := del(key, "2"); a.Status != 423 || a.Error.Code != "locked" {
		t.Fatalf("while a sync runs: %v", a)
	}
	w.Release()
	want(t, del(key, "a/1 ä"), 200, Counts{Deleted: 1})
	if got := e.persons("acme"); len(got) != 1 {
		t.Fatalf("book after delete: %v", got)
	}
	if ev := e.events("acme"); ev[len(ev)-1] != "person.deleted a/1 ä" {
		t.Fatalf("events %q", ev)
	}
	if got := e.persons("globex"); len(got) != 1 {
		t.Fatalf("the other org's book changed: %v", got)
	}
}

func TestOneSyncAtATimeAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	one, other, impatient := e.service(10*time.Second), e.service(10*time.Second), e.service(300*time.Millisecond)
	key := e.org("acme", nil)

	// A sync running elsewhere: the impatient replica gives up, changing nothing.
	w, err := e.book.Lock(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a := syncList(t, impatient, key, p("1", "Ada"))
	if a.Status != 423 || a.Error.Code != "locked" || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("answer %v after %v", a, time.Since(start))
	}
	w.Release()
	if got := e.persons("acme"); len(got) != 0 {
		t.Fatalf("the refused sync wrote: %v", got)
	}

	// Two replicas given the same list at once: one creates, the other,
	// waiting its turn, finds nothing to do.
	list := make([]map[string]any, 3000)
	for i := range list {
		list[i] = p(fmt.Sprint(i), "P")
	}
	answers := make([]answer, 2)
	var wg sync.WaitGroup
	for i, base := range []string{one, other} {
		wg.Go(func() { answers[i] = syncList(t, base, key, list...) })
	}
	wg.Wait()
	slices.SortFunc(answers, func(a, b answer) int { return b.Created - a.Created })
	want(t, answers[0], 200, Counts{Created: 3000})
	want(t, answers[1], 200, Counts{Unchanged: 3000})
	if n := len(e.events("acme")); n != 3000 {
		t.Fatalf("%d events, want 3000", n)
	}
}

// TestLiveReplicasRecoverSyncOfDeadOne: a replica dies in the middle of a
// sync while two others run on. Once its lock has expired, one of them
// finishes the sync, sending each of its events once, or undoes it, on
// its own: the book is as before or as after, never in between.
func TestLiveReplicasRecoverSyncOfDeadOne(t *testing.T) {
	for _, tt := range []struct {
		name, killedAt string // the state of the sync's journal that the replica dies at
	}{
		{"while making its writes", "begun"},
		{"while sending its events", "applied"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			live := e.service(10 * time.Second)
			e.service(10 * time.Second) // another sweeping at the same time
			doomed := natstest.Connect(t, e.conn, nil)
			dying := e.replica(doomed, 10*time.Second)
			key := e.org("acme", nil)
			list := make([]map[string]any, 6000)
			for i := range list {
				list[i] = p(fmt.Sprint(i), "P")
			}
			want(t, syncList(t, live, key, list[:3000]...), 200, Counts{Created: 3000})

			// The next sync changes every person there is and adds as many.
			for _, p := range list[:3000] {
				p["note"] = "changed"
			}
			states, err := e.conn.NC.SubscribeSync(bus.SyncState("acme"))
			if err != nil {
				t.Fatal(err)
			}
			body, err := json.Marshal(map[string]any{"personList": list})
			if err != nil {
				t.Fatal(err)
			}
			ctx, hangUp := context.WithCancel(context.Background())
			defer hangUp()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, dying+"/rest/addressbook/sync", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", key)
			req.Header.Set("Content-Type", "application/json")
			go func() {
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			for {
				m, err := states.NextMsg(30 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				var st struct{ State string }
				if json.Unmarshal(m.Data, &st) == nil && st.State == tt.killedAt {
					break
				}
			}
			doomed.NC.Close() // the replica dies: its writes and its lock's renewals end
			killed := time.Now()
			hangUp()
			journal := func() uint64 {
				st, err := e.conn.JS.Stream(context.Background(), bus.StreamSyncJournal)
				if err != nil {
					t.Fatal(err)
				}
				info, err := st.Info(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return info.State.Msgs
			}
			if journal() == 0 {
				t.Fatal("the sync ended before the replica died: the test tests nothing")
			}

			const lockTTL = 3 * time.Second
			natstest.WaitFor(t, lockTTL+3*time.Second, "the live replicas to end the sync", func() bool { return journal() == 0 })
			t.Logf("recovered %v after the replica died", time.Since(killed).Round(10*time.Millisecond))
			got, changed := e.persons("acme"), 0
			for _, p := range got {
				if p.Note == "changed" {
					changed++
				}
			}
			events := e.events("acme")
			seen := map[string]bool{}
			for _, ev := range events {
				if seen[ev] {
					t.Fatalf("event %q sent twice", ev)
				}
				seen[ev] = true
			}
			switch {
			case len(got) == 6000 && changed == 3000 && len(events) == 9000:
				t.Log("the sync was finished")
			case tt.killedAt == "begun" && len(got) == 3000 && changed == 0 && len(events) == 3000:
				t.Log("the sync was undone")
			default:
				t.Fatalf("after the recovery: %d persons, %d changed, %d events", len(got), changed, len(events))
			}
		})
	}
}

// FE2's API takes the key as the whole Authorization header. A key sent
// as a bearer token, as most APIs want it, is refused with a message that
// says so, the same whether the key exists or not; and nothing changes.
func TestSyncBearerKeyHint(t *testing.T) {
	e := newEnv(t)
	base := e.service(time.Second)
	key := e.org("acme", func(o *tenant.Org) { o.AllowPersonDeletion = true })
	want(t, syncList(t, base, key, p("1", "Ada")), 200, Counts{Created: 1})
	before := e.writes()
	_, unknown := tenant.NewSecret()
	for _, auth := range []string{"Bearer " + key, "bearer " + key, "Bearer " + unknown} {
		for _, a := range []answer{
			call(t, http.MethodPost, base+"/rest/addressbook/sync", auth, "application/json", []byte(`{"personList":[]}`)),
			call(t, http.MethodDelete, base+"/rest/addressbook/external/persons/1", auth, "", nil),
		} {
			if a.Status != http.StatusUnauthorized || a.Error == nil || a.Error.Code != "unauthenticated" || a.Error.Field != "Authorization" ||
				!strings.Contains(a.Error.Message, `without "Bearer "`) {
				t.Errorf("%.9s…: %d %+v", auth, a.Status, a.Error)
			}
		}
	}
	// A wrong key without Bearer gets no such hint.
	if a := syncList(t, base, unknown); a.Status != http.StatusUnauthorized || strings.Contains(a.Error.Message, "Bearer") {
		t.Errorf("an unknown key: %d %+v", a.Status, a.Error)
	}
	if after := e.writes(); after != before {
		t.Fatalf("refused calls wrote: persons and events at %v, were %v", after, before)
	}
}
