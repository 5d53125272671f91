package jet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
)

// Bucket binds a bucket. On a replicated bucket its Get reads through the
// stream's leader: the client library's Get is a Direct Get, which any
// replica answers, and a replica a moment behind misses a write just
// made; a key made, or a subscription changed, must be there when its
// maker, or the next service it calls, reads it. While there is no leader
// it reads as the library does (leaderWait). A single server is always
// current, so there Get stays the library's.
func Bucket(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	if s, ok := st.(*jetstream.KeyValueBucketStatus); ok && s.StreamInfo().Config.Replicas > 1 {
		return leaderBucket{KeyValue: kv, nc: js.Conn(), name: name}, nil
	}
	return kv, nil
}

type leaderBucket struct {
	jetstream.KeyValue
	nc   *nats.Conn
	name string
}

// leaderWait bounds a read through the leader. A bucket between leaders
// answers no such read, and everything waiting on it (every ingest
// request, while the keys' leader is elected) would wait with it; past
// leaderWait the read is any replica's instead, which may be a moment
// behind but is there.
const leaderWait = time.Second

// Get answers the key's latest value as the leader has it, or as a replica
// has it when the leader does not answer within leaderWait, with the
// library's errors: ErrKeyNotFound for a key never written or deleted.
func (b leaderBucket) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if key == "" || key[0] == '.' || key[len(key)-1] == '.' {
		return nil, jetstream.ErrInvalidKey
	}
	lctx, cancel := context.WithTimeout(ctx, leaderWait)
	m, err := LeaderGet(lctx, b.nc, bus.KVStream(b.name), LeaderQuery{LastBySubject: bus.KVSubject(b.name, key)})
	cancel()
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, jetstream.ErrKeyNotFound
	case err != nil && ctx.Err() == nil:
		return b.KeyValue.Get(ctx, key)
	case err != nil:
		return nil, err
	}
	if m.Header.Get("KV-Operation") != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "" {
		return nil, jetstream.ErrKeyNotFound // deleted, purged or aged out
	}
	return entry{bucket: b.name, key: key, value: m.Data, revision: m.Sequence, created: m.Time}, nil
}

// entry is a value read through the leader.
type entry struct {
	bucket, key string
	value       []byte
	revision    uint64
	created     time.Time
}

func (e entry) Bucket() string                  { return e.bucket }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.value }
func (e entry) Revision() uint64                { return e.revision }
func (e entry) Created() time.Time              { return e.created }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }
