package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/catalog"
	"kurier.dev/services/internal/subs"
)

// Payload tasks reach their receivers in one of two ways.
//
// Shared: a task is published on its subscription's subject under
// kurier.deliver.>, and one consumer takes them all. A pinned priority
// group hands that consumer to one dispatcher replica at a time, which
// keeps every subscription within its in-flight limit in memory and holds
// back the tasks over it. Ten thousand subscriptions cost one consumer, not
// ten thousand.
//
// Lane: a subscription that cannot keep up on the shared way (a task
// waited 10 s for a free slot, or 500 of them wait) gets a queue of its own
// on kurier.lane.<id>, with a consumer whose MaxAckPending is its limit, so
// its backlog and its retries never stand in the shared consumer's way.
// Its tasks move there, and stay there while the subscription exists. Daily
// subscriptions gather on their lane for the digest; ordered ones read
// their events from EVENTS and take redeliveries from their lane; disabled
// ones keep what arrives on it until they are enabled again.

const (
	sharedConsumer = "deliveries"
	pinGroup       = "dispatch"
	// pinTTL is how long the shared consumer stays with a replica that has
	// stopped asking: the pause in shared deliveries after a replica dies.
	pinTTL = 10 * time.Second
	// sharedAckWait is renewed while an attempt runs (keepAlive), so it
	// bounds how long a dead replica's tasks wait, not how long a request
	// may take.
	sharedAckWait = 30 * time.Second
	// sharedPending bounds the tasks out on the shared consumer: in flight
	// and held back.
	sharedPending = 20000
	// reconcilers set lanes up at once: after a burst many may be needed.
	reconcilers = 16
)

// laned tells whether a subscription's tasks go to its lane.
func (s *Service) laned(sub subs.Subscription) bool {
	if sub.Ordered || sub.Daily() || !sub.Active {
		return true
	}
	st, _ := s.index.state(sub.ID)
	return st.Lane
}

// fanout runs the shared consumer and the lanes of this replica.
type fanout struct {
	s       *Service
	mu      sync.Mutex // guards everything below
	gates   map[string]*gate
	running map[string]*running    // subscription id -> its lane's consumers
	locks   map[string]*sync.Mutex // one reconcile at a time per subscription
	closing bool
	// holdMax and holdAge are when a subscription's held-back tasks move
	// to its lane.
	holdMax int
	holdAge time.Duration
	changed chan string
	slots   chan struct{} // deliveries at once in this replica
}

// gate keeps a subscription within its in-flight limit in this replica,
// for the shared way and its lane alike.
type gate struct {
	inflight int
	held     []heldTask
	waiters  int
	free     *sync.Cond // a lane delivery waits on it for a slot
}

type heldTask struct {
	m  jetstream.Msg
	at time.Time // held back since
	// A failed attempt moves its task with the count so far and the time
	// of the next.
	attempts  int
	notBefore time.Time
}

type running struct {
	key  string // the settings the consumers were made with
	stop func()
}

func newFanout(s *Service) *fanout {
	return &fanout{s: s, gates: map[string]*gate{}, running: map[string]*running{}, locks: map[string]*sync.Mutex{},
		holdMax: 500, holdAge: 10 * time.Second, changed: make(chan string, 1024), slots: make(chan struct{}, 1024)}
}

// limitOf is how many of a subscription's tasks may be out at once: its
// in-flight limit, or a whole digest.
func limitOf(sub subs.Subscription) int {
	switch {
	case sub.Daily():
		return digestMax
	case sub.Ordered:
		return 1
	}
	return max(sub.MaxInFlight, 1)
}

// notice queues a subscription for reconciling; it never blocks the watch.
func (d *fanout) notice(id string) {
	select {
	case d.changed <- id:
	default:
		go func() { d.changed <- id }()
	}
}

// run consumes until the returned stop, which stops every consumer and
// hands back what was held; deliveries in flight finish on work, counted
// in wg.
func (d *fanout) run(ctx, work context.Context, wg *sync.WaitGroup) (func(), error) {
	js := d.s.conn.JS
	// Consumers of an earlier layout, one per subscription on
	// kurier.deliver.<id>, would overlap the shared one.
	deliveries, err := bus.Stream(ctx, js, bus.StreamDeliveries)
	if err != nil {
		return nil, err
	}
	names := deliveries.ConsumerNames(ctx)
	for name := range names.Name() {
		if strings.HasPrefix(name, "deliver-") {
			_ = js.DeleteConsumer(ctx, bus.StreamDeliveries, name)
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("delivery consumers: %w", err)
	}
	shared, err := js.CreateOrUpdateConsumer(ctx, bus.StreamDeliveries, jetstream.ConsumerConfig{
		Durable:        sharedConsumer,
		Description:    "Payload deliveries of the subscriptions without a lane",
		FilterSubject:  bus.DeliverSubject("*"),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        sharedAckWait,
		MaxAckPending:  sharedPending,
		MaxDeliver:     -1,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{pinGroup},
		PinnedTTL:      pinTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", sharedConsumer, err)
	}
	cc, err := shared.Consume(func(m jetstream.Msg) { d.take(work, wg, m) },
		jetstream.PullPriorityGroup(pinGroup), jetstream.PullMaxMessages(1000),
		// Short requests: a replica waiting for the pin asks again soon.
		jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", sharedConsumer, err)
	}
	ctx, cancel := context.WithCancel(ctx)

	for _, e := range d.s.index.all() {
		d.notice(e.sub.ID)
	}
	var workers sync.WaitGroup
	for range reconcilers {
		workers.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case id := <-d.changed:
					d.reconcile(ctx, work, wg, id)
				}
			}
		})
	}
	workers.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				d.sweep(work)
			}
		}
	})
	return func() {
		cc.Drain()
		<-cc.Closed()
		cancel()
		workers.Wait()
		d.stop(work, deliveries)
	}, nil
}

// stop hands back what is held and stops the lanes.
func (d *fanout) stop(ctx context.Context, deliveries jetstream.Stream) {

	d.mu.Lock()
	d.closing = true
	for _, g := range d.gates {
		for _, h := range g.held {
			_ = h.m.Nak() // for the replica that takes over
		}
		g.held = nil
		g.free.Broadcast()
	}
	lanes := d.running
	d.running = map[string]*running{}
	d.mu.Unlock()
	for _, r := range lanes {
		r.stop()
	}
	// Let another replica have the shared consumer at once rather than
	// after pinTTL.
	_ = deliveries.UnpinConsumer(ctx, sharedConsumer, pinGroup)
}

// take is the shared consumer's handler: deliver now, hold back, or move
// to the lane.
func (d *fanout) take(work context.Context, wg *sync.WaitGroup, m jetstream.Msg) {
	id := strings.TrimPrefix(m.Subject(), bus.DeliverSubject(""))
	e := d.s.index.get(id)
	switch {
	case e == nil || e.sub.Mode != subs.ModePayload:
		_ = m.Term() // deleted, or no longer a payload subscription
		return
	case d.s.laned(e.sub):
		d.toLane(work, e.sub, []heldTask{{m: m}})
		return
	}
	d.mu.Lock()
	g := d.gate(id)
	if g.inflight < limitOf(e.sub) && len(g.held) == 0 {
		g.inflight++
		d.mu.Unlock()
		d.start(work, wg, id, m)
		return
	}
	if len(g.held) < d.holdMax && (len(g.held) == 0 || time.Since(g.held[0].at) < d.holdAge) {
		g.held = append(g.held, heldTask{m: m, at: time.Now()})
		d.mu.Unlock()
		return
	}
	moving := append(g.held, heldTask{m: m})
	g.held = nil
	d.mu.Unlock()
	d.toLane(work, e.sub, moving)
}

// sweep moves the held tasks of subscriptions that have waited too long
// to their lanes.
func (d *fanout) sweep(ctx context.Context) {
	type move struct {
		id    string
		tasks []heldTask
	}
	var moves []move
	d.mu.Lock()
	for id, g := range d.gates {
		if len(g.held) > 0 && time.Since(g.held[0].at) >= d.holdAge {
			moves = append(moves, move{id, g.held})
			g.held = nil
		}
	}
	d.mu.Unlock()
	for _, mv := range moves {
		if e := d.s.index.get(mv.id); e != nil {
			d.toLane(ctx, e.sub, mv.tasks)
			continue
		}
		for _, h := range mv.tasks {
			_ = h.m.Term()
		}
	}
}

// toLane gives a subscription its lane, if it has none, and moves tasks
// from the shared consumer onto it. A task that cannot be moved comes
// again.
func (d *fanout) toLane(ctx context.Context, sub subs.Subscription, tasks []heldTask) {
	nakAll := func(err error) {
		d.s.log.Warn("delivery tasks not moved to their lane, they come again", "subscription", sub.ID, "err", err)
		for _, h := range tasks {
			_ = h.m.NakWithDelay(time.Second)
		}
	}
	if st, _ := d.s.index.state(sub.ID); !st.Lane && !sub.Ordered && !sub.Daily() {
		if _, _, err := d.s.subs.UpdateState(ctx, sub.ID, func(st *subs.PingState) error {
			if st.Lane {
				return subs.ErrSkip
			}
			st.Lane = true
			return nil
		}); err != nil && !errors.Is(err, subs.ErrSkip) {
			nakAll(err)
			return
		}
		d.s.log.Info("subscription has its own delivery lane now", "subscription", sub.ID)
	}
	for i, h := range tasks {
		t := bus.LaneTask(sub.ID, h.m, h.attempts, h.notBefore)
		if _, err := d.s.conn.JS.PublishMsg(ctx, t); err != nil && !bus.IsDuplicate(err) {
			tasks = tasks[i:]
			nakAll(err)
			return
		}
		_ = h.m.Ack()
	}
}

func (d *fanout) gate(id string) *gate {
	g := d.gates[id]
	if g == nil {
		g = &gate{free: sync.NewCond(&d.mu)}
		d.gates[id] = g
	}
	return g
}

// start delivers a task that has its slot in the subscription's gate.
func (d *fanout) start(work context.Context, wg *sync.WaitGroup, id string, m jetstream.Msg) {
	d.slots <- struct{}{}
	wg.Go(func() {
		defer d.release(work, wg, id)
		defer func() { <-d.slots }()
		// The subscription as it is now, not as it was when the task came.
		cur := d.s.index.get(id)
		if cur == nil || !cur.sub.Active {
			_ = m.NakWithDelay(time.Second)
			return
		}
		defer keepAlive(m)()
		d.s.deliver(work, cur.sub, m)
	})
}

// release frees a slot: for the oldest held task, or a waiting lane.
func (d *fanout) release(work context.Context, wg *sync.WaitGroup, id string) {
	d.mu.Lock()
	g := d.gates[id]
	g.inflight--
	if len(g.held) > 0 && !d.closing {
		next := g.held[0].m
		g.held = g.held[1:]
		g.inflight++
		d.mu.Unlock()
		d.start(work, wg, id, next)
		return
	}
	if g.waiters > 0 {
		g.free.Signal()
	} else if g.inflight == 0 && len(g.held) == 0 {
		delete(d.gates, id)
	}
	d.mu.Unlock()
}

// fromLane is a lane consumer's handler: it waits for a slot in the
// subscription's gate, which holds only that lane's consumer back.
func (d *fanout) fromLane(work context.Context, wg *sync.WaitGroup, id string, stopped *atomic.Bool, m jetstream.Msg) {
	d.mu.Lock()
	g := d.gate(id)
	for !d.closing && !stopped.Load() {
		e := d.s.index.get(id)
		if e == nil || g.inflight < limitOf(e.sub) {
			break
		}
		g.waiters++
		g.free.Wait()
		g.waiters--
	}
	if d.closing || stopped.Load() {
		d.mu.Unlock()
		_ = m.Nak()
		return
	}
	g.inflight++
	d.mu.Unlock()
	d.start(work, wg, id, m)
}

// keepAlive tells the server, while an attempt runs, that its task is
// being worked on, so no other replica takes it; the answer stops it.
func keepAlive(m jetstream.Msg) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(sharedAckWait / 3)
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

// lock takes a subscription's reconcile lock.
func (d *fanout) lock(id string) func() {
	d.mu.Lock()
	l := d.locks[id]
	if l == nil {
		l = &sync.Mutex{}
		d.locks[id] = l
	}
	d.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// swap replaces a subscription's running lane (nil: none), stopping the old.
func (d *fanout) swap(id string, r *running) *running {
	d.mu.Lock()
	old := d.running[id]
	if r == nil {
		delete(d.running, id)
	} else {
		d.running[id] = r
	}
	d.mu.Unlock()
	return old
}

func (d *fanout) current(id string) *running {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running[id]
}

func laneConsumer(id string) string    { return "lane-" + id }
func orderedConsumer(id string) string { return "deliver-" + id }

// reconcile brings a subscription's lane in line with its settings.
func (d *fanout) reconcile(ctx, work context.Context, wg *sync.WaitGroup, id string) {
	defer d.lock(id)()
	js := d.s.conn.JS
	stop := func() {
		if r := d.swap(id, nil); r != nil {
			r.stop()
		}
	}
	e := d.s.index.get(id)
	if e == nil {
		stop()
		// Deleted: its consumers and tasks go too. Every replica tries;
		// all but the first find nothing to do.
		_ = js.DeleteConsumer(ctx, bus.StreamDeliveries, laneConsumer(id))
		_ = js.DeleteConsumer(ctx, bus.StreamEvents, orderedConsumer(id))
		if st, err := js.Stream(ctx, bus.StreamDeliveries); err == nil {
			_ = st.Purge(ctx, jetstream.WithPurgeSubject(bus.LaneSubject(id)))
			_ = st.Purge(ctx, jetstream.WithPurgeSubject(bus.DeliverSubject(id)))
		}
		return
	}
	sub := e.sub
	st, _ := d.s.index.state(id)
	if sub.Mode != subs.ModePayload || !sub.Active || !(sub.Ordered || sub.Daily() || st.Lane) {
		stop()
		return
	}
	key := fmt.Sprint(sub.MaxInFlight, sub.Timeout, sub.Ordered, sub.Daily(), sub.EventTypes, st.Lane)
	if r := d.current(id); r != nil && r.key == key {
		return
	}
	stop()
	retry := func(err error) {
		d.s.log.Warn("delivery lane not started, trying again", "subscription", id, "err", err)
		time.AfterFunc(time.Second, func() { d.notice(id) })
	}
	lane, err := js.CreateOrUpdateConsumer(ctx, bus.StreamDeliveries, jetstream.ConsumerConfig{
		Durable:       laneConsumer(id),
		Description:   "Payload deliveries of subscription " + id,
		FilterSubject: bus.LaneSubject(id),
		AckPolicy:     jetstream.AckExplicitPolicy,
		// Longer than a request may take, so one in flight is not sent twice.
		AckWait:       sub.Timeout + 5*time.Second,
		MaxAckPending: limitOf(sub),
		MaxDeliver:    -1,
	})
	if err != nil {
		retry(err)
		return
	}
	if sub.Daily() {
		// Nothing takes a daily subscription's tasks but its digest.
		d.swap(id, &running{key: key, stop: func() {}})
		return
	}
	var stops []func()
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	if sub.Ordered {
		// In order means in EVENTS' order: an ordered subscription reads its
		// events straight from the stream, one at a time, so neither
		// concurrent dispatching nor retries can reorder them.
		var filters []string
		for _, t := range catalog.Expand(sub.EventTypes) {
			filters = append(filters, bus.EventsSubject(sub.Org, t))
		}
		from := sub.Created
		events, err := js.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
			Durable:        orderedConsumer(id),
			Description:    "Ordered payload deliveries of subscription " + id,
			FilterSubjects: filters,
			DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
			OptStartTime:   &from,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        sub.Timeout + 5*time.Second,
			MaxAckPending:  1,
			MaxDeliver:     -1,
		})
		if err != nil {
			retry(err)
			return
		}
		stop, err := d.consume(events, id, 1, work, wg)
		if err != nil {
			retry(err)
			return
		}
		stops = append(stops, stop)
	} else {
		// Switched from ordered: its events consumer has no more use.
		_ = js.DeleteConsumer(ctx, bus.StreamEvents, orderedConsumer(id))
	}
	stop2, err := d.consume(lane, id, limitOf(sub), work, wg)
	if err != nil {
		stopAll()
		retry(err)
		return
	}
	stops = append(stops, stop2)
	d.swap(id, &running{key: key, stop: stopAll})
}

// consume delivers what a lane's consumer hands out, n at a time.
func (d *fanout) consume(c jetstream.Consumer, id string, n int, work context.Context, wg *sync.WaitGroup) (func(), error) {
	var stopped atomic.Bool
	cc, err := c.Consume(func(m jetstream.Msg) { d.fromLane(work, wg, id, &stopped, m) },
		// A pull request that meets a full MaxAckPending can sit until it
		// expires; short requests bound that stall (measured: the tail of
		// bench deliver at 100 subscriptions fell from 31 s to 8 s).
		jetstream.PullMaxMessages(n), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return nil, err
	}
	return func() {
		cc.Drain()
		// A handler waiting for a slot would hold the drain up.
		stopped.Store(true)
		d.mu.Lock()
		if g := d.gates[id]; g != nil {
			g.free.Broadcast()
		}
		d.mu.Unlock()
		<-cc.Closed()
	}, nil
}
