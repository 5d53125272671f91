package bus

import (
	"encoding/hex"
	"strings"
)

// SubKey is a subscription's key in BucketSubs; SubKeys matches them all,
// and SubOfKey parses one, answering false for the bucket's other keys.
func SubKey(id string) string { return "sub." + id }

const SubKeys = "sub.>"

func SubOfKey(key string) (string, bool) { return strings.CutPrefix(key, "sub.") }

// PingClaimKey is the key in BucketSubs that a ping subscription holds for
// each of its types, which makes (org, system, type) unique across every
// admin replica.
func PingClaimKey(org, system, typ string) string { return "ping." + systemKey(org, system, typ) }

// FeedKey is where BucketFeeds keeps a change feed's position.
func FeedKey(org, system, typ string) string { return systemKey(org, system, typ) }

// systemKey names what is kept per org, receiving system and event type.
// The system is hex-encoded: it may hold characters keys cannot.
func systemKey(org, system, typ string) string {
	return org + "." + hex.EncodeToString([]byte(system)) + "." + typ
}

// QueueKey is a pull queue's record in BucketQueues, and OrgQueuesKey the
// list of an org's queue ids there.
func QueueKey(id string) string      { return "q." + id }
func OrgQueuesKey(org string) string { return "org." + org }

// WalkLockKey is the lock in BucketLocks that lets one dispatcher replica
// at a time walk an ordered subscription's events.
func WalkLockKey(sub string) string { return "walk." + sub }

// SchemaKey is where BucketSchemas keeps an org's JSON Schema for an event
// type; SchemaOfKey parses one. Org ids hold no dots, so the first one
// ends the org, and the type keeps its own.
func SchemaKey(org, typ string) string { return org + "." + typ }

func SchemaOfKey(key string) (org, typ string, ok bool) { return strings.Cut(key, ".") }
