package jet_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

// TestBucketReadsItsWrites: on a replicated bucket, a value written
// through one server is read at once through each of the others, every
// time, as a key made by the admin service must be by ingest; deleted and
// unknown keys are not found, as with the library's Get.
func TestBucketReadsItsWrites(t *testing.T) {
	ctx := context.Background()
	c := natstest.StartCluster(t, 3)
	l := bus.DefaultLimits()
	l.Replicas = 3
	c.Connect(t, l)
	var kvs []jetstream.KeyValue
	for _, s := range c.Servers {
		kvs = append(kvs, keysThrough(t, s))
	}
	for i := range 300 {
		w, r := kvs[i%3], kvs[(i+1)%3]
		key, value := "k"+strconv.Itoa(i%7), []byte(strconv.Itoa(i))
		rev, err := w.Put(ctx, key, value)
		if err != nil {
			t.Fatal(err)
		}
		e, err := r.Get(ctx, key)
		if err != nil || e.Revision() != rev || string(e.Value()) != string(value) || e.Key() != key {
			t.Fatalf("write %d read through another server: %v %v, want revision %d", i, describe(e), err, rev)
		}
	}
	if err := kvs[0].Delete(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"k1", "never"} {
		if e, err := kvs[1].Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("%s: %v %v, want ErrKeyNotFound", key, describe(e), err)
		}
	}
}

// keysThrough binds the keys bucket through a connection to server s.
func keysThrough(t *testing.T, s *server.Server) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := jet.Bucket(context.Background(), js, bus.BucketKeys)
	if err != nil {
		t.Fatalf("%s: %v", s.Name(), err)
	}
	return kv
}

func describe(e jetstream.KeyValueEntry) string {
	if e == nil {
		return "no entry"
	}
	return fmt.Sprintf("%s=%q rev %d", e.Key(), e.Value(), e.Revision())
}

// TestBucketReadsWithoutLeader: while a replicated bucket has lost its
// leader, Get still answers, from a replica, soon after leaderWait; it
// does not wait out the election.
func TestBucketReadsWithoutLeader(t *testing.T) {
	ctx := context.Background()
	c := natstest.StartCluster(t, 3)
	l := bus.DefaultLimits()
	l.Replicas = 3
	conn := c.Connect(t, l)
	kv, err := jet.Bucket(ctx, conn.JS, bus.BucketKeys)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(ctx, "k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	leader := c.StreamLeader(t, bus.KVStream(bus.BucketKeys))
	// Read through a server that stays, once it has the write.
	other := c.Servers[(leader+1)%3]
	natstest.WaitFor(t, 5*time.Second, "the write on every replica", func() bool {
		for _, s := range c.Servers {
			info, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
			if err != nil {
				return false
			}
			has := false
			for _, a := range info.AccountDetails {
				for _, st := range a.Streams {
					has = has || st.Name == bus.KVStream(bus.BucketKeys) && st.State.LastSeq >= rev
				}
			}
			if !has {
				return false
			}
		}
		return true
	})
	replica := keysThrough(t, other)
	if e, err := replica.Get(ctx, "k"); err != nil || e.Revision() != rev {
		t.Fatalf("before the loss: %v %v", describe(e), err)
	}
	c.Kill(leader)
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if e, err := replica.Get(rctx, "k"); err != nil || e.Revision() != rev {
		t.Fatalf("without a leader: %v %v, want revision %d within 3 s", describe(e), err, rev)
	}
}
