package queues

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

// single and cluster give a store on one server and on a three-node
// cluster with every stream and bucket replicated three times.
func single(t *testing.T) (*Store, *jet.Conn) {
	conn := natstest.Start(t, bus.DefaultLimits())
	return open(t, conn), conn
}

func cluster(t *testing.T) (*Store, *jet.Conn) {
	l := bus.DefaultLimits()
	l.Replicas = 3
	conn := natstest.StartCluster(t, 3).Connect(t, l)
	return open(t, conn), conn
}

func open(t *testing.T, conn *jet.Conn) *Store {
	t.Helper()
	s, err := Open(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newQueue(t *testing.T, s *Store) Queue {
	t.Helper()
	q := Queue{ID: NewID(), Org: "acme", Hash: "h", Created: time.Now().UTC()}
	if err := s.Create(context.Background(), q, 100); err != nil {
		t.Fatal(err)
	}
	return q
}

// held answers how many messages the stream holds for a queue.
func held(t *testing.T, s *Store, id string) uint64 {
	t.Helper()
	n, _, err := s.Stats(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPostRacingDeleteLeavesNothing: a post that found its queue before
// the queue was deleted, and stores its message after the delete purged
// the queue's messages, takes the message back. Made certain here by
// posting after the delete, on one server and on a cluster.
func TestPostRacingDeleteLeavesNothing(t *testing.T) {
	for name, start := range map[string]func(*testing.T) (*Store, *jet.Conn){"single": single, "cluster": cluster} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := start(t)
			q := newQueue(t, s)
			if seq, err := s.Post(ctx, q.ID, []byte(`{"a":1}`), ""); err != nil || seq == 0 {
				t.Fatalf("post to a live queue: %d %v", seq, err)
			}
			if err := s.Delete(ctx, "acme", q.ID); err != nil {
				t.Fatal(err)
			}
			if seq, err := s.Post(ctx, q.ID, []byte(`{"a":2}`), ""); !errors.Is(err, ErrNotFound) {
				t.Fatalf("post after the delete: %d %v, want ErrNotFound", seq, err)
			}
			if n := held(t, s, q.ID); n != 0 {
				t.Fatalf("%d messages left of the deleted queue", n)
			}
		})
	}
}

// TestPostsDuringDeleteLeaveNothing: senders post to queues as fast as
// they can while the queues are deleted; afterwards no queue's subject
// holds a message.
func TestPostsDuringDeleteLeaveNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := single(t)
	for range 10 {
		q := newQueue(t, s)
		var posted atomic.Int32
		stop := make(chan struct{})
		done := make(chan struct{})
		for range 4 {
			go func() {
				defer func() { done <- struct{}{} }()
				for {
					select {
					case <-stop:
						return
					default:
					}
					// As the queue service posts: look the queue up, then post.
					if _, err := s.Get(ctx, q.ID); err != nil {
						continue
					}
					if _, err := s.Post(ctx, q.ID, []byte(`{}`), ""); err == nil {
						posted.Add(1)
					}
				}
			}()
		}
		for posted.Load() < 20 {
			time.Sleep(time.Millisecond)
		}
		if err := s.Delete(ctx, "acme", q.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		close(stop)
		for range 4 {
			<-done
		}
		if n := held(t, s, q.ID); n != 0 {
			t.Fatalf("%d messages left of a queue deleted while posts ran", n)
		}
	}
}

// TestPeekReplicatedIsBatched: on a cluster a peek of n messages reads
// the head through the leader and the rest in one batched Direct Get, not
// one request per message, and shows none of the messages deleted before
// it.
func TestPeekReplicatedIsBatched(t *testing.T) {
	ctx := context.Background()
	s, conn := cluster(t)
	q := newQueue(t, s)
	var seqs []uint64
	for i := range 30 {
		seq, err := s.Post(ctx, q.ID, fmt.Appendf(nil, `{"i":%d}`, i), "")
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	for _, seq := range seqs[:3] {
		if err := s.DeleteMessage(ctx, q.ID, seq); err != nil {
			t.Fatal(err)
		}
	}
	var leader, direct atomic.Int32
	count := func(n *atomic.Int32) nats.MsgHandler { return func(*nats.Msg) { n.Add(1) } }
	for subject, n := range map[string]*atomic.Int32{"$JS.API.STREAM.MSG.GET." + bus.StreamQueues: &leader, "$JS.API.DIRECT.GET." + bus.StreamQueues: &direct} {
		if _, err := conn.NC.Subscribe(subject, count(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the interest reaches every node
	requests := func() (int32, int32) {
		time.Sleep(100 * time.Millisecond) // the spy sees every request
		l, d := leader.Swap(0), direct.Swap(0)
		return l, d
	}

	msgs, err := s.Peek(ctx, q.ID, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 20 {
		t.Fatalf("peeked %d messages, want 20", len(msgs))
	}
	for i, m := range msgs {
		if want := fmt.Sprintf(`{"i":%d}`, i+3); m.Seq != seqs[i+3] || string(m.Content) != want {
			t.Fatalf("message %d: %d %s, want %d %s", i, m.Seq, m.Content, seqs[i+3], want)
		}
	}
	if l, d := requests(); l != 1 || d != 1 {
		t.Fatalf("a peek of 20 made %d leader reads and %d direct reads, want 1 and 1", l, d)
	}
	if msgs, err := s.Peek(ctx, q.ID, 1); err != nil || len(msgs) != 1 || msgs[0].Seq != seqs[3] {
		t.Fatalf("peek of one: %v %v", msgs, err)
	}
	if l, d := requests(); l != 1 || d != 0 {
		t.Fatalf("a peek of one made %d leader reads and %d direct reads, want 1 and 0", l, d)
	}
	if msgs, err := s.Peek(ctx, NewID(), 100); err != nil || len(msgs) != 0 {
		t.Fatalf("peek of an empty queue: %v %v", msgs, err)
	}
	if l, d := requests(); l != 1 || d != 0 {
		t.Fatalf("a peek of an empty queue made %d leader reads and %d direct reads, want 1 and 0", l, d)
	}
}

// TestDeleteFinishesOneThatFailedHalfWay: a delete that removed the
// queue's record but failed to purge its messages answered an error; the
// delete done again removes the messages and the id from the org's set,
// instead of answering that the queue is not there and leaving both.
func TestDeleteFinishesOneThatFailedHalfWay(t *testing.T) {
	ctx := context.Background()
	s, _ := single(t)
	q := newQueue(t, s)
	if _, err := s.Post(ctx, q.ID, []byte(`{"a":1}`), ""); err != nil {
		t.Fatal(err)
	}
	if err := s.kv.Purge(ctx, bus.QueueKey(q.ID)); err != nil { // as far as the failed delete got
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "acme", q.ID); err != nil {
		t.Fatalf("the delete done again: %v", err)
	}
	if n := held(t, s, q.ID); n != 0 {
		t.Errorf("%d messages left of the deleted queue", n)
	}
	if set, _, err := s.set(ctx, "acme"); err != nil || len(set) != 0 {
		t.Errorf("the org's set after the delete: %v %v", set, err)
	}
	if err := s.Delete(ctx, "acme", q.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("a third delete: %v, want ErrNotFound", err)
	}
}
