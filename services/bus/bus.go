// Package bus holds the one definition of every JetStream subject, stream,
// consumer, key-value bucket and key that Kurier's services meet on, with
// their parsers. Services never talk to each other directly: they publish
// and read on these names. The ways of publishing and reading them are in
// jet, and the locks in lease, so that a name is looked for in one place.
package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream and bucket names.
const (
	StreamEvents      = "EVENTS"
	StreamNotify      = "NOTIFY"
	StreamDeliveryLog = "DELIVERY_LOG"
	StreamDeliveries  = "DELIVERIES"
	StreamDeadLetters = "DEAD_LETTERS"
	StreamQueues      = "QUEUES"
	StreamSyncJournal = "SYNC_JOURNAL"
	StreamStats       = "STATS"
	StreamStatsMinute = "STATS_MINUTES"
	BucketOrgs        = "orgs"
	BucketKeys        = "keys"
	BucketSubs        = "subscriptions"
	BucketNotifyState = "notify-state"
	BucketFeeds       = "feeds"
	BucketQueues      = "queues"
	BucketPersons     = "persons"
	BucketLocks       = "locks"
	BucketDispatchers = "dispatchers"
	BucketSchemas     = "schemas"
	BucketSyncs       = "syncs"
)

// EventsSubject is where an org's event of the given type is stored. Types
// are dotted names, so each dot adds a subject token and subscribers can
// filter on prefixes (kurier.events.acme.invoice.>).
func EventsSubject(org, typ string) string { return "kurier.events." + org + "." + typ }

// EventOf parses an EventsSubject.
func EventOf(subject string) (org, typ string, ok bool) {
	rest, ok := strings.CutPrefix(subject, "kurier.events.")
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ".")
}

// EventsOrgFilter matches every event of an org.
func EventsOrgFilter(org string) string { return "kurier.events." + org + ".>" }

// IngestSubject is where events are requested over NATS for an org;
// IngestWildcard is what the ingest service listens on.
func IngestSubject(org string) string { return "kurier.ingest." + org }

const IngestWildcard = "kurier.ingest.*"

// IngestOrg parses an IngestSubject.
func IngestOrg(subject string) string { return strings.TrimPrefix(subject, "kurier.ingest.") }

// TestEventSubject is where admin asks for a test event to be sent
// through a subscription (a core NATS request); one dispatcher replica of
// the queue group TestEventGroup makes it and answers.
const (
	TestEventSubject = "kurier.dispatch.test"
	TestEventGroup   = "kurier-dispatcher"
)

// The coalescing timer of a ping subscription lives on two subjects: a
// scheduled message on NotifySched that the server turns into one on
// NotifyDue at its time. NotifyAll matches both, so the last message on it
// tells whether a ping is pending.
func NotifySched(sub string) string { return "kurier.notify.sched." + sub }
func NotifyDue(sub string) string   { return "kurier.notify.due." + sub }
func NotifyAll(sub string) string   { return "kurier.notify.*." + sub }

const NotifyDueWildcard = "kurier.notify.due.>"

// NotifyDueSub parses a NotifyDue subject.
func NotifyDueSub(subject string) string { return strings.TrimPrefix(subject, "kurier.notify.due.") }

// Payload delivery tasks are spread over Partitions partitions by
// subscription id. A partition has one consumer, which one dispatcher
// replica at a time reads (a pinned priority group): so a subscription's
// tasks are in one replica's hands, and the number of consumers does not
// grow with subscriptions. All replicas must agree on the count, which is
// why it is fixed here.
const Partitions = 16

// Partition answers the partition of a subscription's delivery tasks.
func Partition(sub string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(sub))
	return int(h.Sum32() % Partitions)
}

// DeliverSubject holds a payload subscription's delivery tasks, one per
// event (kurier.deliver.<partition>.<sub>); PartitionFilter matches a
// partition's.
func DeliverSubject(sub string) string {
	return "kurier.deliver." + strconv.Itoa(Partition(sub)) + "." + sub
}
func PartitionFilter(p int) string { return "kurier.deliver." + strconv.Itoa(p) + ".>" }

// TaskSub parses a DeliverSubject, or any task subject that ends in its
// subscription's id.
func TaskSub(subject string) string { return subject[strings.LastIndexByte(subject, '.')+1:] }

// DigestSubject gathers a daily subscription's tasks until its digest;
// nothing consumes it but the digest itself.
func DigestSubject(sub string) string { return "kurier.digest." + sub }

// TailSubject carries the dispatchers' markers that keep DELIVERIES' last
// block from emptying (jet.KeepTail); nothing reads them.
const TailSubject = "kurier.tail.deliveries"

// RetrySubject holds the scheduled next attempt of one task, which the
// server writes on the subscription's DeliverSubject at its time: a task
// waiting for its retry is a message in the stream, not one out on a
// consumer. key names the task (RetryKey).
func RetrySubject(sub, key string) string { return "kurier.retry." + sub + "." + key }

const RetryWildcard = "kurier.retry.>"

// PurgeTasks removes a deleted subscription's tasks from DELIVERIES: in
// its partition, waiting for a retry and gathered for a digest. Left
// there, a retry would wait up to a day to be dropped and a digest's tasks
// for good, each holding the stream's room meanwhile.
func PurgeTasks(ctx context.Context, deliveries jetstream.Stream, sub string) error {
	for _, subject := range []string{DeliverSubject(sub), RetrySubject(sub, ">"), DigestSubject(sub)} {
		if err := deliveries.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
			return fmt.Errorf("remove tasks on %s: %w", subject, err)
		}
	}
	return nil
}

// RetriesConsumer is never read: its pending count is the number of
// retries waiting (kurier_retries_scheduled), which the server keeps up
// to date as they are stored and fire. Listing the retries' subjects
// instead took 0.2 s and an answer of megabytes at 100,000 of them.
const RetriesConsumer = "retries-waiting"

// RetriesCounter is RetriesConsumer's configuration.
func RetriesCounter() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       RetriesConsumer,
		Description:   "Never read: its pending count is the number of payload retries waiting",
		FilterSubject: RetryWildcard,
		// A work-queue stream's consumers acknowledge explicitly; this one
		// takes nothing, so it acknowledges nothing either.
		AckPolicy: jetstream.AckExplicitPolicy,
	}
}

// Subjects of the layout before partitions: a shared consumer on
// kurier.deliver.<sub> and a lane per subscription. A dispatcher moves
// what is left on them into partitions.
const (
	LegacyDeliverFilter = "kurier.deliver.*"
	LegacyLaneFilter    = "kurier.lane.>"
)

// DeadSubject keeps a subscription's deliveries whose retries ran out.
func DeadSubject(org, sub string) string { return "kurier.dead." + org + "." + sub }

// DeliveryLogSubject is where a subscription's delivery attempts are logged.
func DeliveryLogSubject(org, sub string) string { return "kurier.log." + org + "." + sub }

// DeliveryLogFilter matches an org's attempts, or one subscription's.
func DeliveryLogFilter(org, sub string) string {
	if sub == "" {
		return "kurier.log." + org + ".*"
	}
	return DeliveryLogSubject(org, sub)
}

// Delivery statistics are rollups of attempts per subscription and hour
// (in STATS, for the last day and week) and per subscription and minute
// (in STATS_MINUTES, for the last hour and the current hour of the
// others); each replica writes its own, and a reader sums them. Minutes
// have a stream of their own, so that their churn never pushes the hours
// out.
const (
	StatsMinute = "m"
	StatsHour   = "h"
)

// StatsSubject holds a subscription's rollups of a level
// (kurier.stats.<level>.<org>.<sub>).
func StatsSubject(level, org, sub string) string {
	return "kurier.stats." + level + "." + org + "." + sub
}

// StatsFilter matches an org's rollups of a level, or one subscription's.
func StatsFilter(level, org, sub string) string {
	if sub == "" {
		sub = "*"
	}
	return StatsSubject(level, org, sub)
}

// StatsStream is the stream of a level's rollups.
func StatsStream(level string) string {
	if level == StatsMinute {
		return StreamStatsMinute
	}
	return StreamStats
}

// StatsMaxAge keeps hourly rollups for the week window and a day more;
// StatsMinuteMaxAge keeps minutes for the hour window, and for the current
// hour of the others, with ten minutes to spare.
const (
	StatsMaxAge       = 8 * 24 * time.Hour
	StatsMinuteMaxAge = 70 * time.Minute
)

// QueueSubject holds a pull queue's messages, each one's id its stream
// sequence.
func QueueSubject(queue string) string { return "kurier.queue." + queue }

// QueuedSubject is where the stream repeats the headers of each message
// stored on a queue, so that a peek waiting on any replica wakes at once;
// QueuedWildcard matches every queue's.
func QueuedSubject(queue string) string { return "kurier.queued." + queue }

const QueuedWildcard = "kurier.queued.>"

// EventMsgID is the Nats-Msg-Id that makes a resent event a duplicate:
// the org and the event's identity in it, its source and id, which the
// CloudEvents spec has producers keep unique together.
func EventMsgID(org, source, id string) string { return org + ":" + eventKey(source, id) }

// WebhookID is the webhook-id of an event's deliveries to a payload
// subscription (which belongs to one org): the same on every attempt, on
// a redelivery, and for the event sent again after the dedupe window, so
// that the receiver recognises it as the one it has had.
func WebhookID(sub, source, id string) string { return "msg_" + sub + "_" + eventKey(source, id) }

// eventKey names an event by its source and id in 32 hex digits (128 bits
// of SHA-256), whatever their length (up to 1,280 bytes together): the
// dedupe window holds one key per event in the server's memory. The
// source is length-prefixed, so no two pairs run together ("a:b" and "c"
// against "a" and "b:c").
func eventKey(source, id string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%d:%s%s", len(source), source, id))
	return hex.EncodeToString(sum[:16])
}

// Limits configures the stream definitions.
type Limits struct {
	Replicas       int           // 1, 3 or 5
	EventsMaxAge   time.Duration // how long events are kept
	LogMaxAge      time.Duration // how long delivery attempts are kept
	DedupeWindow   time.Duration // how long a resent event id is recognised
	MaxMsgBytes    int32         // largest message a stream takes
	QueueMaxMsgs   int           // messages one pull queue holds before it refuses more
	OperationLimit time.Duration // timeout for each create-or-update call
	MaxBytes       MaxBytes
}

// TaskDedupeWindow is how long DELIVERIES recognises a task stored again,
// at most (the dedupe window, if shorter). A task is stored again when
// the message that made it comes again: an event whose acknowledgement
// was lost, 30 s later (the dispatchers' ack wait on EVENTS) or once the
// NATS servers are back; a failed attempt's retry, likewise. The server
// keeps every id of the window in memory, about 100 bytes each, and there
// are tasks for every payload subscription an event matches: an hour of
// 10,000 deliveries/s would be 36 million ids, 3-5 GB. Ten minutes covers
// a redelivery after an outage of that length; a task stored again after
// a longer one is delivered again, under the same webhook-id.
const TaskDedupeWindow = 10 * time.Minute

// MaxBytes bounds each stream's size on disk (per replica). JetStream
// reserves the sum on every server that holds a replica, so they must fit
// in what the servers may store.
type MaxBytes struct {
	Events, Notify, Deliveries, DeadLetters, DeliveryLog, Queues, SyncJournal, Stats, StatsMinutes int64
}

// DefaultLimits are what a fresh installation uses. OperationLimit is
// short because callers retry: of two equal creates that race, as replicas
// started together send them, the cluster may leave one unanswered
// (nats-server 2.15), and waiting longer for it gains nothing. The sizes
// add up to about 3 GiB, which a small server's disk holds.
func DefaultLimits() Limits {
	return Limits{
		Replicas:       1,
		EventsMaxAge:   30 * 24 * time.Hour,
		LogMaxAge:      30 * 24 * time.Hour,
		DedupeWindow:   time.Hour,
		MaxMsgBytes:    1 << 20,
		QueueMaxMsgs:   100000,
		OperationLimit: 5 * time.Second,
		MaxBytes: MaxBytes{
			Events:       1 << 30,
			Notify:       64 << 20,
			Deliveries:   512 << 20,
			DeadLetters:  128 << 20,
			DeliveryLog:  512 << 20,
			Queues:       512 << 20,
			SyncJournal:  256 << 20,
			Stats:        256 << 20,
			StatsMinutes: 256 << 20,
		},
	}
}

// Streams gives the stream definitions for the limits.
func Streams(l Limits) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{{
		Name:        StreamEvents,
		Description: "Document-change events, one subject per org and type",
		Subjects:    []string{"kurier.events.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
		MaxAge:      l.EventsMaxAge,
		MaxBytes:    l.MaxBytes.Events,
		Duplicates:  l.DedupeWindow,
		MaxMsgSize:  l.MaxMsgBytes,
		// Full, it refuses new events: every event it has taken was
		// answered 202 and stays until it ages out.
		Discard:     jetstream.DiscardNew,
		AllowDirect: true,
	}, {
		Name:        StreamNotify,
		Description: "Ping timers: a scheduled message per pending ping, the due message it becomes",
		Subjects:    []string{"kurier.notify.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
		// Only the last state of each timer matters; an unprocessed due
		// replaced by a newer one is coalesced into it.
		MaxMsgsPerSubject: 1,
		// A pending timer and a due message at most per ping subscription
		// and per daily digest. A stream with schedules cannot refuse new
		// messages (nats-server allows only DiscardOld there), so this
		// bound is a backstop.
		MaxBytes:          l.MaxBytes.Notify,
		AllowMsgSchedules: true,
		AllowDirect:       true,
	}, {
		Name:        StreamDeliveries,
		Description: "Payload delivery tasks by partition and subscription, scheduled retries, daily digests' tasks",
		Subjects:    []string{"kurier.deliver.>", "kurier.retry.>", "kurier.digest.>", TailSubject, LegacyLaneFilter},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
		// A redelivered event makes the same task: recognise it.
		Duplicates: min(l.DedupeWindow, TaskDedupeWindow),
		MaxMsgSize: l.MaxMsgBytes,
		// Retries wait as scheduled messages, so the server drops the
		// oldest tasks when it is full (it allows only DiscardOld with
		// schedules): size it for the tasks of receivers that fail for
		// long, until they are switched off.
		MaxBytes:          l.MaxBytes.Deliveries,
		Discard:           jetstream.DiscardOld,
		AllowMsgSchedules: true,
		// The dispatchers' tail markers (TailSubject) roll each other up;
		// the server allows roll-ups with schedules anyway.
		AllowRollup: true,
	}, {
		Name:        StreamDeadLetters,
		Description: "Payload deliveries whose retries ran out, kept for redelivery",
		Subjects:    []string{"kurier.dead.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
		MaxAge:      l.LogMaxAge,
		MaxMsgSize:  l.MaxMsgBytes,
		// Like age, size drops the oldest: a dead letter must never hold
		// up the delivery that gives up.
		MaxBytes: l.MaxBytes.DeadLetters,
		Discard:  jetstream.DiscardOld,
	}, {
		Name:        StreamDeliveryLog,
		Description: "One JSON record per delivery attempt",
		Subjects:    []string{"kurier.log.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
		MaxAge:      l.LogMaxAge,
		MaxBytes:    l.MaxBytes.DeliveryLog,
		Discard:     jetstream.DiscardOld,
	}, {
		Name:        StreamQueues,
		Description: "Pull queue messages, one subject per queue",
		Subjects:    []string{"kurier.queue.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
		// A full queue, or a full stream, refuses new messages rather than
		// dropping old ones, atomically on every replica.
		MaxMsgsPerSubject:    int64(l.QueueMaxMsgs),
		MaxBytes:             l.MaxBytes.Queues,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		// A redelivered event makes the same message: recognise it.
		Duplicates:  l.DedupeWindow,
		MaxMsgSize:  l.MaxMsgBytes,
		AllowDirect: true,
		RePublish:   &jetstream.RePublish{Source: "kurier.queue.>", Destination: "kurier.queued.>", HeadersOnly: true},
	}, {
		Name:        StreamSyncJournal,
		Description: "Address-book syncs from their acceptance to their end: the change set and how far it got",
		Subjects:    []string{"kurier.sync.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
		MaxMsgSize:  l.MaxMsgBytes,
		// Full, it refuses a change before any of it is made.
		MaxBytes: l.MaxBytes.SyncJournal,
		Discard:  jetstream.DiscardNew,
	}, statsStream(StreamStats, StatsHour, "Delivery attempts rolled up per subscription and hour", StatsMaxAge, l.Replicas, l.MaxBytes.Stats),
		statsStream(StreamStatsMinute, StatsMinute, "Delivery attempts rolled up per subscription and minute", StatsMinuteMaxAge, l.Replicas, l.MaxBytes.StatsMinutes),
	}
}

func statsStream(name, level, about string, age time.Duration, replicas int, bytes int64) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Description: about,
		Subjects:    []string{StatsFilter(level, "*", "")},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      age,
		// A flush sent again after a failure is recognised.
		Duplicates: 2 * time.Minute,
		// Figures, not work: full, the oldest go first.
		MaxBytes: bytes,
		Discard:  jetstream.DiscardOld,
	}
}

// Buckets gives the key-value bucket definitions for the limits.
func Buckets(l Limits) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: BucketOrgs, Description: "Organisations by org id", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		{Bucket: BucketKeys, Description: "API keys by key id; secrets only as hashes", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		{Bucket: BucketSubs, Description: "Subscriptions (sub.<id>) and ping claims (ping.<org>.<system>.<type>)", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		{Bucket: BucketNotifyState, Description: "Ping state per subscription: unacked count, last ping, claim", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		{Bucket: BucketFeeds, Description: "Change feed positions per org, system and type", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		{Bucket: BucketQueues, Description: "Pull queues (q.<id>) with their secrets' SHA-256 only, and each org's queue ids (org.<org>)", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		{Bucket: BucketPersons, Description: "Address-book persons (p.<org>.<id>) and the org each synced id belongs to (o.<id>)", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		// A lock's key expires unless its holder renews it, so a holder that
		// dies frees the lock by itself.
		{Bucket: BucketLocks, Description: "Locks with a time to live, such as one address-book sync per org", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas, LimitMarkerTTL: time.Minute},
		// A dispatcher replica that stops renewing its key is gone once the
		// key ages out: the others then share its partitions.
		{Bucket: BucketDispatchers, Description: "Live dispatcher replicas, each renewing its key", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas, TTL: MemberTTL},
		{Bucket: BucketSchemas, Description: "JSON Schemas of event types' data, per org and type (<org>.<type>)", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		// Apart from the persons, so that a refused sync still writes no person.
		{Bucket: BucketSyncs, Description: "How each org's last address-book sync ended (<org>)", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas},
	}
}

// DispatchConsumer is the dispatchers' durable consumer of EVENTS, which
// every replica shares. It starts with the events stored after it is made,
// so Ensure makes it with the streams, before ingest can accept any: made
// by the first dispatcher to run, it would pass over what ingest had
// accepted until then, and those events would reach no subscription.
func DispatchConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       "dispatcher",
		Description:   "Matches events to subscriptions",
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 10000,
	}
}

// PingsConsumer and DigestsConsumer are the dispatchers' durable
// consumers of NOTIFY's due pings and due digests, shared by every
// replica.
const (
	PingsConsumer   = "dispatcher-pings"
	DigestsConsumer = "dispatcher-digests"
)

// MemberTTL is how long a dispatcher replica counts as alive after it last
// renewed its key in BucketDispatchers.
const MemberTTL = 2 * time.Second

// PartitionConsumer names the consumer of a partition's delivery tasks;
// PartitionGroup is the priority group that pins it to one replica.
func PartitionConsumer(p int) string { return "partition-" + strconv.Itoa(p) }

const PartitionGroup = "owner"

// DeliveriesHeadroom is the part of DELIVERIES that nothing fills: the
// server allows a stream with schedules only to drop its oldest messages
// when full, so no task is stored once it holds more than the rest.
const DeliveriesHeadroom = 0.05

// DeliveriesFull tells whether DELIVERIES, holding bytes of its limit (0
// for none), has reached its headroom.
func DeliveriesFull(bytes, limit int64) bool {
	return limit > 0 && float64(bytes) >= (1-DeliveriesHeadroom)*float64(limit)
}

// ErrNoRoom: a stream's byte limit does not fit in what the NATS server
// may still store, which JetStream checks against the sum of every
// stream's limit. Waiting does not change that, so jet.Retry gives up at once.
var ErrNoRoom = errors.New("the streams' byte limits add up to more than the NATS server may store")

// errNoStorage is the error code of a stream whose limit the server has
// no room for.
const errNoStorage jetstream.ErrorCode = 10047

// ErrRefused: the NATS server finds a stream's configuration invalid, as
// a dedupe window longer than the stream's age or settings that contradict
// one the stream has. Waiting does not change that either.
var ErrRefused = errors.New("the NATS server refuses the stream's configuration")

// errInvalidConfig is the error code of a stream configuration the server
// refuses.
const errInvalidConfig jetstream.ErrorCode = 10052

// Ensure creates or updates every stream and bucket, and the dispatchers'
// consumer of EVENTS, so whichever service starts first lays them down and
// a changed replica count or size limit is applied.
func Ensure(ctx context.Context, js jetstream.JetStream, l Limits) error {
	for _, cfg := range Streams(l) {
		cctx, cancel := context.WithTimeout(ctx, l.OperationLimit)
		_, err := js.CreateOrUpdateStream(cctx, cfg)
		cancel()
		var apiErr *jetstream.APIError
		errors.As(err, &apiErr)
		switch {
		case apiErr != nil && apiErr.ErrorCode == errNoStorage:
			return fmt.Errorf("stream %s of %d bytes: %w (%w)", cfg.Name, cfg.MaxBytes, ErrNoRoom, err)
		case apiErr != nil && apiErr.ErrorCode == errInvalidConfig:
			return fmt.Errorf("stream %s: %w (%w)", cfg.Name, ErrRefused, err)
		case err != nil:
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	for _, cfg := range Buckets(l) {
		cctx, cancel := context.WithTimeout(ctx, l.OperationLimit)
		_, err := js.CreateOrUpdateKeyValue(cctx, cfg)
		cancel()
		if err != nil {
			return fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, l.OperationLimit)
	defer cancel()
	if _, err := js.CreateOrUpdateConsumer(cctx, StreamEvents, DispatchConsumer()); err != nil {
		return fmt.Errorf("consumer %s of %s: %w", DispatchConsumer().Durable, StreamEvents, err)
	}
	return nil
}

// Check reports whether the connection is up and every stream and bucket
// exists, for readiness probes.
func Check(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, l Limits) error {
	if !nc.IsConnected() {
		return errors.New("nats: not connected")
	}
	for _, cfg := range Streams(l) {
		if _, err := js.Stream(ctx, cfg.Name); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	for _, cfg := range Buckets(l) {
		if _, err := js.KeyValue(ctx, cfg.Bucket); err != nil {
			return fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// Stream binds a stream that Ensure has created.
func Stream(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return s, nil
}

// Delivery task headers: the event's place in EVENTS, which makes the
// task's message id, and when it was stored.
const (
	HeaderEventSeq  = "Kurier-Event-Seq"
	HeaderEventTime = "Kurier-Event-Time"
	// HeaderAttempts: attempts made before this message; a retry says so.
	HeaderAttempts = "Kurier-Attempts"
	// HeaderRedelivery marks a task queued again by an admin, which an
	// ordered subscription delivers out of its order.
	HeaderRedelivery = "Kurier-Redelivery"
	// HeaderDeferred counts how often a task of a subscription that could
	// not keep up was stored again for later.
	HeaderDeferred = "Kurier-Deferred"
	// HeaderNotBefore is the legacy lanes' retry time, read when they are
	// moved into partitions.
	HeaderNotBefore = "Kurier-Not-Before"
	// HeaderTraceParent and HeaderTraceState carry the W3C trace context
	// of a stored event, delivery task, retry or queue message: the span
	// that stored it, which the next step's span is a child of.
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
	// HeaderSubRevision is the revision of the subscription a task was
	// routed by. The replica owning the task's partition may not have
	// seen a subscription made a moment ago: until its own view of the
	// subscriptions has come as far, an unknown one is not yet known
	// rather than deleted.
	HeaderSubRevision = "Kurier-Sub-Revision"
)

// SetSubRevision writes the revision of the subscription a task or ping
// timer is made for (HeaderSubRevision).
func SetSubRevision(h nats.Header, rev uint64) { h.Set(HeaderSubRevision, strconv.FormatUint(rev, 10)) }

// SubRevision reads HeaderSubRevision; 0 where there is none (a
// redelivery, an older task, a timer set by ingest), which asks for no
// waiting.
func SubRevision(h nats.Header) uint64 {
	rev, _ := strconv.ParseUint(h.Get(HeaderSubRevision), 10, 64)
	return rev
}

// DeliveryTask is the task of delivering an event (its stored bytes) to a
// payload subscription. The message id makes the same event's task a
// duplicate; a redelivery passes a mark that makes it new.
func DeliveryTask(sub string, eventSeq uint64, stored time.Time, data []byte, redelivery string) *nats.Msg {
	t := nats.NewMsg(DeliverSubject(sub))
	t.Data = data
	seq := strconv.FormatUint(eventSeq, 10)
	t.Header.Set(HeaderEventSeq, seq)
	t.Header.Set(HeaderEventTime, stored.UTC().Format(time.RFC3339Nano))
	id := sub + ":" + seq
	if redelivery != "" {
		id += ":" + redelivery
		t.Header.Set(HeaderRedelivery, redelivery)
	}
	t.Header.Set(jetstream.MsgIDHeader, id)
	return t
}

// TaskID is the id a task was first stored under, kept by its retries.
func TaskID(h nats.Header) string {
	if id := h.Get(HeaderTaskID); id != "" {
		return id
	}
	return h.Get(jetstream.MsgIDHeader)
}

// HeaderTaskID carries a task's first id on its retries, whose messages
// are stored by the server's scheduler without a message id.
const HeaderTaskID = "Kurier-Task-Id"

// Again is a task stored once more for sub on subject: the same event and
// id, with the attempts made so far and how often it was deferred, under
// a message id of its own (what the caller names) so that doing it twice
// stores it once. With at set, it is a scheduled message that the server
// writes on the subscription's DeliverSubject then.
func Again(m *nats.Msg, sub, subject string, attempts, deferred int, at time.Time, why string) *nats.Msg {
	t := nats.NewMsg(subject)
	t.Data = m.Data
	// Only the task's own headers: a delivered message carries the
	// server's too (Nats-Pin-Id, Nats-Scheduler), which mean nothing here.
	for _, k := range []string{HeaderEventSeq, HeaderEventTime, HeaderRedelivery, HeaderTraceParent, HeaderTraceState} {
		if v := m.Header.Get(k); v != "" {
			t.Header.Set(k, v)
		}
	}
	id := TaskID(m.Header)
	t.Header.Set(HeaderTaskID, id)
	if attempts > 0 {
		t.Header.Set(HeaderAttempts, strconv.Itoa(attempts))
	}
	if deferred > 0 {
		t.Header.Set(HeaderDeferred, strconv.Itoa(deferred))
	}
	if !at.IsZero() {
		t.Header.Set(jetstream.ScheduleHeader, "@at "+at.UTC().Format(time.RFC3339Nano))
		t.Header.Set(jetstream.ScheduleTargetHeader, DeliverSubject(sub))
	}
	t.Header.Set(jetstream.MsgIDHeader, id+":"+why+":"+strconv.Itoa(attempts)+"."+strconv.Itoa(deferred))
	return t
}

// RetryKey names a task in its retry subject: its id without the
// subscription, in characters a subject token may hold.
func RetryKey(sub string, h nats.Header) string {
	id := strings.TrimPrefix(TaskID(h), sub+":")
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r <= ' ' {
			return '_'
		}
		return r
	}, id)
}

// Digest timers of daily payload subscriptions, beside the ping timers.
func DigestSched(sub string) string { return "kurier.notify.digest." + sub }
func DigestDue(sub string) string   { return "kurier.notify.digested." + sub }

const DigestDueWildcard = "kurier.notify.digested.>"

// DigestDueSub parses a DigestDue subject.
func DigestDueSub(subject string) string {
	return strings.TrimPrefix(subject, "kurier.notify.digested.")
}
