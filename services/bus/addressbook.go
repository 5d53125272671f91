package bus

import "encoding/base64"

// The persons bucket keys an org's person by its external id, and keeps
// for each id a sync brought in the org it belongs to. External ids are
// any text, so keys carry them base64url-encoded: that alphabet is all
// valid in a key and has no dot, which would split a subject token.
func PersonKey(org, id string) string { return "p." + org + "." + encodeID(id) }

// PersonsOf matches the keys of an org's persons.
func PersonsOf(org string) string { return "p." + org + ".>" }

// PersonOwnerKey holds the org that a synced external id belongs to.
func PersonOwnerKey(id string) string { return "o." + encodeID(id) }

// PersonID answers the external id a person's key or owner key names.
func PersonID(key string) (string, bool) {
	i := len(key)
	for i > 0 && key[i-1] != '.' {
		i--
	}
	b, err := base64.RawURLEncoding.DecodeString(key[i:])
	return string(b), err == nil && i > 0
}

func encodeID(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// BookLockKey is the lock that lets one writer at a time change an org's
// address book.
func BookLockKey(org string) string { return "addressbook." + org }

// An address-book sync is journalled from its acceptance to its end: its
// change set in chunks on SyncOps, and how far it got on SyncState. Both
// are purged when it ends, so an org with a message on SyncState has a
// sync to finish or undo.
func SyncOps(org string) string   { return "kurier.sync." + org + ".ops" }
func SyncState(org string) string { return "kurier.sync." + org + ".state" }

// SyncOf matches an org's journal; SyncAll every org's.
func SyncOf(org string) string { return "kurier.sync." + org + ".>" }

const SyncAll = "kurier.sync.>"

// KVSubject is the subject a key of a bucket is stored on, and KVStream
// the stream behind a bucket, for reads and writes the key-value API
// does not offer.
func KVSubject(bucket, key string) string { return "$KV." + bucket + "." + key }
func KVStream(bucket string) string       { return "KV_" + bucket }
