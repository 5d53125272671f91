package book

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/lease"
)

// Locking says how an org's book is locked: how long a lock lives
// without renewal (a holder that dies frees it after that), and how long
// a writer waits for a lock that another holds.
type Locking struct {
	TTL  time.Duration
	Wait time.Duration
}

// DefaultLocking is what Kurier runs with unless told otherwise.
func DefaultLocking() Locking { return Locking{TTL: 30 * time.Second, Wait: 60 * time.Second} }

// Errors of the store.
var (
	ErrNotFound = errors.New("person not found")
	// ErrLocked: another writer held the org's book for longer than the wait.
	ErrLocked = lease.ErrLocked
)

// ConflictError: a synced external id belongs to another org.
type ConflictError struct{ ID string }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("external id %q belongs to another organisation", e.ID)
}

// Store reads and changes address books.
type Store struct {
	conn    *jet.Conn
	persons jetstream.KeyValue
	locks   jetstream.KeyValue
	syncs   jetstream.KeyValue
	journal jetstream.Stream
	lock    Locking
	holder  string // what this store writes into the locks it holds
	log     *slog.Logger
	// timeout bounds each step of a change: its journal, its writes, its
	// events, an undo.
	timeout time.Duration
}

// Open binds the store to the buckets and the journal, which bus.Ensure
// has created.
func Open(ctx context.Context, conn *jet.Conn, lock Locking, log *slog.Logger) (*Store, error) {
	persons, err := jet.Bucket(ctx, conn.JS, bus.BucketPersons)
	if err != nil {
		return nil, err
	}
	locks, err := jet.Bucket(ctx, conn.JS, bus.BucketLocks)
	if err != nil {
		return nil, err
	}
	journal, err := bus.Stream(ctx, conn.JS, bus.StreamSyncJournal)
	if err != nil {
		return nil, err
	}
	syncs, err := jet.Bucket(ctx, conn.JS, bus.BucketSyncs)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &Store{conn: conn, persons: persons, locks: locks, syncs: syncs, journal: journal, lock: lock,
		holder: hex.EncodeToString(id[:]), log: log, timeout: 30 * time.Second}, nil
}

// kvOperation is the header that makes a message of a bucket's stream a
// deletion marker.
const kvOperation = "KV-Operation"

// Entry is a person as stored, with its key's revision.
type Entry struct {
	Person Person
	Rev    uint64
}

// Book is an org's address book as read at one moment.
type Book struct {
	Org     string
	Persons map[string]Entry // by external id
	// gone holds the revisions of the deletion markers of deleted
	// persons, which a person created again under the id must expect.
	gone map[string]uint64
}

// Active counts the persons not marked deleted.
func (b *Book) Active() int {
	n := 0
	for _, e := range b.Persons {
		if !e.Person.Deleted {
			n++
		}
	}
	return n
}

// Change makes the change that turns the person with the external id
// into after, or deletes it when after is nil.
func (b *Book) Change(id string, after *Person) Change {
	c := Change{ID: id, After: after, Rev: b.gone[id]}
	if e, ok := b.Persons[id]; ok {
		c.Before, c.Rev = &e.Person, e.Rev
	}
	return c
}

// load reads an org's book in one pass over its keys.
func (s *Store) load(ctx context.Context, org string) (*Book, error) {
	b := &Book{Org: org, Persons: map[string]Entry{}, gone: map[string]uint64{}}
	w, err := s.persons.Watch(ctx, bus.PersonsOf(org))
	if err != nil {
		return nil, fmt.Errorf("read the book of %s: %w", org, err)
	}
	defer func() { _ = w.Stop() }()
	for e := range w.Updates() {
		if e == nil {
			return b, nil // the current values are all delivered
		}
		if e.Operation() != jetstream.KeyValuePut {
			if id, ok := bus.PersonID(e.Key()); ok {
				b.gone[id] = e.Revision()
			}
			continue
		}
		var p Person
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.Key(), err)
		}
		b.Persons[p.ExternalDbID] = Entry{Person: p, Rev: e.Revision()}
	}
	return nil, fmt.Errorf("read the book of %s: %w", org, ctx.Err())
}

// Get reads one person; ErrNotFound when the org has none with the id.
func (s *Store) Get(ctx context.Context, org, id string) (Person, error) {
	e, err := s.persons.Get(ctx, bus.PersonKey(org, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Person{}, ErrNotFound
	}
	if err != nil {
		return Person{}, fmt.Errorf("read person: %w", err)
	}
	var p Person
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return Person{}, fmt.Errorf("decode person: %w", err)
	}
	return p, nil
}

// Decode reads a person from a message of the persons bucket's stream;
// ok is false for a deletion marker.
func Decode(m jetstream.Msg) (p Person, ok bool, err error) {
	if m.Headers().Get(kvOperation) != "" {
		return Person{}, false, nil
	}
	if err := json.Unmarshal(m.Data(), &p); err != nil {
		return Person{}, false, fmt.Errorf("decode person %s: %w", m.Subject(), err)
	}
	return p, true, nil
}

// Owner is the org a synced external id belongs to ("" for none), and
// the revision of its owner key that a claim must expect.
type Owner struct {
	Org string
	Rev uint64
}

// Owners reads the owners of external ids, a thousand per round trip.
func (s *Store) Owners(ctx context.Context, ids []string) (map[string]Owner, error) {
	subjects := make([]string, len(ids))
	byKey := make(map[string]string, len(ids))
	for i, id := range ids {
		subjects[i] = bus.KVSubject(bus.BucketPersons, bus.PersonOwnerKey(id))
		byKey[subjects[i]] = id
	}
	msgs, err := jet.LastMsgs(ctx, s.conn.NC, bus.KVStream(bus.BucketPersons), subjects)
	if err != nil {
		return nil, fmt.Errorf("read owners: %w", err)
	}
	out := make(map[string]Owner, len(msgs))
	for subj, m := range msgs {
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("read owners: revision: %w", err)
		}
		o := Owner{Rev: seq}
		if m.Header.Get(kvOperation) == "" {
			o.Org = string(m.Data)
		}
		out[byKey[subj]] = o
	}
	return out, nil
}

// Writer holds an org's lock: it alone changes the org's book until it
// is released.
type Writer struct {
	s     *Store
	org   string
	lease *lease.Lease
}

// Lock takes the org's lock, waiting for another writer up to the store's
// wait (ErrLocked after that), and finishes or undoes a change that a
// writer before it left unfinished.
func (s *Store) Lock(ctx context.Context, org string) (*Writer, error) {
	return s.lockFor(ctx, org, s.lock.Wait)
}

func (s *Store) lockFor(ctx context.Context, org string, wait time.Duration) (*Writer, error) {
	held, err := lease.Lock(ctx, s.conn.JS, s.locks, bus.BookLockKey(org), s.holder, s.lock.TTL, wait)
	if err != nil {
		return nil, err
	}
	w := &Writer{s: s, org: org, lease: held}
	gctx, cancel := held.Guard(ctx)
	defer cancel()
	if err := w.recover(gctx); err != nil {
		w.Release()
		return nil, err
	}
	return w, nil
}

// Release gives the lock up.
func (w *Writer) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), w.s.timeout)
	defer cancel()
	if err := w.lease.Release(ctx); err != nil {
		w.s.log.Warn("address book lock not released; it expires", "org", w.org, "err", err)
	}
}

// Book reads the org's book.
func (w *Writer) Book(ctx context.Context) (*Book, error) { return w.s.load(ctx, w.org) }

// Read reads the persons with the external ids, through the leader of
// the bucket's stream, so that none written a moment ago is missed: the
// part of the book a change of a few needs.
func (w *Writer) Read(ctx context.Context, ids ...string) (*Book, error) {
	return w.s.Read(ctx, w.org, ids...)
}

// Read reads persons as Writer.Read does, without the lock: what it
// answers may have changed by the time the caller acts on it.
func (s *Store) Read(ctx context.Context, org string, ids ...string) (*Book, error) {
	b := &Book{Org: org, Persons: map[string]Entry{}, gone: map[string]uint64{}}
	for _, id := range ids {
		m, err := jet.LeaderGet(ctx, s.conn.NC, bus.KVStream(bus.BucketPersons),
			jet.LeaderQuery{LastBySubject: bus.KVSubject(bus.BucketPersons, bus.PersonKey(org, id))})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read person: %w", err)
		}
		if m.Header.Get(kvOperation) != "" {
			b.gone[id] = m.Sequence
			continue
		}
		var p Person
		if err := json.Unmarshal(m.Data, &p); err != nil {
			return nil, fmt.Errorf("decode person: %w", err)
		}
		b.Persons[id] = Entry{Person: p, Rev: m.Sequence}
	}
	return b, nil
}

// RecoverAll finishes or undoes the changes left unfinished by writers
// that died, for every org that has one, taking each org's lock as a
// writer does. An org whose lock another holds is left: a live writer
// finishes its own change, and a dead one's lock expires after its time
// to live, for a later call to find free. With no change unfinished, it
// costs one request.
func (s *Store) RecoverAll(ctx context.Context) error {
	info, err := s.journal.Info(ctx, jetstream.WithSubjectFilter(bus.SyncAll))
	if err != nil {
		return fmt.Errorf("read the sync journal: %w", err)
	}
	orgs := map[string]bool{}
	for subj := range info.State.Subjects {
		if t := strings.Split(subj, "."); len(t) == 4 {
			orgs[t[2]] = true
		}
	}
	var errs []error
	for org := range orgs {
		w, err := s.lockFor(ctx, org, 0)
		if errors.Is(err, ErrLocked) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("org %s: %w", org, err))
			continue
		}
		w.purge(ctx) // a change that got no further than part of its journal
		w.Release()
	}
	return errors.Join(errs...)
}

// DeleteOrg removes an org's book: its persons, the ids its syncs
// brought in, and its journal. Nothing is announced: the org is going.
func (s *Store) DeleteOrg(ctx context.Context, org string) error {
	w, err := s.Lock(ctx, org)
	if err != nil {
		return err
	}
	defer w.Release()
	b, err := w.Book(ctx)
	if err != nil {
		return err
	}
	var msgs []*nats.Msg
	for id, e := range b.Persons {
		if e.Person.Origin == OriginSync {
			msgs = append(msgs, deletion(bus.PersonOwnerKey(id)))
		}
	}
	if _, err := w.publishAll(ctx, each(msgs)); err != nil {
		return fmt.Errorf("release the ids of %s: %w", org, err)
	}
	st, err := bus.Stream(ctx, s.conn.JS, bus.KVStream(bus.BucketPersons))
	if err != nil {
		return err
	}
	err = w.lease.Check()
	if err == nil {
		err = st.Purge(ctx, jetstream.WithPurgeSubject(bus.KVSubject(bus.BucketPersons, bus.PersonsOf(org))))
	}
	if err != nil {
		return fmt.Errorf("delete the persons of %s: %w", org, err)
	}
	if err := s.syncs.Purge(ctx, org); err != nil {
		return fmt.Errorf("delete the last sync of %s: %w", org, err)
	}
	return w.purgeJournal(ctx)
}
