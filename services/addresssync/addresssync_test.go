package addresssync

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/book"
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

// locked calls f with org's book, holding the org's lock.
func (e *env) locked(org string, f func(w *book.Writer, b *book.Book)) {
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
	f(w, b)
}

func (e *env) persons(org string) map[string]book.Person {
	e.t.Helper()
	out := map[string]book.Person{}
	e.locked(org, func(_ *book.Writer, b *book.Book) {
		for id, en := range b.Persons {
			out[id] = en.Person
		}
	})
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

// The API's contract is contract.AddressBook's; the tests here need the
// streams, the org's lock, replicas or settings of their own.

// manual adds a person by hand to org's book.
func (e *env) manual(org, id string) {
	e.t.Helper()
	person := book.NewPerson(book.Fields{ExternalDbID: id, APagerProFieldMode: book.ModeLegacy}, book.OriginManual, nil)
	e.locked(org, func(w *book.Writer, b *book.Book) {
		if err := w.Commit(context.Background(), []book.Change{b.Change(id, &person)}); err != nil {
			e.t.Fatal(err)
		}
	})
}

// A sync writes only what changes: an identical list, a list marking
// again who is marked, and every refused request leave the persons bucket
// and the events stream as they were. The events of a sync come in an
// order that does not vary.
func TestSyncWritesOnlyChanges(t *testing.T) {
	e := newEnv(t)
	base := e.service(time.Second)
	key := e.org("acme", func(o *tenant.Org) { o.PersonQuota = 4 })
	globex := e.org("globex", nil)
	want(t, syncList(t, base, globex, p("g1", "Gina")), 200, Counts{Created: 1})
	e.manual("acme", "m1")
	first := []map[string]any{p("1", "Ada"), p("2", "Bob"), p("3", "Cem")}
	want(t, syncList(t, base, key, first...), 200, Counts{Created: 3})

	before := e.writes()
	want(t, syncList(t, base, key, first...), 200, Counts{Unchanged: 3})
	syncURL := base + "/rest/addressbook/sync"
	for _, r := range []struct {
		name, key, body string
		status          int
	}{
		{"Bearer form", "Bearer " + key, `{"personList":[]}`, 401},
		{"an invalid person", key, `{"personList":[{"externalDbId":"1","mobil":"+49151"}]}`, 400},
		{"another org's person", key, `{"personList":[{"externalDbId":"1"},{"externalDbId":"g1"}]}`, 412},
		{"a manual person", key, `{"personList":[{"externalDbId":"m1"}]}`, 412},
		{"over the quota", key, `{"personList":[{"externalDbId":"1"},{"externalDbId":"2"},{"externalDbId":"3"},{"externalDbId":"4"}]}`, 403},
	} {
		if a := call(t, http.MethodPost, syncURL, r.key, "application/json", []byte(r.body)); a.Status != r.status {
			t.Errorf("%s: %v, want %d", r.name, a, r.status)
		}
	}
	// The body limit is a setting (MaxBody, 1 MiB here): its answer's form.
	a := call(t, http.MethodPost, syncURL, key, "application/json", []byte(`{"personList":[{"externalDbId":"1","note":"`+strings.Repeat("n", 1<<20)+`"}]}`))
	if a.Error == nil || a.Error.Code != "too_large" || a.Error.Field != "body" || a.Error.Index != nil {
		t.Errorf("a body over the limit: %v", a)
	}
	if a := call(t, http.MethodDelete, base+"/rest/addressbook/external/persons/1", "Bearer "+key, "", nil); a.Status != 401 {
		t.Errorf("delete in Bearer form: %v", a)
	}
	if after := e.writes(); after != before {
		t.Fatalf("an identical sync and refused requests wrote: persons and events at %v, were %v", after, before)
	}

	// Bob and Cem are marked deleted, in the order of their ids; marking
	// them again writes nothing.
	want(t, syncList(t, base, key, p("1", "Ada")), 200, Counts{Unchanged: 1, MarkedDeleted: 2})
	before = e.writes()
	want(t, syncList(t, base, key, p("1", "Ada")), 200, Counts{Unchanged: 1})
	if after := e.writes(); after != before {
		t.Fatalf("marking again wrote: persons and events at %v, were %v", after, before)
	}
	wantEvents := []string{"person.created m1", "person.created 1", "person.created 2", "person.created 3", "person.deleted 2", "person.deleted 3"}
	if ev := e.events("acme"); !slices.Equal(ev, wantEvents) {
		t.Fatalf("events\n got %q\nwant %q", ev, wantEvents)
	}
}

// A delete waits for a sync of the org that is running, and gives up
// with 423 after the lock wait, deleting nothing.
func TestDeletePersonWhileLocked(t *testing.T) {
	e := newEnv(t)
	base := e.service(300 * time.Millisecond)
	key := e.org("acme", func(o *tenant.Org) { o.AllowPersonDeletion = true })
	want(t, syncList(t, base, key, p("1", "Ada")), 200, Counts{Created: 1})
	del := func() answer {
		return call(t, http.MethodDelete, base+"/rest/addressbook/external/persons/1", key, "", nil)
	}
	w, err := e.book.Lock(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if a := del(); a.Status != 423 || a.Error.Code != "locked" {
		t.Fatalf("while a sync runs: %v", a)
	}
	w.Release()
	if got := e.persons("acme"); len(got) != 1 {
		t.Fatalf("a refused delete changed the book: %v", got)
	}
	want(t, del(), 200, Counts{Deleted: 1})
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
			hangUp := syncUnanswered(t, dying, key, body)
			defer hangUp()
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
			journal := func() uint64 { return journalLen(t, e.conn) }
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

// syncUnanswered posts a sync of body in the background, its answer
// unread, and answers the function that hangs up.
func syncUnanswered(t *testing.T, base, key string, body []byte) context.CancelFunc {
	t.Helper()
	ctx, hangUp := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/rest/addressbook/sync", bytes.NewReader(body))
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
	return hangUp
}

// journalLen answers how many messages SYNC_JOURNAL holds: none once every
// sync has ended.
func journalLen(t *testing.T, conn *jet.Conn) uint64 {
	t.Helper()
	st, err := conn.JS.Stream(context.Background(), bus.StreamSyncJournal)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
