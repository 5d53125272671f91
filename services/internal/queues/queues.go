// Package queues holds the pull queues (ComNorm's notification queues) as
// they are stored: each queue's record in the queues bucket, beside it the
// ids of each org's queues, and the messages in the QUEUES stream, one
// subject per queue, a message's id being its stream sequence. The queue
// service, queue delivery in the dispatcher and admin share it.
package queues

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/telemetry"
	"kurier.dev/services/internal/tenant"
)

// Queue is one pull queue. Its notification secret is never stored, only
// its hash.
type Queue struct {
	ID      string    `json:"queue_id"`
	Org     string    `json:"org_id"`
	Hash    string    `json:"hash"` // hex SHA-256 of the notification secret
	Created time.Time `json:"created"`
}

// Errors of the store.
var (
	ErrNotFound = errors.New("queue not found")
	ErrTooMany  = errors.New("the org has as many queues as it may have")
	ErrFull     = errors.New("the queue holds as many messages as it may")
	// ErrStoreFull: the QUEUES stream holds as many bytes as it may, so
	// no queue takes more until messages are deleted.
	ErrStoreFull = errors.New("the queue store is full")
)

const idBytes = 16

// NewID makes a queue id: 128 random bits, so ids cannot be guessed, in
// lower-case hex, which NATS subjects and KV keys take as they are.
func NewID() string {
	var b [idBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// ValidID tells whether id has the form NewID makes.
func ValidID(id string) bool {
	return len(id) == 2*idBytes && strings.Trim(id, "0123456789abcdef") == ""
}

// NewSecret makes a notification secret: 32 random bytes, base64url.
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Verify tells, in constant time, whether secret is the queue's.
func (q Queue) Verify(secret string) bool {
	return subtle.ConstantTimeCompare([]byte(tenant.HashSecret(secret)), []byte(q.Hash)) == 1
}

// Message is one message of a queue.
type Message struct {
	Seq     uint64 // the message id
	Content []byte
}

// Store reads and writes queues and their messages.
type Store struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream jetstream.Stream
}

// Open binds the store to the bucket and stream, which bus.Ensure has
// created.
func Open(ctx context.Context, conn *jet.Conn) (*Store, error) {
	kv, err := jet.Bucket(ctx, conn.JS, bus.BucketQueues)
	if err != nil {
		return nil, err
	}
	st, err := bus.Stream(ctx, conn.JS, bus.StreamQueues)
	if err != nil {
		return nil, err
	}
	return &Store{nc: conn.NC, js: conn.JS, kv: kv, stream: st}, nil
}

// orgSet is the ids of an org's queues, each with when it was added.
type orgSet map[string]time.Time

// staleAfter is how long an id may sit in an org's set without its record
// before it counts as left behind by a create that failed half-way.
const staleAfter = time.Minute

// Create stores a new queue, unless its org has limit queues already. The
// org's set takes the id first, by compare-and-set, so that replicas
// creating queues at once never pass the limit together.
func (s *Store) Create(ctx context.Context, q Queue, limit int) error {
	err := s.updateSet(ctx, q.Org, func(set orgSet) error {
		if len(set) >= limit {
			if err := s.prune(ctx, set, q.Created); err != nil {
				return err
			}
		}
		if len(set) >= limit {
			return ErrTooMany
		}
		set[q.ID] = q.Created
		return nil
	})
	if err != nil {
		return err
	}
	b, err := json.Marshal(q)
	if err == nil {
		_, err = s.kv.Create(ctx, bus.QueueKey(q.ID), b)
	}
	if err != nil {
		s.forget(ctx, q.Org, q.ID)
		return fmt.Errorf("create queue: %w", err)
	}
	return nil
}

// prune drops the ids whose records are gone from a set that is full.
func (s *Store) prune(ctx context.Context, set orgSet, now time.Time) error {
	for id, added := range set {
		if now.Sub(added) < staleAfter {
			continue // its record may be on its way
		}
		if _, err := s.Get(ctx, id); errors.Is(err, ErrNotFound) {
			delete(set, id)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// forget takes an id out of its org's set. A failure leaves an id without
// a record, which prune removes when the set is full, so it is no error.
func (s *Store) forget(ctx context.Context, org, id string) {
	_ = s.updateSet(ctx, org, func(set orgSet) error {
		delete(set, id)
		return nil
	})
}

// updateSet changes an org's set with fn by compare-and-set, reading it
// again and reapplying fn when another writer came first.
func (s *Store) updateSet(ctx context.Context, org string, fn func(orgSet) error) error {
	for {
		set, rev, err := s.set(ctx, org)
		if err != nil {
			return err
		}
		if err := fn(set); err != nil {
			return err
		}
		b, _ := json.Marshal(set)
		if rev == 0 {
			_, err = s.kv.Create(ctx, bus.OrgQueuesKey(org), b)
		} else {
			_, err = s.kv.Update(ctx, bus.OrgQueuesKey(org), b, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return fmt.Errorf("queues of %s: %w", org, err)
		}
		return nil
	}
}

func (s *Store) set(ctx context.Context, org string) (orgSet, uint64, error) {
	e, err := s.kv.Get(ctx, bus.OrgQueuesKey(org))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return orgSet{}, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("queues of %s: %w", org, err)
	}
	set := orgSet{}
	if err := json.Unmarshal(e.Value(), &set); err != nil {
		return nil, 0, fmt.Errorf("decode queues of %s: %w", org, err)
	}
	return set, e.Revision(), nil
}

// kvOperation marks a KV entry that deletes or purges its key.
const kvOperation = "KV-Operation"

// Get reads a queue; a malformed id is ErrNotFound like an absent one.
func (s *Store) Get(ctx context.Context, id string) (Queue, error) {
	if !ValidID(id) {
		return Queue{}, ErrNotFound
	}
	var data []byte
	e, err := s.kv.Get(ctx, bus.QueueKey(id))
	switch {
	case err == nil:
		data = e.Value()
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// A queue made a moment ago through another replica may not yet
		// have reached the one that answered: the leader has it.
		if data, err = s.leaderRecord(ctx, id); err != nil {
			return Queue{}, err
		}
	default:
		return Queue{}, fmt.Errorf("read queue %s: %w", id, err)
	}
	var q Queue
	if err := json.Unmarshal(data, &q); err != nil {
		return Queue{}, fmt.Errorf("decode queue %s: %w", id, err)
	}
	return q, nil
}

// leaderRecord reads a queue's record through the bucket's leader, which
// has every write acknowledged so far.
func (s *Store) leaderRecord(ctx context.Context, id string) ([]byte, error) {
	m, err := jet.LeaderGet(ctx, s.nc, bus.KVStream(bus.BucketQueues), jet.LeaderQuery{LastBySubject: bus.KVSubject(bus.BucketQueues, bus.QueueKey(id))})
	if errors.Is(err, jetstream.ErrMsgNotFound) || err == nil && m.Header.Get(kvOperation) != "" {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read queue %s: %w", id, err)
	}
	return m.Data, nil
}

// OfOrg reads a queue of org; another org's is ErrNotFound, as if absent.
func (s *Store) OfOrg(ctx context.Context, org, id string) (Queue, error) {
	q, err := s.Get(ctx, id)
	if err == nil && q.Org != org {
		return Queue{}, ErrNotFound
	}
	return q, err
}

// List answers an org's queues, oldest first.
func (s *Store) List(ctx context.Context, org string) ([]Queue, error) {
	set, _, err := s.set(ctx, org)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	found := make([]*Queue, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, id := range ids {
		g.Go(func() error {
			q, err := s.OfOrg(gctx, org, id)
			if errors.Is(err, ErrNotFound) {
				return nil // being created, or left behind
			}
			found[i] = &q
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []Queue
	for _, q := range found {
		if q != nil {
			out = append(out, *q)
		}
	}
	slices.SortFunc(out, func(a, b Queue) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Delete removes a queue of org and all its messages. The record goes
// first, so that the queue answers as absent at once. A delete that
// failed after that left the id in the org's set: done again, it finishes.
func (s *Store) Delete(ctx context.Context, org, id string) error {
	if _, err := s.OfOrg(ctx, org, id); errors.Is(err, ErrNotFound) {
		set, _, serr := s.set(ctx, org)
		if serr != nil {
			return serr
		}
		if _, left := set[id]; !left {
			return err
		}
	} else if err != nil {
		return err
	} else if err := s.kv.Purge(ctx, bus.QueueKey(id)); err != nil {
		return fmt.Errorf("delete queue %s: %w", id, err)
	}
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(bus.QueueSubject(id))); err != nil {
		return fmt.Errorf("delete messages of queue %s: %w", id, err)
	}
	s.forget(ctx, org, id)
	return nil
}

// DeleteOrg removes every queue of an org.
func (s *Store) DeleteOrg(ctx context.Context, org string) error {
	set, _, err := s.set(ctx, org)
	if err != nil {
		return err
	}
	for id := range set {
		if err := s.Delete(ctx, org, id); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	if err := s.kv.Purge(ctx, bus.OrgQueuesKey(org)); err != nil {
		return fmt.Errorf("delete queues of %s: %w", org, err)
	}
	return nil
}

// Post appends a message to a queue and answers its id. msgID, when set,
// makes a message sent again within the dedupe window a duplicate, which
// is not stored twice and answers 0.
//
// The caller has found the queue, but it may be deleted while the message
// is on its way, and a message stored after the delete purged the queue's
// messages would stay for good. The delete removes the record before the
// messages, so a post that finds the record gone after storing takes its
// message back and answers ErrNotFound.
func (s *Store) Post(ctx context.Context, id string, content []byte, msgID string) (uint64, error) {
	m := nats.NewMsg(bus.QueueSubject(id))
	m.Data = content
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	// The post's, or the route's, trace context stays with the message.
	telemetry.ToNATS(ctx, m.Header)
	ack, err := s.js.PublishMsg(ctx, m)
	switch {
	case jet.IsDuplicate(err):
		return 0, nil
	case jet.IsSubjectFull(err):
		return 0, ErrFull
	case jet.IsFull(err):
		return 0, ErrStoreFull
	case err != nil:
		return 0, fmt.Errorf("post to queue %s: %w", id, err)
	case ack.Duplicate:
		return 0, nil
	}
	if err := s.exists(ctx, id); errors.Is(err, ErrNotFound) {
		if err := s.stream.DeleteMsg(ctx, ack.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			return 0, fmt.Errorf("take back message %d of deleted queue %s: %w", ack.Sequence, id, err)
		}
		return 0, ErrNotFound
	}
	// Any other failure to look is no reason to refuse what is stored: the
	// sender would send it again, and it would be there twice.
	return ack.Sequence, nil
}

// exists tells whether a queue's record is still there, as its last write
// left it: when replicated (the bucket as the stream), through the leader,
// as a follower may not have the delete yet.
func (s *Store) exists(ctx context.Context, id string) error {
	if s.replicated() {
		_, err := s.leaderRecord(ctx, id)
		return err
	}
	_, err := s.kv.Get(ctx, bus.QueueKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrNotFound
	}
	return err
}

// peekWait bounds a peek when the caller's context does not.
const peekWait = 5 * time.Second

// Peek answers up to n messages from the head of a queue, oldest first,
// and nothing is removed.
//
// On one replica this is a single batched Direct Get of the queue's
// subject from the stream's start, which the server answers from its
// per-subject index. On a replicated stream any replica answers a Direct
// Get, and one a moment behind the leader would show messages just
// deleted at the head (a receiver peeking again right after its deletes
// would get them twice) or miss one just posted (a peek woken by it would
// find nothing). So there the head is read through the leader, and the
// rest in one batched Direct Get after it: two requests, whatever n.
func (s *Store) Peek(ctx context.Context, id string, n int) ([]Message, error) {
	ctx, cancel := context.WithTimeout(ctx, peekWait)
	defer cancel()
	if !s.replicated() {
		return s.peekDirect(ctx, id, 0, n)
	}
	head, err := jet.LeaderGet(ctx, s.nc, bus.StreamQueues, jet.LeaderQuery{NextBySubject: bus.QueueSubject(id)})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("peek queue %s: %w", id, err)
	}
	out := []Message{{Seq: head.Sequence, Content: head.Data}}
	if n == 1 {
		return out, nil
	}
	rest, err := s.peekDirect(ctx, id, head.Sequence+1, n-1)
	return append(out, rest...), err
}

// replicated tells whether the stream has more replicas than its leader,
// which may then be answering Direct Gets behind it.
func (s *Store) replicated() bool { return s.stream.CachedInfo().Config.Replicas > 1 }

// peekDirect reads up to n messages of a queue from sequence from on.
func (s *Store) peekDirect(ctx context.Context, id string, from uint64, n int) ([]Message, error) {
	req := struct {
		Seq    uint64 `json:"seq,omitempty"`
		NextBy string `json:"next_by_subj"`
		Batch  int    `json:"batch"`
	}{from, bus.QueueSubject(id), n}
	var out []Message
	err := jet.DirectBatch(ctx, s.nc, bus.StreamQueues, req, func(m *nats.Msg) error {
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return fmt.Errorf("sequence: %w", err)
		}
		out = append(out, Message{Seq: seq, Content: m.Data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("peek queue %s: %w", id, err)
	}
	return out, nil
}

// Stats answers how many messages a queue holds and when the oldest was
// stored (zero when it is empty).
func (s *Store) Stats(ctx context.Context, id string) (depth uint64, oldest time.Time, err error) {
	subject := bus.QueueSubject(id)
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("queue %s: %w", id, err)
	}
	if depth = info.State.Subjects[subject]; depth == 0 {
		return 0, time.Time{}, nil
	}
	m, err := s.stream.GetMsg(ctx, 0, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, time.Time{}, nil // emptied meanwhile
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("queue %s: %w", id, err)
	}
	return depth, m.Time, nil
}

// DeleteMessage removes message seq from a queue. A message of another
// queue, or none, is ErrNotFound and nothing is removed. On a replicated
// stream the check reads through the leader, which has every message a
// peek can have shown.
func (s *Store) DeleteMessage(ctx context.Context, id string, seq uint64) error {
	var m *jetstream.RawStreamMsg
	var err error
	if s.replicated() {
		m, err = jet.LeaderGet(ctx, s.nc, bus.StreamQueues, jet.LeaderQuery{Seq: seq})
	} else {
		m, err = s.stream.GetMsg(ctx, seq)
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) || err == nil && m.Subject != bus.QueueSubject(id) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	err = s.stream.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		return ErrNotFound // deleted meanwhile
	}
	if err != nil {
		return fmt.Errorf("delete message %d: %w", seq, err)
	}
	return nil
}
