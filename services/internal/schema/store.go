package schema

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/kvcache"
)

// ErrNotFound: the org gave the type no schema.
var ErrNotFound = errors.New("no schema")

// Entry is an org's schema for an event type, as stored.
type Entry struct {
	Org, Type string
	Text      string
}

// Store reads and writes schemas in their bucket, which bus.Ensure has
// created: the schema's text under bus.SchemaKey.
type Store struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// Open binds the store to the bucket.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	kv, err := jet.Bucket(ctx, js, bus.BucketSchemas)
	if err != nil {
		return nil, err
	}
	return &Store{js: js, kv: kv}, nil
}

// Set stores an org's schema for a type in place of any it had. The
// caller has compiled it.
func (s *Store) Set(ctx context.Context, org, typ, text string) error {
	if _, err := s.kv.Put(ctx, bus.SchemaKey(org, typ), []byte(text)); err != nil {
		return fmt.Errorf("store schema of %s for %s: %w", org, typ, err)
	}
	return nil
}

// Delete removes an org's schema for a type; ErrNotFound if it had none.
func (s *Store) Delete(ctx context.Context, org, typ string) error {
	key := bus.SchemaKey(org, typ)
	if _, err := s.kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrNotFound
	} else if err != nil {
		return fmt.Errorf("read schema of %s for %s: %w", org, typ, err)
	}
	if err := s.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("delete schema of %s for %s: %w", org, typ, err)
	}
	return nil
}

// DeleteOrg removes the schemas of an org, as a Lister lists them.
func (s *Store) DeleteOrg(ctx context.Context, entries []Entry) error {
	for _, e := range entries {
		if err := s.kv.Purge(ctx, bus.SchemaKey(e.Org, e.Type)); err != nil {
			return fmt.Errorf("delete schema of %s for %s: %w", e.Org, e.Type, err)
		}
	}
	return nil
}

// Lister lists schemas from memory, kept current by one watch of the
// bucket for as long as the context it was made with lives.
type Lister struct{ c *kvcache.Cache[Entry] }

// Lister starts following the bucket until ctx ends.
func (s *Store) Lister(ctx context.Context, log *slog.Logger) (*Lister, error) {
	c, err := kvcache.Open(ctx, s.js, s.kv, func(key string, v []byte) (Entry, bool, error) {
		org, typ, ok := bus.SchemaOfKey(key)
		return Entry{Org: org, Type: typ, Text: string(v)}, ok, nil
	}, log)
	if err != nil {
		return nil, err
	}
	return &Lister{c}, nil
}

// Org lists an org's schemas, ordered by type.
func (l *Lister) Org(ctx context.Context, org string) ([]Entry, error) {
	out, err := l.c.List(ctx, func(e Entry) bool { return e.Org == org })
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Type, b.Type) })
	return out, err
}

// Registry holds every org's schemas compiled, each once per revision,
// followed by one watch of the bucket: what ingest checks events against.
type Registry struct{ c *kvcache.Cache[*Schema] }

// Registry starts following the bucket until ctx ends, and answers once it
// holds every schema stored before the call, so that a process that has
// just started checks events as the others do.
func (s *Store) Registry(ctx context.Context, log *slog.Logger) (*Registry, error) {
	// A schema that no longer compiles (as under another version of the
	// library) is logged and left out: its type's events are then taken
	// unchecked rather than refused for a fault of no sender's.
	c, err := kvcache.Open(ctx, s.js, s.kv, func(_ string, v []byte) (*Schema, bool, error) {
		sch, err := Compile(string(v))
		return sch, true, err
	}, log)
	if err != nil {
		return nil, err
	}
	if _, err := c.List(ctx, func(*Schema) bool { return false }); err != nil {
		return nil, err
	}
	return &Registry{c}, nil
}

// For answers an org's schema for a type, if it gave one. It reads memory
// only: a change reaches it as fast as the watch brings it.
func (r *Registry) For(org, typ string) (*Schema, bool) {
	return r.c.Get(bus.SchemaKey(org, typ))
}
