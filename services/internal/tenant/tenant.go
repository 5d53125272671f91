// Package tenant holds organisations and their API keys as they are stored
// in JetStream key-value buckets, and checks a presented key.
package tenant

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/kvcache"
)

// Scope is what a key may be used for.
type Scope string

const (
	ScopeIngest      Scope = "ingest"
	ScopeChanges     Scope = "changes"
	ScopePartner     Scope = "partner"
	ScopeAddressbook Scope = "addressbook"
)

// Org is an organisation.
type Org struct {
	ID          string    `json:"org_id"`
	DisplayName string    `json:"display_name"`
	Created     time.Time `json:"created"`
	// The address-book sync (FE2): whether its API serves the org, how
	// many persons not marked deleted the org may have (0: any number),
	// and whether a sync deletes the persons its list lacks or only marks
	// them deleted.
	AddressbookSync     bool `json:"addressbook_sync,omitempty"`
	PersonQuota         int  `json:"person_quota,omitempty"`
	AllowPersonDeletion bool `json:"allow_person_deletion,omitempty"`
}

// Key is an API key. The secret itself is never stored: only its hash.
type Key struct {
	ID          string     `json:"key_id"`
	Org         string     `json:"org_id"`
	Scopes      []Scope    `json:"scopes"`
	Description string     `json:"description,omitempty"`
	Hash        string     `json:"hash"` // hex SHA-256 of the whole secret
	Created     time.Time  `json:"created"`
	Revoked     *time.Time `json:"revoked,omitempty"`
}

// Has tells whether the key carries the scope.
func (k Key) Has(s Scope) bool { return slices.Contains(k.Scopes, s) }

var orgIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,31}$`)

// ValidOrgID tells whether id can name an org. Org ids become NATS subject
// tokens and KV keys, so the pattern keeps out dots, wildcards and spaces.
func ValidOrgID(id string) bool { return orgIDPattern.MatchString(id) }

// Errors of Authenticate; both carry no detail on purpose, so an answer
// never tells whether a key exists.
var (
	ErrUnauthenticated = errors.New("missing, unknown or revoked key")
	ErrForbidden       = errors.New("key lacks the scope")
	ErrNotFound        = errors.New("not found")
	ErrExists          = errors.New("already exists")
)

// Secrets look like kur_<16 hex key id>_<43 base64url chars>: the key id
// finds the record without a scan, the random rest is the secret.
const (
	secretPrefix = "kur_"
	keyIDLen     = 16
)

// NewSecret makes a key id and the secret that embeds it.
func NewSecret() (id, secret string) {
	var idb [keyIDLen / 2]byte
	var sb [32]byte
	_, _ = rand.Read(idb[:]) // crypto/rand.Read never fails
	_, _ = rand.Read(sb[:])
	id = hex.EncodeToString(idb[:])
	return id, secretPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(sb[:])
}

// HashSecret is the stored form of a secret. The secret is 256 random bits,
// so a plain SHA-256 cannot be brute-forced and needs no slow KDF.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func keyIDOf(secret string) (string, bool) {
	if len(secret) != len(secretPrefix)+keyIDLen+1+43 || !strings.HasPrefix(secret, secretPrefix) {
		return "", false
	}
	id := secret[len(secretPrefix) : len(secretPrefix)+keyIDLen]
	if secret[len(secretPrefix)+keyIDLen] != '_' {
		return "", false
	}
	return id, ValidKeyID(id)
}

// ValidKeyID tells whether id has the form of a key id.
func ValidKeyID(id string) bool {
	if len(id) != keyIDLen {
		return false
	}
	for _, c := range []byte(id) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Store reads and writes orgs and keys.
type Store struct {
	js   jetstream.JetStream
	orgs jetstream.KeyValue
	keys jetstream.KeyValue
}

// Open binds the store to the buckets, which bus.Ensure has created.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	orgs, err := jet.Bucket(ctx, js, bus.BucketOrgs)
	if err != nil {
		return nil, err
	}
	keys, err := jet.Bucket(ctx, js, bus.BucketKeys)
	if err != nil {
		return nil, err
	}
	return &Store{js: js, orgs: orgs, keys: keys}, nil
}

// Authenticate finds the key a secret belongs to and checks that it is live
// and carries the scope.
func (s *Store) Authenticate(ctx context.Context, secret string, scope Scope) (Key, error) {
	k, err := s.live(ctx, secret)
	return scoped(k, err, scope)
}

// AuthenticateOrg is Authenticate for a request that names its org, as a
// NATS subject does. A key of another org is ErrUnauthenticated, as an
// unknown key is, whatever its scopes: the answer must not tell that the
// key exists elsewhere.
func (s *Store) AuthenticateOrg(ctx context.Context, org, secret string, scope Scope) (Key, error) {
	k, err := s.live(ctx, secret)
	if err == nil && k.Org != org {
		err = ErrUnauthenticated
	}
	return scoped(k, err, scope)
}

// scoped answers the key live found if it carries the scope.
func scoped(k Key, err error, scope Scope) (Key, error) {
	if err != nil {
		return Key{}, err
	}
	if !k.Has(scope) {
		return Key{}, ErrForbidden
	}
	return k, nil
}

// live finds the key a secret belongs to and checks that it is not revoked.
func (s *Store) live(ctx context.Context, secret string) (Key, error) {
	id, ok := keyIDOf(secret)
	if !ok {
		return Key{}, ErrUnauthenticated
	}
	k, err := s.Key(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Key{}, ErrUnauthenticated
	}
	if err != nil {
		return Key{}, err
	}
	if subtle.ConstantTimeCompare([]byte(HashSecret(secret)), []byte(k.Hash)) != 1 || k.Revoked != nil {
		return Key{}, ErrUnauthenticated
	}
	return k, nil
}

// CreateOrg stores a new org; ErrExists if the id is taken.
func (s *Store) CreateOrg(ctx context.Context, o Org) error {
	return create(ctx, s.orgs, o.ID, o)
}

// Org reads one org.
func (s *Store) Org(ctx context.Context, id string) (Org, error) {
	var o Org
	return o, get(ctx, s.orgs, id, &o)
}

// UpdateOrg changes an org with change, which sees its current state.
func (s *Store) UpdateOrg(ctx context.Context, id string, change func(*Org) error) (Org, error) {
	return update(ctx, s.orgs, id, func(o *Org) (bool, error) { return true, change(o) })
}

// DeleteOrg removes an org and its keys, as a Lister lists them.
func (s *Store) DeleteOrg(ctx context.Context, id string, keys []Key) error {
	if _, err := s.Org(ctx, id); err != nil {
		return err
	}
	for _, k := range keys {
		if err := s.DeleteKey(ctx, k.ID); err != nil {
			return err
		}
	}
	if err := s.orgs.Purge(ctx, id); err != nil {
		return fmt.Errorf("delete org %s: %w", id, err)
	}
	return nil
}

// DeleteKey removes a key, as deleting its org does.
func (s *Store) DeleteKey(ctx context.Context, id string) error {
	if err := s.keys.Purge(ctx, id); err != nil {
		return fmt.Errorf("delete key %s: %w", id, err)
	}
	return nil
}

// CreateKey stores a new key.
func (s *Store) CreateKey(ctx context.Context, k Key) error {
	return create(ctx, s.keys, k.ID, k)
}

// Key reads one key.
func (s *Store) Key(ctx context.Context, id string) (Key, error) {
	var k Key
	return k, get(ctx, s.keys, id, &k)
}

// RevokeKey marks a key revoked; revoking twice keeps the first time.
func (s *Store) RevokeKey(ctx context.Context, id string, now time.Time) (Key, error) {
	return update(ctx, s.keys, id, func(k *Key) (bool, error) {
		if k.Revoked != nil {
			return false, nil
		}
		k.Revoked = &now
		return true, nil
	})
}

// update reads key, lets change alter it and writes it back if change
// says so and nothing else wrote it meanwhile; otherwise it reads again.
func update[T any](ctx context.Context, kv jetstream.KeyValue, key string, change func(*T) (bool, error)) (T, error) {
	for {
		var v T
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return v, ErrNotFound
		}
		if err != nil {
			return v, fmt.Errorf("read %s: %w", key, err)
		}
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			return v, fmt.Errorf("decode %s: %w", key, err)
		}
		write, err := change(&v)
		if err != nil || !write {
			return v, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return v, fmt.Errorf("encode %s: %w", key, err)
		}
		_, err = kv.Update(ctx, key, b, e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // changed under us: read again
		}
		if err != nil {
			return v, fmt.Errorf("update %s: %w", key, err)
		}
		return v, nil
	}
}

func create(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if _, err := kv.Create(ctx, key, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrExists
		}
		return fmt.Errorf("create %s: %w", key, err)
	}
	return nil
}

func get(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

// Lister lists orgs and keys from memory, kept current by one watch of
// each bucket for as long as the context it was made with lives.
type Lister struct {
	orgs *kvcache.Cache[Org]
	keys *kvcache.Cache[Key]
}

// Lister starts following the orgs and keys until ctx ends.
func (s *Store) Lister(ctx context.Context, log *slog.Logger) (*Lister, error) {
	orgs, err := kvcache.Open(ctx, s.js, s.orgs, decode[Org], log)
	if err != nil {
		return nil, err
	}
	keys, err := kvcache.Open(ctx, s.js, s.keys, decode[Key], log)
	if err != nil {
		return nil, err
	}
	return &Lister{orgs: orgs, keys: keys}, nil
}

func decode[T any](_ string, value []byte) (T, bool, error) {
	var v T
	return v, true, json.Unmarshal(value, &v)
}

// Orgs lists every org, ordered by id.
func (l *Lister) Orgs(ctx context.Context) ([]Org, error) {
	out, err := l.orgs.List(ctx, func(Org) bool { return true })
	slices.SortFunc(out, func(a, b Org) int { return strings.Compare(a.ID, b.ID) })
	return out, err
}

// Keys lists an org's keys, ordered by id.
func (l *Lister) Keys(ctx context.Context, org string) ([]Key, error) {
	out, err := l.keys.List(ctx, func(k Key) bool { return k.Org == org })
	slices.SortFunc(out, func(a, b Key) int { return strings.Compare(a.ID, b.ID) })
	return out, err
}
