package dispatcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"golang.org/x/time/rate"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/subs"
)

// Payload tasks are spread over bus.Partitions partitions by subscription,
// each with one consumer. The live dispatcher replicas (each renews a key
// in bus.BucketDispatchers) share the partitions out among themselves by
// the same rule, so each reads its own share; a replica that joins takes a
// share, one that leaves or dies has its share taken over. A partition's
// consumer is a pinned priority group: whichever replica reads it, the
// server hands its tasks to one at a time, so a subscription's in-flight
// limit holds across replicas: the owner keeps it in memory.
//
// A replica hands a partition over by stopping to read it, giving back
// the tasks it holds, waiting for its requests in flight, and unpinning
// the consumer; the next owner then gets the tasks at once. A replica that
// dies stops renewing its key and its pull requests: after bus.MemberTTL
// the others count it gone, and after pinTTL the server unpins it.

const (
	// pinTTL is how long a partition stays with a replica that has
	// stopped asking for tasks: the pause in a dead replica's partitions.
	pinTTL = 2500 * time.Millisecond
	// pullExpiry is how long one pull request waits, well within pinTTL.
	pullExpiry = time.Second
	// partitionAckWait bounds how long a dead replica's tasks in flight
	// wait to be redelivered; a request longer than a third of it renews
	// it while it runs.
	partitionAckWait = 30 * time.Second
	// partitionPending bounds a partition's tasks out at once: in flight
	// and held back.
	partitionPending = 10000
	// beat is how often a replica renews its key and looks at the others.
	beat = time.Second
	// holdAge: a subscription whose oldest held task has waited this long
	// cannot keep up; its tasks beyond its in-flight limit are stored
	// again for later, so they stand in no other subscription's way.
	holdAge = 2 * time.Second
)

// partitions is this replica's part in sharing out the partitions.
type partitions struct {
	js         jetstream.JetStream
	deliveries jetstream.Stream
	members    jetstream.KeyValue
	index      *index
	payloads   *payloads
	ordered    *ordered
	limits     *limits
	log        *slog.Logger
	m          *metrics
	id         string        // this replica's key
	slots      chan struct{} // payload requests at once in this replica

	mu       sync.Mutex // guards owned and leaving
	owned    map[int]*part
	leaving  map[int]chan struct{} // closed when the hand-over is done
	seenMu   sync.Mutex
	seen     map[string]time.Time // replica key -> last renewal seen
	handover sync.WaitGroup
}

func newPartitions(js jetstream.JetStream, deliveries jetstream.Stream, members jetstream.KeyValue, x *index, p *payloads, o *ordered, l *limits, n int, log *slog.Logger, m *metrics) *partitions {
	return &partitions{js: js, deliveries: deliveries, members: members, index: x, payloads: p, ordered: o, limits: l, log: log, m: m,
		id: "d-" + nuid.Next(), slots: make(chan struct{}, n),
		owned: map[int]*part{}, leaving: map[int]chan struct{}{}, seen: map[string]time.Time{}}
}

// ensure creates or updates every partition's consumer.
func (ps *partitions) ensure(ctx context.Context) error {
	for p := range bus.Partitions {
		if _, err := ps.js.CreateOrUpdateConsumer(ctx, bus.StreamDeliveries, jetstream.ConsumerConfig{
			Durable:        bus.PartitionConsumer(p),
			Description:    "Payload delivery tasks of partition " + strconv.Itoa(p),
			FilterSubject:  bus.PartitionFilter(p),
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        partitionAckWait,
			MaxAckPending:  partitionPending,
			MaxDeliver:     -1,
			PriorityPolicy: jetstream.PriorityPolicyPinned,
			PriorityGroups: []string{bus.PartitionGroup},
			PinnedTTL:      pinTTL,
		}); err != nil {
			return fmt.Errorf("consumer %s: %w", bus.PartitionConsumer(p), err)
		}
	}
	return nil
}

// run renews this replica's key and follows the others' until ctx ends,
// taking and handing over partitions as the replicas come and go; then it
// hands over every partition it owns, its requests in flight finished on
// work.
func (ps *partitions) run(ctx, work context.Context) {
	w, err := ps.members.WatchAll(ctx)
	if err == nil {
		go ps.follow(w)
	} else {
		ps.log.Warn("dispatcher replicas not watched, retrying", "err", err)
	}
	tick := time.NewTicker(beat)
	defer tick.Stop()
	sweep := time.NewTicker(holdAge / 4)
	defer sweep.Stop()
	for {
		if w == nil {
			if w, err = ps.members.WatchAll(ctx); err == nil {
				go ps.follow(w)
			}
		}
		// A replica counts itself alive even when its renewal fails, as
		// while NATS elects a leader: giving up its partitions would only
		// pause them. Should the others count it gone meanwhile, they read
		// its partitions too, but the server hands each to one reader.
		ps.renew(ctx)
		ps.rebalance(work, ps.alive())
		for done := false; !done; {
			select {
			case <-ctx.Done():
				ps.stop()
				return
			case <-sweep.C:
				// Outside ps.mu: a sweep may store tasks again, and only
				// this goroutine hands partitions over.
				ps.mu.Lock()
				owned := slices.Collect(maps.Values(ps.owned))
				ps.mu.Unlock()
				for _, pt := range owned {
					pt.sweep(work)
				}
			case <-tick.C:
				done = true
			}
		}
	}
}

// renew puts this replica's key.
func (ps *partitions) renew(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, beat)
	defer cancel()
	if _, err := ps.members.PutString(ctx, ps.id, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		ps.log.Warn("dispatcher replica key not renewed", "err", err)
	}
}

// follow notes every renewal and removal of a replica's key.
func (ps *partitions) follow(w jetstream.KeyWatcher) {
	defer w.Stop()
	loaded := false
	for e := range w.Updates() {
		if e == nil {
			loaded = true
			continue
		}
		ps.seenMu.Lock()
		if e.Operation() == jetstream.KeyValuePut {
			// Renewals seen live are timed here, so clocks that differ
			// from the server's do not matter; the first load has only
			// the server's time.
			at := time.Now()
			if !loaded {
				at = e.Created()
			}
			ps.seen[e.Key()] = at
		} else {
			delete(ps.seen, e.Key())
		}
		ps.seenMu.Unlock()
	}
}

// alive answers the live replicas' keys, this one's among them.
func (ps *partitions) alive() []string {
	ps.seenMu.Lock()
	defer ps.seenMu.Unlock()
	var out []string
	for k, at := range ps.seen {
		if time.Since(at) < bus.MemberTTL && k != ps.id {
			out = append(out, k)
		} else if time.Since(at) >= 2*bus.MemberTTL {
			delete(ps.seen, k)
		}
	}
	return append(out, ps.id)
}

// assign shares the partitions out among replicas: each partition goes to
// the replica that ranks it highest (rendezvous hashing, so a replica
// coming or going moves few partitions) among those not yet at their fair
// share. Every replica computes the same answer from the same keys.
func assign(replicas []string) map[int]string {
	out := map[int]string{}
	if len(replicas) == 0 {
		return out
	}
	fair := (bus.Partitions + len(replicas) - 1) / len(replicas)
	count := map[string]int{}
	ranked := slices.Clone(replicas)
	for p := range bus.Partitions {
		score := func(r string) uint64 {
			h := fnv.New64a()
			_, _ = h.Write([]byte(r + "/" + strconv.Itoa(p)))
			return h.Sum64()
		}
		slices.SortFunc(ranked, func(a, b string) int { return cmp.Compare(score(b), score(a)) })
		for _, r := range ranked {
			if count[r] < fair {
				out[p], count[r] = r, count[r]+1
				break
			}
		}
	}
	return out
}

// rebalance takes the partitions assigned to this replica and hands over
// the others.
func (ps *partitions) rebalance(work context.Context, replicas []string) {
	owner := assign(replicas)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for p, pt := range ps.owned {
		if owner[p] != ps.id {
			ps.handOver(p, pt)
		}
	}
	for p := range bus.Partitions {
		if owner[p] != ps.id || ps.owned[p] != nil {
			continue
		}
		if done, ok := ps.leaving[p]; ok {
			select {
			case <-done:
				delete(ps.leaving, p)
			default:
				continue // still being handed over: taken at the next beat
			}
		}
		pt, err := ps.take(work, p)
		if err != nil {
			ps.log.Warn("partition not taken, trying again", "partition", p, "err", err)
			continue
		}
		ps.owned[p] = pt
	}
	ps.m.partitions.Set(float64(len(ps.owned)))
}

// handOver stops reading a partition and hands it over in the background.
// ps.mu must be held.
func (ps *partitions) handOver(p int, pt *part) {
	delete(ps.owned, p)
	done := make(chan struct{})
	ps.leaving[p] = done
	ps.handover.Go(func() {
		defer close(done)
		pt.close()
	})
}

// stop hands over every partition and removes this replica's key, so the
// others take its share at once.
func (ps *partitions) stop() {
	ps.mu.Lock()
	for p, pt := range ps.owned {
		ps.handOver(p, pt)
	}
	ps.m.partitions.Set(0)
	ps.mu.Unlock()
	ps.handover.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := ps.members.Delete(ctx, ps.id); err != nil {
		ps.log.Warn("dispatcher replica key not removed; the others wait for it to expire", "err", err)
	}
}

// part is a partition this replica owns.
type part struct {
	n     int
	ps    *partitions
	work  context.Context
	stopC func()
	// ctx ends when the partition is handed over: ordered walks stop.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // requests in flight and ordered walks
	// got: tasks came, so this replica holds the pin, and unpins it when
	// it hands the partition over; one that never had it leaves the pin
	// with whoever has.
	got atomic.Bool

	mu      sync.Mutex // guards gates and closing
	gates   map[string]*gate
	closing bool
}

// gate keeps a subscription within its in-flight limit and its rate.
type gate struct {
	inflight int
	held     []heldTask
	latency  time.Duration // of its requests, smoothed
	// wake, while held tasks wait for their rate, starts them when it
	// lets them go: they hold no request slot meanwhile.
	wake *time.Timer
}

type heldTask struct {
	m       jetstream.Msg
	since   time.Time // held back since
	touched time.Time // last told the server it is being worked on
}

// take starts reading a partition.
func (ps *partitions) take(work context.Context, p int) (*part, error) {
	ctx, cancel := context.WithTimeout(work, 2*time.Second)
	defer cancel()
	cons, err := ps.js.Consumer(ctx, bus.StreamDeliveries, bus.PartitionConsumer(p))
	if err != nil {
		return nil, err
	}
	pt := &part{n: p, ps: ps, work: work, gates: map[string]*gate{}}
	pt.ctx, pt.cancel = context.WithCancel(work)
	pt.stopC, err = consume(cons, pt.take, jetstream.PullPriorityGroup(bus.PartitionGroup),
		jetstream.PullMaxMessages(1000), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		pt.cancel()
		return nil, err
	}
	// An ordered subscription may have been left mid-walk by the last
	// owner: each one of the partition looks where it stands.
	for _, e := range ps.index.all() {
		if bus.Partition(e.sub.ID) == p {
			pt.changed(e.sub)
		}
	}
	pt.wg.Go(pt.strays)
	ps.log.Debug("partition taken", "partition", p)
	return pt, nil
}

// strays moves the digest tasks of the partition's subscriptions that are
// no longer daily into it: one may have changed while no replica owned
// the partition, and so none moved them then.
func (pt *part) strays() {
	ctx, cancel := context.WithTimeout(pt.ctx, 30*time.Second)
	defer cancel()
	info, err := pt.ps.deliveries.Info(ctx, jetstream.WithSubjectFilter(bus.DigestSubject("*")))
	if err != nil {
		if pt.ctx.Err() == nil {
			pt.ps.log.Warn("digest tasks not counted", "partition", pt.n, "err", err)
		}
		return
	}
	for subject := range info.State.Subjects {
		id := bus.TaskSub(subject)
		if bus.Partition(id) != pt.n {
			continue
		}
		// One unknown here may be too new to be seen yet: its tasks stay.
		if e := pt.ps.index.get(id); e != nil && e.sub.Mode == subs.ModePayload && !e.sub.Daily() {
			if err := pt.ps.payloads.moveDigest(ctx, e.sub); err != nil && pt.ctx.Err() == nil {
				pt.ps.log.Warn("digest tasks of a subscription no longer daily not moved", "subscription", id, "err", err)
			}
		}
	}
}

// changed wakes the walk of a subscription that is, or was until lately,
// ordered: it may have events to deliver in order that no task will wake
// it for. Held tasks are looked at again under the new limits, which may
// let them go sooner.
func (pt *part) changed(sub subs.Subscription) {
	if sub.Mode == subs.ModePayload && sub.Active && !sub.Daily() && (sub.Ordered || sub.OrderedUntil > sub.OrderedFrom) {
		pt.ps.ordered.wake(pt.ctx, &pt.wg, sub, nil)
	}
	pt.mu.Lock()
	g := pt.gates[sub.ID]
	pt.mu.Unlock()
	if g != nil {
		// Not in the watch's goroutine: starting a task may wait for a
		// request slot.
		go pt.woken(sub.ID, g)
	}
}

// changed tells the owner of a changed subscription's partition.
func (ps *partitions) changed(id string) {
	e := ps.index.get(id)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if e == nil {
		ps.limits.forget(id)
		if pt := ps.owned[bus.Partition(id)]; pt != nil {
			pt.purge(id)
		}
		return
	}
	if pt := ps.owned[bus.Partition(id)]; pt != nil {
		pt.changed(e.sub)
		if e.sub.Mode == subs.ModePayload && !e.sub.Daily() {
			pt.undigest(e.sub)
		}
	}
}

// purge removes a deleted subscription's tasks, as admin does on
// deleting it: a failed attempt in flight then stores its retry after.
// ps.mu must be held.
func (pt *part) purge(id string) {
	pt.wg.Go(func() {
		ctx, cancel := context.WithTimeout(pt.ctx, 30*time.Second)
		defer cancel()
		if err := bus.PurgeTasks(ctx, pt.ps.deliveries, id); err != nil && pt.ctx.Err() == nil {
			pt.ps.log.Warn("tasks of a deleted subscription not removed", "subscription", id, "err", err)
		}
	})
}

// undigest moves what a subscription that may have been daily gathered
// for its digest into the partition, now and once more when every
// replica has seen it change. ps.mu must be held, so that the partition
// is not being handed over.
func (pt *part) undigest(sub subs.Subscription) {
	pt.wg.Go(func() {
		for i := range 2 {
			if i > 0 {
				select {
				case <-pt.ctx.Done():
					return
				case <-time.After(undigestAfter):
				}
			}
			ctx, cancel := context.WithTimeout(pt.ctx, 30*time.Second)
			err := pt.ps.payloads.undigest(ctx, sub)
			cancel()
			if err != nil && pt.ctx.Err() == nil {
				pt.ps.log.Warn("digest tasks of a subscription no longer daily not moved", "subscription", sub.ID, "err", err)
			}
		}
	})
}

// closingWait is how soon a task that reaches a partition being handed
// over comes again, to its next owner once the pin has moved.
const closingWait = 250 * time.Millisecond

// close hands the partition back: the held tasks back to the stream, the
// requests in flight finished, then no more reading and the consumer
// unpinned so that the next owner gets its tasks at once. It reads on
// until its requests are over, giving back whatever comes: a replica
// that stopped pulling would lose the pin after pinTTL, and the next
// owner would start a subscription's tasks beside its requests still in
// flight, past their in-flight limit.
func (pt *part) close() {
	pt.mu.Lock()
	pt.closing = true
	var held []heldTask
	for _, g := range pt.gates {
		held = append(held, g.held...)
		g.held = nil
		if g.wake != nil {
			g.wake.Stop()
		}
	}
	pt.mu.Unlock()
	for _, h := range held {
		settle(pt.ps.log, h.m, again(0, nil))
	}
	pt.cancel()
	pt.wg.Wait()
	pt.stopC()
	if !pt.got.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := pt.ps.deliveries.UnpinConsumer(ctx, bus.PartitionConsumer(pt.n), bus.PartitionGroup); err != nil && !errors.Is(err, context.Canceled) {
		pt.ps.log.Debug("partition not unpinned; the server does once its pin expires", "partition", pt.n, "err", err)
	}
	pt.ps.log.Debug("partition handed over", "partition", pt.n)
}

// take is the partition consumer's callback: deliver now, hold back within
// the subscription's limit, or hand an ordered subscription's task to its
// walk.
func (pt *part) take(m jetstream.Msg) {
	pt.got.Store(true)
	// Counted in pt.wg before close waits for it, so that whatever this
	// task starts is waited for too.
	pt.mu.Lock()
	if pt.closing {
		pt.mu.Unlock()
		settle(pt.ps.log, m, again(closingWait, nil))
		return
	}
	pt.wg.Add(1)
	pt.mu.Unlock()
	defer pt.wg.Done()
	id := bus.TaskSub(m.Subject())
	e := pt.ps.index.get(id)
	if e == nil || e.sub.Mode != subs.ModePayload || !e.sub.Active || e.sub.Daily() {
		pt.start(id, m, false) // not delivered here: no slot of its own
		return
	}
	if seq, _ := origin(m); inOrder(e.sub, seq) && m.Headers().Get(bus.HeaderRedelivery) == "" {
		// In order means in EVENTS' order: the task only wakes the walk,
		// which reads the events themselves, and is settled by it.
		pt.ps.ordered.wake(pt.ctx, &pt.wg, e.sub, m)
		return
	}
	lim := pt.ps.limits.of(e.sub)
	pt.mu.Lock()
	if pt.closing {
		pt.mu.Unlock()
		settle(pt.ps.log, m, again(closingWait, nil))
		return
	}
	g := pt.gates[id]
	if g == nil {
		g = &gate{latency: time.Second}
		pt.gates[id] = g
	}
	now := time.Now()
	g.held = append(g.held, heldTask{m: m, since: now, touched: now})
	pt.fill(id, g, limitOf(e.sub), lim)
}

// limitOf is how many of a subscription's tasks may be out at once.
func limitOf(sub subs.Subscription) int { return max(sub.MaxInFlight, 1) }

// limitsOf answers a subscription's in-flight limit and rate as this
// replica knows them.
func (pt *part) limitsOf(id string) (int, *rate.Limiter) {
	e := pt.ps.index.get(id)
	if e == nil {
		return 1, nil
	}
	return limitOf(e.sub), pt.ps.limits.of(e.sub)
}

// fill starts held tasks while the subscription is under its limit and
// its rate lets them go; when the rate holds them back, the gate's timer
// starts them later. pt.mu must be held; fill unlocks it.
func (pt *part) fill(id string, g *gate, limit int, lim *rate.Limiter) {
	var next []jetstream.Msg
	for !pt.closing && len(g.held) > 0 && g.inflight < limit {
		if wait := admit(lim, time.Now()); wait > 0 {
			if g.wake == nil {
				g.wake = time.AfterFunc(wait, func() { pt.woken(id, g) })
			}
			break
		}
		next = append(next, g.held[0].m)
		g.held = g.held[1:]
		g.inflight++
	}
	if g.inflight == 0 && len(g.held) == 0 {
		delete(pt.gates, id)
	}
	if len(next) == 0 {
		pt.mu.Unlock()
		return
	}
	// Counted while pt.mu is held and the partition is not closing, so
	// before close may wait: a wake-up or a change of limits is not inside
	// a task's count, and what it starts must be waited for before the
	// partition is handed over.
	pt.wg.Add(1)
	pt.mu.Unlock()
	defer pt.wg.Done()
	for _, m := range next {
		pt.start(id, m, true)
	}
}

// start delivers a task (gated: it has its slot in its subscription's
// gate) and, in the same goroutine, the subscription's held tasks that
// follow it, as long as there are any: a busy subscription keeps its
// requests going without a hand-over between goroutines.
func (pt *part) start(id string, m jetstream.Msg, gated bool) {
	ps := pt.ps
	ps.slots <- struct{}{}
	pt.wg.Go(func() {
		defer func() { <-ps.slots }()
		for m != nil {
			began := time.Now()
			pt.attempt(id, m)
			if !gated {
				return
			}
			m = pt.done(id, time.Since(began))
		}
	})
}

func (pt *part) attempt(id string, m jetstream.Msg) {
	if e := pt.ps.index.get(id); e != nil && e.sub.Timeout > partitionAckWait/3 {
		defer keepAlive(m)()
	}
	run(pt.work, pt.ps.log, pt.ps.payloads, m)
}

// woken starts the held tasks of a subscription that its limits let go
// now: at its gate's timer, or when the subscription changed.
func (pt *part) woken(id string, g *gate) {
	limit, lim := pt.limitsOf(id)
	pt.mu.Lock()
	if pt.gates[id] != g {
		pt.mu.Unlock()
		return // gone meanwhile; a new gate has a timer of its own
	}
	if g.wake != nil {
		g.wake.Stop()
		g.wake = nil
	}
	pt.fill(id, g, limit, lim)
}

// done frees a subscription's slot and answers the held task to deliver
// next in it, if any; more slots, as after a raised limit, get
// goroutines of their own.
func (pt *part) done(id string, took time.Duration) jetstream.Msg {
	limit, lim := pt.limitsOf(id)
	pt.mu.Lock()
	g := pt.gates[id]
	g.latency = (4*g.latency + took) / 5
	var next jetstream.Msg
	if !pt.closing && len(g.held) > 0 && g.inflight <= limit && admit(lim, time.Now()) == 0 {
		next = g.held[0].m
		g.held = g.held[1:]
	} else {
		g.inflight--
	}
	pt.fill(id, g, limit, lim)
	return next
}

// sweep stores the tasks of subscriptions that cannot keep up again for
// later, all but as many as they may have in flight, and tells the server
// that the tasks still held are being worked on.
func (pt *part) sweep(ctx context.Context) {
	type move struct {
		sub   subs.Subscription
		tasks []heldTask
		wait  time.Duration
	}
	var moves []move
	now := time.Now()
	waiting := pt.waiting(ctx, now)
	pt.mu.Lock()
	for id, g := range pt.gates {
		e := pt.ps.index.get(id)
		if e == nil || len(g.held) == 0 {
			continue
		}
		limit := limitOf(e.sub)
		// A rate-limited subscription keeps what its rate lets go within
		// holdAge and stores the rest again at once: its rate, not a
		// slow receiver, is what holds it back, so there is no waiting to
		// see whether it catches up.
		keep, perSec, burst := limit, 0.0, 0
		if r, b := rateOf(e.sub); r != rate.Inf {
			perSec, burst = float64(r), b
			keep = max(limit, burst+int(perSec*holdAge.Seconds()))
		}
		if len(g.held) > keep && (perSec > 0 || now.Sub(g.held[0].since) >= holdAge) && waiting.others(id) {
			excess := g.held[keep:]
			g.held = slices.Clone(g.held[:keep])
			// When its requests will have worked through the excess, or
			// its rate let them go.
			wait := time.Duration(len(excess)) * g.latency / time.Duration(limit)
			if perSec > 0 {
				wait = max(wait, time.Duration(float64(len(excess))/perSec*float64(time.Second)))
			}
			moves = append(moves, move{e.sub, excess, min(max(wait, time.Second), 10*time.Minute)})
		}
		for i := range g.held {
			if now.Sub(g.held[i].touched) > partitionAckWait/3 {
				_ = g.held[i].m.InProgress()
				g.held[i].touched = now
			}
		}
	}
	pt.mu.Unlock()
	// Each subscription's tasks are stored with one wait: the partitions'
	// loop that sweeps also renews this replica's key, and thousands of
	// round trips would hold it up past the key's life.
	for _, mv := range moves {
		moved := make([]*nats.Msg, len(mv.tasks))
		for i, h := range mv.tasks {
			at := now.Add(time.Second + mv.wait*time.Duration(i+1)/time.Duration(len(mv.tasks)))
			deferred, _ := strconv.Atoi(h.m.Headers().Get(bus.HeaderDeferred))
			moved[i] = retryTask(mv.sub, msgOf(h.m), attemptsOf(h.m.Headers()), deferred+1, at)
		}
		err := pt.ps.payloads.store(ctx, moved...)
		for _, h := range mv.tasks {
			settle(pt.ps.log, h.m, err)
		}
	}
}

// behind counts the tasks of each subscription that wait in a partition
// beyond those its owner holds or has in flight: the ones a full window of
// held tasks keeps from it. Nil when unknown.
type behind map[string]int

// others tells whether tasks of subscriptions other than id wait; when
// that cannot be told, they may.
func (b behind) others(id string) bool {
	if b == nil {
		return true
	}
	for sub, n := range b {
		if sub != id && n > 0 {
			return true
		}
	}
	return false
}

// waiting answers what waits behind the partition's held tasks, asking
// the stream only when a sweep would store some again: storing a
// subscription's tasks for later frees the consumer's window for the
// others, and when no other has tasks waiting it only makes the
// subscription's tasks go round (a backlog of 150,000 for one subscription
// went at 3,500 deliveries/s instead of 13,000).
func (pt *part) waiting(ctx context.Context, now time.Time) behind {
	mine := map[string]int{}
	over := false
	pt.mu.Lock()
	for id, g := range pt.gates {
		mine[id] = len(g.held) + g.inflight
		over = over || len(g.held) > 0 && now.Sub(g.held[0].since) >= holdAge
		if e := pt.ps.index.get(id); e != nil {
			if r, _ := rateOf(e.sub); r != rate.Inf {
				over = true
			}
		}
	}
	pt.mu.Unlock()
	if !over {
		return behind{}
	}
	ctx, cancel := context.WithTimeout(ctx, beat)
	defer cancel()
	info, err := pt.ps.deliveries.Info(ctx, jetstream.WithSubjectFilter(bus.PartitionFilter(pt.n)))
	if err != nil {
		pt.ps.log.Warn("partition's waiting tasks not counted", "partition", pt.n, "err", err)
		return nil
	}
	b := behind{}
	for subject, n := range info.State.Subjects {
		id := bus.TaskSub(subject)
		b[id] = max(int(n)-mine[id], 0)
	}
	return b
}

// keepAlive tells the server, while a long attempt runs, that its task is
// being worked on, so that it is not redelivered; the answer stops it.
func keepAlive(m jetstream.Msg) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(partitionAckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	return func() { close(done) }
}
