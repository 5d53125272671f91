package book

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
)

// Event types of person changes.
const (
	TypeCreated = "person.created"
	TypeUpdated = "person.updated"
	TypeDeleted = "person.deleted" // deleted, or marked deleted
)

// Change is what happens to one person.
type Change struct {
	ID     string  `json:"id"`
	Before *Person `json:"before,omitempty"` // nil for a new person
	After  *Person `json:"after,omitempty"`  // nil for a deleted one
	// Rev is the revision of the person's key the write expects, so that
	// a writer whose lock has passed to another cannot write any more.
	Rev uint64 `json:"rev"`
	// Claim makes the id the org's, expecting ClaimRev on its owner key.
	Claim    bool   `json:"claim,omitempty"`
	ClaimRev uint64 `json:"claimRev,omitempty"`

	data []byte // person's JSON, made once for its write and its event
}

// Type is the event type that announces the change.
func (c Change) Type() string {
	switch {
	case c.Before == nil:
		return TypeCreated
	case c.After == nil || c.After.Deleted && !c.Before.Deleted:
		return TypeDeleted
	}
	return TypeUpdated
}

// person is who the change is about: as it is after, or as it was.
func (c Change) person() *Person {
	if c.After != nil {
		return c.After
	}
	return c.Before
}

// json answers the JSON of the person the change is about.
func (c *Change) json() ([]byte, error) {
	if c.data == nil {
		var err error
		if c.data, err = json.Marshal(c.person()); err != nil {
			return nil, fmt.Errorf("encode person: %w", err)
		}
	}
	return c.data, nil
}

// releases tells whether the change gives a synced id up.
func (c Change) releases() bool { return c.After == nil && c.Before.Origin == OriginSync }

// A change is journalled before any of it is made: its changes in chunks
// on the org's ops subject, then a state message saying it has begun.
// Once every write is made, a second state message says so: from then on
// the change stands, and what is left (the events, giving up the ids of
// deleted persons) is finished by whoever takes the lock next if this
// writer cannot. A change that began and did not get that far is undone.
// The end purges the org's journal.
const (
	stateBegun   = "begun"
	stateApplied = "applied"
	headerSync   = "Kurier-Sync"
	chunkBytes   = 512 << 10
)

type state struct {
	Sync   string `json:"sync"`
	State  string `json:"state"`
	Chunks int    `json:"chunks"`
	Time   string `json:"time"` // when the change began, the time of its events
}

type journal struct {
	org     string
	state   state
	changes []Change
}

// Commit makes the changes, all of them or (on an error) none. A
// *ConflictError says a claimed id belongs to another org. Changes must
// be made from the book this writer read. Once the lock's lease runs
// short (lease.ErrShort) Commit writes no more and leaves the change
// to the next holder, who finishes or undoes it.
func (w *Writer) Commit(ctx context.Context, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	j := &journal{org: w.org, state: state{Sync: hex.EncodeToString(id[:]), State: stateBegun,
		Time: time.Now().UTC().Format(time.RFC3339Nano)}, changes: changes}
	gctx, cancel := w.lease.Guard(ctx)
	defer cancel()
	// What follows a failure or the mark goes on if the caller goes away,
	// but not once the lease runs short.
	after, cancelAfter := w.lease.Guard(context.WithoutCancel(ctx))
	defer cancelAfter()

	// Written whole even if the caller goes away: a begun mark still on
	// its way when the journal is purged would land after, naming chunks
	// that are gone, and the org's next sync could not recover from it.
	if err := w.writeJournal(after, j); err != nil {
		w.purge(after)
		return w.cause(err)
	}
	if err := w.apply(gctx, j); err != nil {
		if w.lease.Check() != nil {
			// An undo might land after the next holder began: it undoes.
			return w.cause(err)
		}
		if uerr := w.undo(after, j); uerr != nil {
			return errors.Join(err, fmt.Errorf("undo: %w", uerr))
		}
		w.purge(after)
		return err
	}
	j.state.State = stateApplied
	if err := w.writeState(gctx, j); err != nil {
		// Unsure whether the mark was written: the change is left for the
		// next holder, who undoes it unless it was.
		return w.cause(err)
	}
	if err := w.finish(after, j); err != nil {
		// The change stands; the next holder sends what is left.
		w.s.log.Warn("address book change stored, its events not all sent yet", "org", w.org, "err", err)
		return nil
	}
	w.purge(after)
	return nil
}

// cause answers err, naming the lease running short if it has: that
// ends what a step waits for, and the step may then say no more than
// "context canceled".
func (w *Writer) cause(err error) error {
	if lerr := w.lease.Check(); lerr != nil {
		return fmt.Errorf("address book of %s: %w (%w)", w.org, lerr, err)
	}
	return err
}

func (w *Writer) writeJournal(ctx context.Context, j *journal) error {
	// A chunk holds changes up to chunkBytes, or a single larger one,
	// which still fits a message: a person is far smaller.
	chunks := func(yield func(*nats.Msg, error) bool) {
		var buf bytes.Buffer
		chunk := func() *nats.Msg {
			m := nats.NewMsg(bus.SyncOps(j.org))
			m.Header.Set(headerSync, j.state.Sync)
			m.Data = append(append([]byte("["), buf.Bytes()...), ']')
			j.state.Chunks++
			buf.Reset()
			return m
		}
		for _, c := range j.changes {
			b, err := json.Marshal(c)
			if err != nil {
				yield(nil, err)
				return
			}
			if buf.Len() > 0 && buf.Len()+len(b) >= chunkBytes && !yield(chunk(), nil) {
				return
			}
			if buf.Len() > 0 {
				buf.WriteByte(',')
			}
			buf.Write(b)
		}
		yield(chunk(), nil)
	}
	if _, err := w.publishAll(ctx, chunks); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return w.writeState(ctx, j)
}

func (w *Writer) writeState(ctx context.Context, j *journal) error {
	if err := w.lease.Check(); err != nil {
		return fmt.Errorf("journal %s: %w", j.state.State, err)
	}
	b, _ := json.Marshal(j.state)
	ctx, cancel := context.WithTimeout(ctx, w.s.timeout)
	defer cancel()
	if _, err := w.s.conn.JS.Publish(ctx, bus.SyncState(j.org), b); err != nil {
		return fmt.Errorf("journal %s: %w", j.state.State, err)
	}
	return nil
}

// apply makes the writes: the claims of new ids and every person.
func (w *Writer) apply(ctx context.Context, j *journal) error {
	claims := map[int]string{} // message index: id
	msgs := func(yield func(*nats.Msg, error) bool) {
		n := 0
		for i := range j.changes {
			c := &j.changes[i]
			if c.Claim {
				claims[n] = c.ID
				n++
				if !yield(expect(put(bus.PersonOwnerKey(c.ID), []byte(j.org)), c.ClaimRev), nil) {
					return
				}
			}
			n++
			key := bus.PersonKey(j.org, c.ID)
			if c.After == nil {
				if !yield(expect(deletion(key), c.Rev), nil) {
					return
				}
				continue
			}
			b, err := c.json()
			if !yield(expect(put(key, b), c.Rev), err) {
				return
			}
		}
	}
	i, err := w.publishAll(ctx, msgs)
	if id, ok := claims[i]; ok && jet.IsWrongLastSeq(err) {
		return &ConflictError{ID: id}
	}
	return err
}

// undo puts back what apply changed. It compares the book as it is with
// the change, so it is right however far apply got: a person that is as
// the change left it gets its former self back, with the revision it has
// now; a claim still the org's is given up.
func (w *Writer) undo(ctx context.Context, j *journal) error {
	b, err := w.s.load(ctx, j.org)
	if err != nil {
		return err
	}
	var claimed []string
	var msgs []*nats.Msg
	for _, c := range j.changes {
		if c.Claim {
			claimed = append(claimed, c.ID)
		}
		cur, ok := b.Persons[c.ID]
		switch {
		case c.After != nil && ok && cur.Person.Equal(c.After) && c.Before == nil:
			msgs = append(msgs, expect(deletion(bus.PersonKey(j.org, c.ID)), cur.Rev))
		case c.After != nil && ok && cur.Person.Equal(c.After),
			c.After == nil && !ok && c.Before != nil:
			rev := cur.Rev
			if !ok {
				rev = b.gone[c.ID]
			}
			p, err := json.Marshal(c.Before)
			if err != nil {
				return err
			}
			msgs = append(msgs, expect(put(bus.PersonKey(j.org, c.ID), p), rev))
		}
	}
	owners, err := w.s.Owners(ctx, claimed)
	if err != nil {
		return err
	}
	for _, id := range claimed {
		if o := owners[id]; o.Org == j.org {
			msgs = append(msgs, expect(deletion(bus.PersonOwnerKey(id)), o.Rev))
		}
	}
	if _, err := w.publishAll(ctx, each(msgs)); err != nil {
		return err
	}
	w.s.log.Info("address book change undone", "org", j.org, "sync", j.state.Sync, "changes", len(j.changes))
	return nil
}

// finish sends the events of an applied change and gives up the ids of
// the persons it deleted. The events' ids come from the journal, so one
// sent twice is recognised as a duplicate within the dedupe window.
func (w *Writer) finish(ctx context.Context, j *journal) error {
	// A change is finished again when its journal outlived a finish that
	// had given its ids up, and another org may have claimed one since:
	// only an id still the org's is given up, expecting the revision read.
	var released []string
	for _, c := range j.changes {
		if c.releases() {
			released = append(released, c.ID)
		}
	}
	owners := map[string]Owner{}
	if len(released) > 0 {
		var err error
		if owners, err = w.s.Owners(ctx, released); err != nil {
			return err
		}
	}
	msgs := func(yield func(*nats.Msg, error) bool) {
		for i := range j.changes {
			c := &j.changes[i]
			data, err := c.json()
			if err != nil {
				yield(nil, err)
				return
			}
			id := "person-" + j.state.Sync + "-" + strconv.Itoa(i)
			e := event.Event{ID: id, Source: "/addressbook", Type: c.Type(), Subject: c.ID, Time: j.state.Time,
				DataContentType: "application/json", Data: data}
			m := nats.NewMsg(bus.EventsSubject(j.org, e.Type))
			m.Header.Set(jetstream.MsgIDHeader, bus.EventMsgID(j.org, e.Source, e.ID))
			m.Data, err = e.MarshalJSON()
			if !yield(m, err) {
				return
			}
			if o := owners[c.ID]; c.releases() && o.Org == j.org && !yield(expect(deletion(bus.PersonOwnerKey(c.ID)), o.Rev), nil) {
				return
			}
		}
	}
	_, err := w.publishAll(ctx, msgs)
	return err
}

// recover finishes or undoes the change the org's journal holds, if any.
// It reads the journal through the stream's leader: a replica a moment
// behind could hide a change that is under way.
func (w *Writer) recover(ctx context.Context) error {
	s, org := w.s, w.org
	raw, err := jet.LeaderGet(ctx, s.conn.NC, bus.StreamSyncJournal, jet.LeaderQuery{LastBySubject: bus.SyncState(org)})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the sync journal of %s: %w", org, err)
	}
	j := &journal{org: org}
	if err := json.Unmarshal(raw.Data, &j.state); err != nil {
		return fmt.Errorf("decode the sync journal of %s: %w", org, err)
	}
	if err := s.readJournal(ctx, j); err != nil {
		return err
	}
	if j.state.State == stateApplied {
		err = w.finish(ctx, j)
		s.log.Info("address book change finished", "org", org, "sync", j.state.Sync, "changes", len(j.changes))
	} else {
		err = w.undo(ctx, j)
	}
	if err != nil {
		return err
	}
	return w.purgeJournal(ctx)
}

func (s *Store) readJournal(ctx context.Context, j *journal) error {
	chunks := 0
	_, _, err := jet.Read(ctx, s.conn.JS, bus.StreamSyncJournal, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.SyncOps(j.org)}},
		math.MaxInt, func(m jetstream.Msg) (bool, error) {
			if m.Headers().Get(headerSync) != j.state.Sync {
				return false, nil
			}
			var cs []Change
			if err := json.Unmarshal(m.Data(), &cs); err != nil {
				return true, fmt.Errorf("decode the sync journal of %s: %w", j.org, err)
			}
			j.changes = append(j.changes, cs...)
			chunks++
			return false, nil
		})
	if err != nil {
		return fmt.Errorf("read the sync journal of %s: %w", j.org, err)
	}
	if chunks != j.state.Chunks {
		return fmt.Errorf("the sync journal of %s holds %d of %d chunks of sync %s", j.org, chunks, j.state.Chunks, j.state.Sync)
	}
	return nil
}

// purgeJournal ends the org's journal; a purge that landed late would
// end the journal of the next holder's change.
func (w *Writer) purgeJournal(ctx context.Context) error {
	err := w.lease.Check()
	if err == nil {
		err = w.s.journal.Purge(ctx, jetstream.WithPurgeSubject(bus.SyncOf(w.org)))
	}
	if err != nil {
		return fmt.Errorf("purge the sync journal of %s: %w", w.org, err)
	}
	return nil
}

// purge ends the org's journal. Should that fail, the journal stays for
// the next holder, who finds the change made or undone already.
func (w *Writer) purge(ctx context.Context) {
	if err := w.purgeJournal(context.WithoutCancel(ctx)); err != nil {
		w.s.log.Warn("sync journal not purged", "org", w.org, "err", err)
	}
}

// window is how many writes publishAll keeps unacknowledged: as many as
// the connection lets wait (jet.Connect), so that publishing never stalls
// on it, while the messages of a large change are made as they go out.
const window = 4096

// publishAll publishes msgs without waiting for each acknowledgement, up
// to window at once, and then waits for the rest. It checks the lease
// before each: once it runs short, that is a failure. After a failure it
// sends no more, but still waits for those sent, so that once it returns
// no write is under way (unless the store stopped answering: each
// acknowledgement may take the store's timeout). It answers the index of
// the first failure and its error.
func (w *Writer) publishAll(ctx context.Context, msgs iter.Seq2[*nats.Msg, error]) (int, error) {
	s := w.s
	first, failed := -1, error(nil)
	fail := func(i int, err error) {
		if first < 0 || i < first {
			first, failed = i, err
		}
	}
	idle := time.NewTimer(s.timeout)
	defer idle.Stop()
	// A caller that goes away (a sync's client hanging up) stops the
	// sending, not the waiting: what follows a failure is an undo, which
	// reads the book and must find every write sent landed already. Only
	// a lease running short ends the wait, as then the next holder undoes.
	held, release := w.lease.Guard(context.WithoutCancel(ctx))
	defer release()
	wait := ctx
	var sent []jetstream.PubAckFuture // sent[k] is message done+k
	done := 0
	await := func() bool {
		for {
			select {
			case <-sent[0].Ok():
			case err := <-sent[0].Err():
				if !jet.IsDuplicate(err) {
					fail(done, err)
				}
			case <-idle.C:
				fail(done, fmt.Errorf("no acknowledgement within %v", s.timeout))
				return false
			case <-wait.Done():
				fail(done, wait.Err())
				if wait == held || w.lease.Check() != nil {
					return false
				}
				wait = held
				continue
			}
			break
		}
		idle.Reset(s.timeout)
		sent = sent[1:]
		done++
		return true
	}
	i := 0
	for m, err := range msgs {
		if err == nil {
			err = w.lease.Check()
		}
		if err == nil {
			var f jetstream.PubAckFuture
			if f, err = s.conn.JS.PublishMsgAsync(m, jetstream.WithStallWait(s.timeout)); err == nil {
				sent = append(sent, f)
			}
		}
		if err != nil {
			fail(i, err)
			break
		}
		i++
		if len(sent) >= window && !await() || failed != nil {
			break
		}
	}
	for len(sent) > 0 && await() {
	}
	return first, failed
}

// each hands out msgs for publishAll.
func each(msgs []*nats.Msg) iter.Seq2[*nats.Msg, error] {
	return func(yield func(*nats.Msg, error) bool) {
		for _, m := range msgs {
			if !yield(m, nil) {
				return
			}
		}
	}
}

func put(key string, data []byte) *nats.Msg {
	return &nats.Msg{Subject: bus.KVSubject(bus.BucketPersons, key), Data: data, Header: nats.Header{}}
}

// deletion is the marker that deletes a key.
func deletion(key string) *nats.Msg {
	m := put(key, nil)
	m.Header.Set(kvOperation, "DEL")
	return m
}

// expect makes m fail unless the key's last revision is rev (0: none).
func expect(m *nats.Msg, rev uint64) *nats.Msg {
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	return m
}
