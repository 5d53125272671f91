package book

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LastSync is how an org's last sync ended, kept for the admin API: the
// sync's client is told in its answer, an operator has no other way to see
// that a directory's pushes have been failing for days. A sync refused for
// what it sent is not kept: bad input changes nothing.
type LastSync struct {
	Time   time.Time `json:"time"`
	Source string    `json:"source,omitempty"`
	// Status is the HTTP status the sync was answered with.
	Status int `json:"status"`
	// Error and Field say why Kurier could not carry it out; nothing
	// changed then.
	Error         string `json:"error,omitempty"`
	Field         string `json:"field,omitempty"`
	Created       int    `json:"created,omitempty"`
	Updated       int    `json:"updated,omitempty"`
	Deleted       int    `json:"deleted,omitempty"`
	MarkedDeleted int    `json:"markedDeleted,omitempty"`
	Unchanged     int    `json:"unchanged,omitempty"`
}

// RecordSync keeps how the org's last sync ended, over the one before.
func (s *Store) RecordSync(ctx context.Context, org string, ls LastSync) error {
	b, err := json.Marshal(ls)
	if err != nil {
		return err
	}
	if _, err := s.syncs.Put(ctx, org, b); err != nil {
		return fmt.Errorf("record the sync of %s: %w", org, err)
	}
	return nil
}

// LastSync answers how the org's last sync ended; ok is false before the
// first.
func (s *Store) LastSync(ctx context.Context, org string) (ls LastSync, ok bool, err error) {
	e, err := s.syncs.Get(ctx, org)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ls, false, nil
	}
	if err != nil {
		return ls, false, fmt.Errorf("read the last sync of %s: %w", org, err)
	}
	if err := json.Unmarshal(e.Value(), &ls); err != nil {
		return ls, false, fmt.Errorf("decode the last sync of %s: %w", org, err)
	}
	return ls, true, nil
}

// Count counts the org's persons: those not marked deleted, and those
// marked deleted.
func (s *Store) Count(ctx context.Context, org string) (active, deleted int, err error) {
	b, err := s.load(ctx, org)
	if err != nil {
		return 0, 0, err
	}
	active = b.Active()
	return active, len(b.Persons) - active, nil
}
