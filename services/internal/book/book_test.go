package book

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/lease"
	"kurier.dev/services/natstest"
)

// testLocking lets a writer that dies free its lock within seconds, and
// one that lives keep it however busy the machine.
var testLocking = Locking{TTL: 2 * time.Second, Wait: 10 * time.Second}

func open(t *testing.T, conn *jet.Conn) *Store {
	t.Helper()
	s, err := Open(context.Background(), conn, testLocking, natstest.Log)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func person(id, name string) *Person {
	p := NewPerson(Fields{ExternalDbID: id, FirstName: name, OSFunctions: []string{}, OSGroups: []string{},
		AlarmGroups: []string{}, APagerProFieldMode: ModeLegacy}, OriginSync, nil)
	return &p
}

func lock(t *testing.T, s *Store, org string) (*Writer, *Book) {
	t.Helper()
	w, err := s.Lock(context.Background(), org)
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.Book(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return w, b
}

// names answers the org's persons as id=firstName, sorted, with a * for
// those marked deleted.
func names(t *testing.T, s *Store, org string) []string {
	t.Helper()
	b, err := s.load(context.Background(), org)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for id, e := range b.Persons {
		n := id + "=" + e.Person.FirstName
		if e.Person.Deleted {
			n += "*"
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

type stored struct {
	Type    string `json:"type"`
	Subject string `json:"subject"`
	Data    Person `json:"data"`
}

func events(t *testing.T, conn *jet.Conn, org string) []stored {
	t.Helper()
	var out []stored
	_, _, err := jet.Read(context.Background(), conn.JS, bus.StreamEvents,
		jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.EventsOrgFilter(org)}}, 1<<20,
		func(m jetstream.Msg) (bool, error) {
			var e stored
			err := json.Unmarshal(m.Data(), &e)
			out = append(out, e)
			return false, err
		})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func owner(t *testing.T, s *Store, id string) string {
	t.Helper()
	o, err := s.Owners(context.Background(), []string{id})
	if err != nil {
		t.Fatal(err)
	}
	return o[id].Org
}

func journalEmpty(t *testing.T, s *Store) {
	t.Helper()
	info, err := s.journal.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("the journal holds %d messages after the change ended", info.State.Msgs)
	}
}

// seed commits the persons as synced ones and answers the changes.
func seed(t *testing.T, s *Store, org string, ps ...*Person) {
	t.Helper()
	w, b := lock(t, s, org)
	defer w.Release()
	var cs []Change
	for _, p := range ps {
		c := b.Change(p.ExternalDbID, p)
		c.Claim = true
		cs = append(cs, c)
	}
	if err := w.Commit(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
}

func TestCommitWritesClaimsAndAnnounces(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	s := open(t, conn)
	seed(t, s, "acme", person("1", "Ada"), person("2", "Bob"), person("3", "Cem"))
	if got := names(t, s, "acme"); !slices.Equal(got, []string{"1=Ada", "2=Bob", "3=Cem"}) {
		t.Fatalf("book %v", got)
	}
	journalEmpty(t, s)

	w, b := lock(t, s, "acme")
	upd := *person("1", "Ada Lovelace")
	marked := b.Persons["2"].Person
	marked.Deleted = true
	err := w.Commit(context.Background(), []Change{b.Change("1", &upd), b.Change("2", &marked), b.Change("3", nil)})
	w.Release()
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, s, "acme"); !slices.Equal(got, []string{"1=Ada Lovelace", "2=Bob*"}) {
		t.Fatalf("book %v", got)
	}
	if owner(t, s, "1") != "acme" || owner(t, s, "2") != "acme" || owner(t, s, "3") != "" {
		t.Fatalf("owners: 1 %q, 2 %q, 3 %q; a deleted person's id is given up, a marked one's kept",
			owner(t, s, "1"), owner(t, s, "2"), owner(t, s, "3"))
	}
	var got []string
	for _, e := range events(t, conn, "acme") {
		got = append(got, e.Type+" "+e.Subject+" "+e.Data.FirstName)
	}
	want := []string{"person.created 1 Ada", "person.created 2 Bob", "person.created 3 Cem",
		"person.updated 1 Ada Lovelace", "person.deleted 2 Bob", "person.deleted 3 Cem"}
	if !slices.Equal(got, want) {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
	journalEmpty(t, s)
}

func TestClaimOfAnotherOrgsIDChangesNothing(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	s := open(t, conn)
	seed(t, s, "acme", person("x", "Xaver"))
	seed(t, s, "globex", person("g", "Gina"))

	// A claim made from a stale read, as if the owner read were behind.
	w, b := lock(t, s, "globex")
	cs := []Change{b.Change("g", person("g", "Gina G")), b.Change("new", person("new", "Nina")), b.Change("x", person("x", "X"))}
	for i := 1; i < 3; i++ {
		cs[i].Claim = true
	}
	err := w.Commit(context.Background(), cs)
	w.Release()
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.ID != "x" {
		t.Fatalf("commit: %v, want a conflict on x", err)
	}
	if got := names(t, s, "globex"); !slices.Equal(got, []string{"g=Gina"}) {
		t.Fatalf("globex's book after the refused change: %v", got)
	}
	if owner(t, s, "x") != "acme" || owner(t, s, "new") != "" {
		t.Fatalf("owners after the refused change: x %q, new %q", owner(t, s, "x"), owner(t, s, "new"))
	}
	if n := len(events(t, conn, "globex")); n != 1 {
		t.Fatalf("globex has %d events, want only its first person's", n)
	}
	journalEmpty(t, s)
}

// crash journals a change and makes part of it (applied says how much),
// as a writer does that dies then: die leaves its lock behind.
func crash(t *testing.T, s *Store, org string, applied int, mark bool, cs ...Change) *Writer {
	t.Helper()
	w, _ := lock(t, s, org)
	j := &journal{org: org, state: state{Sync: "crashed", State: stateBegun, Time: time.Now().Format(time.RFC3339)}, changes: cs}
	ctx := context.Background()
	if err := w.writeJournal(ctx, j); err != nil {
		t.Fatal(err)
	}
	part := *j
	part.changes = cs[:applied]
	if err := w.apply(ctx, &part); err != nil {
		t.Fatal(err)
	}
	if mark {
		j.state.State = stateApplied
		if err := w.writeState(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// die leaves w's lock as a writer that died leaves it: taken, renewed by
// nobody, until it expires.
func die(t *testing.T, w *Writer) {
	t.Helper()
	w.Release()
	if _, err := w.s.locks.Create(context.Background(), bus.BookLockKey(w.org), []byte("dead"), jetstream.KeyTTL(testLocking.TTL)); err != nil {
		t.Fatal(err)
	}
}

func TestUnfinishedChangeUndoneByNextWriter(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	s := open(t, conn)
	seed(t, s, "acme", person("1", "Ada"), person("2", "Bob"), person("3", "Cem"))
	before := names(t, s, "acme")
	b, err := s.load(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	created := b.Change("4", person("4", "Dora"))
	created.Claim = true
	cs := []Change{b.Change("1", person("1", "Ada L")), b.Change("2", nil), created, b.Change("3", person("3", "Cem C"))}
	die(t, crash(t, s, "acme", 3, false, cs...))
	if got := names(t, s, "acme"); slices.Equal(got, before) {
		t.Fatal("the crash changed nothing: the test tests nothing")
	}

	// Another replica: it waits out the dead writer's lock, then undoes.
	other := open(t, conn)
	start := time.Now()
	w, _ := lock(t, other, "acme")
	w.Release()
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Errorf("took the dead writer's lock after %v, before it expired", waited)
	}
	if got := names(t, other, "acme"); !slices.Equal(got, before) {
		t.Fatalf("book after the undo %v, want %v", got, before)
	}
	if owner(t, s, "4") != "" || owner(t, s, "2") != "acme" {
		t.Fatalf("owners after the undo: 4 %q, 2 %q", owner(t, s, "4"), owner(t, s, "2"))
	}
	if n := len(events(t, conn, "acme")); n != 3 {
		t.Fatalf("%d events, want the 3 of the seed: an undone change announces nothing", n)
	}
	journalEmpty(t, s)
}

func TestAppliedChangeFinishedOnce(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	s := open(t, conn)
	seed(t, s, "acme", person("1", "Ada"), person("2", "Bob"))
	b, err := s.load(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	w := crash(t, s, "acme", 2, true, b.Change("1", person("1", "Ada L")), b.Change("2", nil))
	// Its first events went out before it died.
	j := &journal{org: "acme", state: state{Sync: "crashed", Time: time.Now().Format(time.RFC3339)}, changes: []Change{b.Change("1", person("1", "Ada L"))}}
	if err := w.finish(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	die(t, w)

	// Another replica, looking for unfinished changes as it does now and
	// then: it leaves the change while the dead writer's lock lives.
	other := open(t, conn)
	if err := other.RecoverAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(events(t, conn, "acme")); n != 3 {
		t.Fatalf("%d events: the change was finished under the dead writer's lock", n)
	}
	natstest.WaitFor(t, 2*testLocking.TTL, "the change finished", func() bool {
		if err := other.RecoverAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		info, err := s.journal.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs == 0
	})
	if got := names(t, s, "acme"); !slices.Equal(got, []string{"1=Ada L"}) {
		t.Fatalf("book %v", got)
	}
	var got []string
	for _, e := range events(t, conn, "acme")[2:] {
		got = append(got, e.Type+" "+e.Subject)
	}
	if !slices.Equal(got, []string{"person.updated 1", "person.deleted 2"}) {
		t.Fatalf("events of the finished change %q: each once", got)
	}
	if owner(t, s, "2") != "" {
		t.Fatal("the deleted person's id is still taken")
	}
	journalEmpty(t, s)
}

func TestDeleteOrg(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	s := open(t, conn)
	seed(t, s, "acme", person("1", "Ada"))
	seed(t, s, "globex", person("2", "Bob"))
	if err := s.DeleteOrg(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	if got := names(t, s, "acme"); len(got) != 0 || owner(t, s, "1") != "" {
		t.Fatalf("after DeleteOrg: book %v, owner of 1 %q", got, owner(t, s, "1"))
	}
	if got := names(t, s, "globex"); !slices.Equal(got, []string{"2=Bob"}) || owner(t, s, "2") != "globex" {
		t.Fatalf("another org's book changed: %v", got)
	}
	if _, err := s.Get(context.Background(), "acme", "1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after DeleteOrg: %v", err)
	}
}

// On replicated streams a refused expectation is error 10164, and a reader
// may be a replica behind: the same rules hold on three nodes, also when
// the persons bucket loses its leader.
func TestReplicated(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	l := bus.DefaultLimits()
	l.Replicas = 3
	conn := c.Connect(t, l)
	s := open(t, conn)
	seed(t, s, "acme", person("x", "Xaver"), person("1", "Ada"))

	w, b := lock(t, s, "globex")
	stale := b.Change("x", person("x", "X"))
	stale.Claim = true
	var ce *ConflictError
	if err := w.Commit(context.Background(), []Change{stale}); !errors.As(err, &ce) {
		t.Fatalf("claim of a taken id on R3: %v", err)
	}
	w.Release()

	c.Kill(c.WaitStreamLeader(t, bus.KVStream(bus.BucketPersons)))
	c.WaitStreamLeader(t, bus.KVStream(bus.BucketPersons))
	// The node may have led the locks and the journal too.
	c.WaitStreamLeader(t, bus.KVStream(bus.BucketLocks))
	c.WaitStreamLeader(t, bus.StreamSyncJournal)
	// Groups the node led may still be electing: a sync that fails
	// meanwhile is made again, as a client would.
	natstest.WaitForErr(t, 30*time.Second, "a sync after the leader's loss", func() error {
		w, err := s.Lock(context.Background(), "acme")
		if err != nil {
			return err
		}
		defer w.Release()
		b, err := w.Book(context.Background())
		if err != nil {
			return err
		}
		return w.Commit(context.Background(), []Change{b.Change("1", person("1", "Ada L")), b.Change("x", nil)})
	})
	if got := names(t, s, "acme"); !slices.Equal(got, []string{"1=Ada L"}) || owner(t, s, "x") != "" || len(names(t, s, "globex")) != 0 {
		t.Fatalf("after the leader was lost: acme %v, owner of x %q", got, owner(t, s, "x"))
	}
	journalEmpty(t, s)
}

// A writer whose lock renewals go unconfirmed stops writing half the
// lock's time to live after the last confirmed one, while its change is
// half made: Commit fails with lease.ErrShort, none of its writes lands
// later, even once the store answers again, and the next holder undoes
// the change.
func TestWriterStopsBeforeItsLockCanExpire(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	lag := &natstest.Lag{}
	s := open(t, natstest.Connect(t, conn, lag))
	var mu sync.Mutex
	var writes []time.Time // when person writes land
	first := make(chan struct{})
	if _, err := conn.NC.Subscribe(bus.KVSubject(bus.BucketPersons, ">"), func(*nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if writes = append(writes, time.Now()); len(writes) == 1 {
			close(first)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := conn.NC.Flush(); err != nil {
		t.Fatal(err)
	}

	w, b := lock(t, s, "acme")
	var cs []Change
	for i := range 6000 { // more writes than publishAll has under way at once
		c := b.Change(fmt.Sprint(i), person(fmt.Sprint(i), "P"))
		c.Claim = true
		cs = append(cs, c)
	}
	committed := make(chan error, 1)
	go func() { committed <- w.Commit(context.Background(), cs) }()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("no write landed")
	}
	held := time.Now()
	lag.Set(time.Hour) // no renewal, no write, is confirmed from now on
	margin := testLocking.TTL / 2
	time.Sleep(margin + 500*time.Millisecond)
	lag.Set(0)
	var err error
	select {
	case err = <-committed:
	case <-time.After(10 * time.Second):
		t.Fatal("Commit still runs")
	}
	w.Release()
	if !errors.Is(err, lease.ErrShort) {
		t.Fatalf("Commit: %v, want lease.ErrShort", err)
	}
	mu.Lock()
	n, last := len(writes), writes[len(writes)-1]
	mu.Unlock()
	if n == 0 || n >= 2*len(cs) {
		t.Fatalf("%d of %d writes landed: the test tests nothing", n, 2*len(cs))
	}
	// The last confirmed renewal was sent before held.
	if late := last.Sub(held.Add(margin)); late > 100*time.Millisecond {
		t.Fatalf("a write landed %v after the margin", late.Round(time.Millisecond))
	}
	t.Logf("%d of %d writes made; the last landed %v after the renewals went unconfirmed", n, 2*len(cs), last.Sub(held).Round(time.Millisecond))

	w, _ = lock(t, open(t, conn), "acme")
	w.Release()
	if got := names(t, s, "acme"); len(got) != 0 || owner(t, s, "1") != "" {
		t.Fatalf("the next holder left %d persons, owner of 1 %q", len(got), owner(t, s, "1"))
	}
	if n := len(events(t, conn, "acme")); n != 0 {
		t.Fatalf("%d events of a change undone", n)
	}
	journalEmpty(t, s)
}
