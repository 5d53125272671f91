// Package subs holds subscriptions and their ping state as they are stored
// in JetStream key-value buckets: what the admin service writes, the
// dispatcher watches and the change feed resets.
package subs

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/kvcache"
	"kurier.dev/services/internal/payload"
)

// Mode is how a subscription's system is told of changes.
type Mode string

const (
	ModePing    Mode = "ping"
	ModePayload Mode = "payload"
	ModeQueue   Mode = "queue"
)

// Subscription is one external system's interest in an org's event types.
type Subscription struct {
	ID         string   `json:"subscription_id"`
	Org        string   `json:"org_id"`
	System     string   `json:"system"`
	Name       string   `json:"name,omitempty"`
	EventTypes []string `json:"event_types"`
	Mode       Mode     `json:"mode"`
	URL        string   `json:"url,omitempty"`
	Active     bool     `json:"active"`
	// Secret signs requests (Standard Webhooks). It is an HMAC key Kurier
	// must use, so unlike API keys it cannot be kept as a hash.
	Secret string `json:"secret"`
	// PrevSecret, after a rotation, signs too until PrevUntil, so
	// receivers can switch without missing a request.
	PrevSecret string    `json:"prev_secret,omitempty"`
	PrevUntil  time.Time `json:"prev_until,omitzero"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	// Filter is a CEL expression (internal/filter) an event must pass to
	// be delivered or to start a ping; empty passes every event.
	Filter string `json:"filter,omitempty"`
	// RoutedFrom is the last EVENTS sequence when the subscription last
	// began to take events it did not take before (created, switched on,
	// given types): the dispatchers route the events after it to the
	// subscription again once they see the change, since they may have
	// matched some before they saw it.
	RoutedFrom uint64 `json:"routed_from,omitempty"`

	// Payload mode.
	Table      string           `json:"table,omitempty"`
	Fields     []string         `json:"fields,omitempty"`
	Conditions string           `json:"conditions,omitempty"`
	Attributes []payload.Attr   `json:"attributes,omitempty"`
	Headers    []payload.Header `json:"headers,omitempty"`
	Timeout    time.Duration    `json:"timeout,omitempty"`
	Format     payload.Format   `json:"format,omitempty"`
	Ordered    bool             `json:"ordered,omitempty"`
	// OrderedFrom is the last EVENTS sequence when the subscription
	// became ordered: ordered delivery starts after it. OrderedUntil is
	// the last when it stopped being ordered: the events up to it are
	// still delivered in order, those after it concurrently.
	OrderedFrom   uint64          `json:"ordered_from,omitempty"`
	OrderedUntil  uint64          `json:"ordered_until,omitempty"`
	MaxInFlight   int             `json:"max_in_flight,omitempty"`
	RetrySchedule []time.Duration `json:"retry_schedule,omitempty"`
	// RateLimit is the most requests per second to the receiver (0: no
	// limit), RateBurst how many may go at once before it applies; the
	// owner of the subscription's partition keeps them.
	RateLimit int `json:"rate_limit,omitempty"`
	RateBurst int `json:"rate_burst,omitempty"`
	// DisabledReason says why Kurier switched the subscription off.
	DisabledReason string `json:"disabled_reason,omitempty"`
	// DailyAt ("HH:MM" in TimeZone) makes deliveries a daily digest.
	DailyAt  string `json:"daily_at,omitempty"`
	TimeZone string `json:"time_zone,omitempty"`

	// Queue mode: the org's queue events are put into.
	QueueID string `json:"queue_id,omitempty"`
}

// Daily tells whether deliveries go out as a daily digest.
func (s Subscription) Daily() bool { return s.Mode == ModePayload && s.DailyAt != "" }

// NextDigest answers the first digest time after now. The time is local
// to the subscription's zone, so a digest at 08:00 stays at 08:00 across
// daylight saving changes.
func (s Subscription) NextDigest(now time.Time) (time.Time, error) {
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return time.Time{}, fmt.Errorf("time zone %q: %w", s.TimeZone, err)
	}
	hm, err := ParseDailyAt(s.DailyAt)
	if err != nil {
		return time.Time{}, err
	}
	local := now.In(loc)
	at := time.Date(local.Year(), local.Month(), local.Day(), hm.Hour(), hm.Minute(), hm.Second(), 0, loc)
	if !at.After(now) {
		at = time.Date(local.Year(), local.Month(), local.Day()+1, hm.Hour(), hm.Minute(), hm.Second(), 0, loc)
	}
	return at, nil
}

// ParseDailyAt reads a digest's time of day: "HH:MM", or "HH:MM:SS".
func ParseDailyAt(v string) (time.Time, error) {
	for _, layout := range []string{"15:04", "15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("daily_at %q is not HH:MM", v)
}

// ArmDigest starts the timer of the subscription's next digest, unless
// one is running.
func ArmDigest(ctx context.Context, js jetstream.JetStream, sub Subscription, now time.Time) error {
	at, err := sub.NextDigest(now)
	if err != nil {
		return err
	}
	if err := jet.StartTimer(ctx, js, bus.DigestSched(sub.ID), bus.DigestDue(sub.ID), at, nil); err != nil && !errors.Is(err, jet.ErrTimerRunning) {
		return err
	}
	return nil
}

// Spec is what a payload subscription says about its requests.
func (s Subscription) Spec() payload.Spec {
	return payload.Spec{URL: s.URL, Table: s.Table, Conditions: s.Conditions, Attributes: s.Attributes, Fields: s.Fields, Format: s.Format}
}

// Secrets answers the secrets a request made at now is signed with.
func (s Subscription) Secrets(now time.Time) []string {
	if s.PrevSecret != "" && now.Before(s.PrevUntil) {
		return []string{s.Secret, s.PrevSecret}
	}
	return []string{s.Secret}
}

// Errors of the store.
var (
	ErrNotFound = errors.New("subscription not found")
	// ErrTaken: another ping subscription of the org already has the
	// system and event type.
	ErrTaken = errors.New("system and event type already taken")
)

// TakenError names the pair that is taken and by whom.
type TakenError struct {
	System, Type, By string
}

func (e *TakenError) Error() string {
	return fmt.Sprintf("system %q already has a ping subscription for %s (%s)", e.System, e.Type, e.By)
}

func (e *TakenError) Is(target error) bool { return target == ErrTaken }

// NewID makes a subscription id.
func NewID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidID tells whether id has the form NewID makes, so it can be put into
// keys and subjects.
func ValidID(id string) bool {
	if len(id) != 20 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// NewSecret makes a Standard Webhooks signing secret.
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "whsec_" + base64.StdEncoding.EncodeToString(b[:])
}

// Store reads and writes subscriptions and ping state.
type Store struct {
	js    jetstream.JetStream
	subs  jetstream.KeyValue
	state jetstream.KeyValue
}

// Open binds the store to its buckets, which bus.Ensure has created.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	subs, err := jet.Bucket(ctx, js, bus.BucketSubs)
	if err != nil {
		return nil, err
	}
	state, err := jet.Bucket(ctx, js, bus.BucketNotifyState)
	if err != nil {
		return nil, err
	}
	return &Store{js: js, subs: subs, state: state}, nil
}

// Bucket is the subscriptions bucket, for watchers.
func (s *Store) Bucket() jetstream.KeyValue { return s.subs }

// StateBucket is the ping state bucket, for watchers.
func (s *Store) StateBucket() jetstream.KeyValue { return s.state }

// Get reads a subscription.
func (s *Store) Get(ctx context.Context, id string) (Subscription, error) {
	sub, _, err := s.get(ctx, id)
	return sub, err
}

func (s *Store) get(ctx context.Context, id string) (Subscription, uint64, error) {
	e, err := s.subs.Get(ctx, bus.SubKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Subscription{}, 0, ErrNotFound
	}
	if err != nil {
		return Subscription{}, 0, fmt.Errorf("read subscription %s: %w", id, err)
	}
	var sub Subscription
	if err := json.Unmarshal(e.Value(), &sub); err != nil {
		return Subscription{}, 0, fmt.Errorf("decode subscription %s: %w", id, err)
	}
	return sub, e.Revision(), nil
}

// Lister lists subscriptions from memory, kept current by one watch of
// the bucket for as long as the context it was made with lives.
type Lister struct {
	cache *kvcache.Cache[Subscription]
}

// Lister starts following the subscriptions until ctx ends.
func (s *Store) Lister(ctx context.Context, log *slog.Logger) (*Lister, error) {
	c, err := kvcache.Open(ctx, s.js, s.subs, func(key string, value []byte) (Subscription, bool, error) {
		var sub Subscription
		if _, ok := bus.SubOfKey(key); !ok {
			return sub, false, nil // a ping claim
		}
		return sub, true, json.Unmarshal(value, &sub)
	}, log)
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	return &Lister{cache: c}, nil
}

// List answers an org's subscriptions ("" for every org), oldest first.
func (l *Lister) List(ctx context.Context, org string) ([]Subscription, error) {
	out, err := l.cache.List(ctx, func(sub Subscription) bool { return org == "" || sub.Org == org })
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Subscription) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Create stores a new subscription, claiming its (system, type) pairs
// first when it is a ping subscription.
func (s *Store) Create(ctx context.Context, sub Subscription) error {
	if err := s.claim(ctx, sub, sub.EventTypes); err != nil {
		return err
	}
	b, _ := json.Marshal(sub)
	if _, err := s.subs.Create(ctx, bus.SubKey(sub.ID), b); err != nil {
		s.release(ctx, sub, sub.EventTypes)
		return fmt.Errorf("create subscription: %w", err)
	}
	return nil
}

// Update changes a subscription with fn, keeping claims in step with its
// types; a concurrent change makes it read again and reapply fn.
func (s *Store) Update(ctx context.Context, id string, fn func(*Subscription) error) (Subscription, error) {
	for {
		old, rev, err := s.get(ctx, id)
		if err != nil {
			return Subscription{}, err
		}
		sub := old
		sub.EventTypes = slices.Clone(old.EventTypes)
		if err := fn(&sub); err != nil {
			return Subscription{}, err
		}
		if claimsOf(sub) != claimsOf(old) || sub.System != old.System {
			if err := s.claim(ctx, sub, sub.EventTypes); err != nil {
				return Subscription{}, err
			}
		}
		b, _ := json.Marshal(sub)
		_, err = s.subs.Update(ctx, bus.SubKey(id), b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return Subscription{}, fmt.Errorf("update subscription %s: %w", id, err)
		}
		// Release what the old version claimed and the new one does not.
		if old.Mode == ModePing {
			var gone []string
			for _, t := range old.EventTypes {
				if sub.Mode != ModePing || sub.System != old.System || !slices.Contains(sub.EventTypes, t) {
					gone = append(gone, t)
				}
			}
			s.release(ctx, old, gone)
		}
		return sub, nil
	}
}

func claimsOf(sub Subscription) string {
	if sub.Mode != ModePing {
		return ""
	}
	return strings.Join(sub.EventTypes, ",")
}

// Delete removes a subscription, its claims and its ping state. The
// state's purge marker stays, so that a write racing the delete cannot
// bring the state back (UpdateState answers ErrNotFound).
func (s *Store) Delete(ctx context.Context, id string) (Subscription, error) {
	sub, err := s.Get(ctx, id)
	if err != nil {
		return Subscription{}, err
	}
	if err := s.subs.Purge(ctx, bus.SubKey(id)); err != nil {
		return Subscription{}, fmt.Errorf("delete subscription %s: %w", id, err)
	}
	s.release(ctx, sub, sub.EventTypes)
	if err := s.state.Purge(ctx, id); err != nil {
		return Subscription{}, fmt.Errorf("delete state of %s: %w", id, err)
	}
	return sub, nil
}

// claim takes (org, system, type) for each type of a ping subscription.
// A claim whose holder no longer has the pair is stale and taken over, so
// a crash between claiming and writing never blocks a pair for good.
func (s *Store) claim(ctx context.Context, sub Subscription, types []string) error {
	if sub.Mode != ModePing {
		return nil
	}
	var taken []string
	for _, t := range types {
		key := bus.PingClaimKey(sub.Org, sub.System, t)
		_, err := s.subs.Create(ctx, key, []byte(sub.ID))
		if errors.Is(err, jetstream.ErrKeyExists) {
			err = s.takeOver(ctx, key, sub, t)
		}
		if err != nil {
			s.release(ctx, sub, taken)
			return err
		}
		taken = append(taken, t)
	}
	return nil
}

func (s *Store) takeOver(ctx context.Context, key string, sub Subscription, typ string) error {
	e, err := s.subs.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read claim: %w", err)
	}
	holder := string(e.Value())
	if holder == sub.ID {
		return nil
	}
	if h, err := s.Get(ctx, holder); err == nil && h.Mode == ModePing && h.Org == sub.Org && h.System == sub.System && slices.Contains(h.EventTypes, typ) {
		return &TakenError{System: sub.System, Type: typ, By: holder}
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if _, err := s.subs.Update(ctx, key, []byte(sub.ID), e.Revision()); err != nil {
		return fmt.Errorf("take over claim: %w", err)
	}
	return nil
}

// release gives up claims; failures leave stale claims that the next
// claimant takes over, so they are not errors.
func (s *Store) release(ctx context.Context, sub Subscription, types []string) {
	if sub.Mode != ModePing {
		return
	}
	for _, t := range types {
		key := bus.PingClaimKey(sub.Org, sub.System, t)
		if e, err := s.subs.Get(ctx, key); err == nil && string(e.Value()) == sub.ID {
			_ = s.subs.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
		}
	}
}

// PingSubscription answers the id of the ping subscription that an org's
// system has for a type, if any.
func (s *Store) PingSubscription(ctx context.Context, org, system, typ string) (string, bool, error) {
	e, err := s.subs.Get(ctx, bus.PingClaimKey(org, system, typ))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read claim: %w", err)
	}
	id := string(e.Value())
	sub, err := s.Get(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && (sub.Mode != ModePing || sub.System != system || !slices.Contains(sub.EventTypes, typ))) {
		return "", false, nil // a stale claim
	}
	if err != nil {
		return "", false, err
	}
	return id, true, nil
}
