package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/catalog"
	"kurier.dev/services/internal/filter"
	"kurier.dev/services/internal/subs"
)

// entry is one subscription as this replica knows it.
type entry struct {
	sub subs.Subscription
	// mu serialises scheduling for the subscription within this replica;
	// across replicas the stream's compare-and-set does.
	mu sync.Mutex
	// pendingUntil: a ping timer is known to run until then, so changes
	// before it are covered without asking the stream. Guarded by mu.
	pendingUntil time.Time
	// passed is when the newest change stored that this replica passed
	// over because the unacked count stood at its cap. Guarded by mu.
	passed time.Time
	// filter decides which events of its types the subscription gets,
	// compiled once per revision; filterErr, a stored filter that does
	// not compile here, lets none through, as a filter failing at run
	// time does. warned: a failure of this revision's filter was logged.
	filter    *filter.Program
	filterErr error
	warned    atomic.Bool
	// rev is the subscription's revision in its bucket.
	rev uint64
}

// index holds the active subscriptions by org and event type, and the
// unacked counts, kept current by watching their buckets.
type index struct {
	mu     sync.RWMutex
	byID   map[string]*entry
	byType map[string][]*entry   // "<org> <type>" -> active subscriptions
	states map[string]knownState // subscription id -> ping state as last seen
	// seen is the revision of the last subscription change applied.
	seen atomic.Uint64
}

// knownState is a ping state with its revision, a starting point for
// compare-and-set that is usually current.
type knownState struct {
	st  subs.PingState
	rev uint64
}

func newIndex() *index {
	return &index{byID: map[string]*entry{}, byType: map[string][]*entry{}, states: map[string]knownState{}}
}

func typeKey(org, typ string) string { return org + " " + typ }

// match answers the active subscriptions an event of org and type goes to.
func (x *index) match(org, typ string) []*entry {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byType[typeKey(org, typ)]
}

// all answers every subscription known.
func (x *index) all() []*entry {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]*entry, 0, len(x.byID))
	for _, e := range x.byID {
		out = append(out, e)
	}
	return out
}

// current answers the subscription a task or ping timer carrying h was
// made for, nil if it is deleted. ok is false while this replica has not
// yet seen it: made a moment ago, and seen first by the replica that made
// the task (h says which revision it saw), the index has some way to go.
func (x *index) current(id string, h nats.Header) (e *entry, ok bool) {
	if e = x.get(id); e == nil && x.seen.Load() < bus.SubRevision(h) {
		return nil, false
	}
	return e, true
}

// unseenWait is how soon a task or ping whose subscription this replica
// has not seen yet comes again.
const unseenWait = 100 * time.Millisecond

func (x *index) get(id string) *entry {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byID[id]
}

func (x *index) unackedOf(id string) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.states[id].st.Unacked
}

func (x *index) state(id string) (subs.PingState, uint64) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	k := x.states[id]
	return k.st, k.rev
}

// put replaces what the index knows of a subscription (nil: deleted). A
// changed subscription gets a fresh entry, so nothing known of its timer
// outlives a change such as switching it off and on.
func (x *index) put(id string, sub *subs.Subscription, rev uint64) {
	// Compiled before the lock: routing goes on meanwhile.
	var prg *filter.Program
	var perr error
	if sub != nil && sub.Filter != "" {
		prg, perr = filter.Compile(sub.Filter)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if old := x.byID[id]; old != nil {
		for _, t := range catalog.Expand(old.sub.EventTypes) {
			k := typeKey(old.sub.Org, t)
			list := x.byType[k]
			for i, e := range list {
				if e == old {
					list = append(list[:i:i], list[i+1:]...)
					break
				}
			}
			if len(list) == 0 {
				delete(x.byType, k)
			} else {
				x.byType[k] = list
			}
		}
		delete(x.byID, id)
	}
	if sub == nil {
		return
	}
	e := &entry{sub: *sub, filter: prg, filterErr: perr, rev: rev}
	x.byID[id] = e
	if !sub.Active {
		return
	}
	for _, t := range catalog.Expand(sub.EventTypes) {
		k := typeKey(sub.Org, t)
		x.byType[k] = append(x.byType[k], e)
	}
}

// setState records a state seen; an older revision than the one known
// (a watcher lagging behind this replica's own write) is ignored.
func (x *index) setState(id string, k knownState) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if k.rev == 0 {
		delete(x.states, id)
		return
	}
	if k.rev > x.states[id].rev {
		x.states[id] = k
	}
}

// watch loads both buckets and keeps following them until ctx ends,
// telling changed of every subscription that changes, routable of one
// that a change made take events it did not take before (its RoutedFrom
// moved), and stated of every state written, with when. It returns once the initial contents are in, so no event is
// matched against an empty index.
func (x *index) watch(ctx context.Context, store *subs.Store, log *slog.Logger, changed func(id string), routable func(*entry), stated func(id string, st subs.PingState, written time.Time)) error {
	sw, err := store.Bucket().Watch(ctx, bus.SubKeys)
	if err != nil {
		return fmt.Errorf("watch subscriptions: %w", err)
	}
	stw, err := store.StateBucket().WatchAll(ctx)
	if err != nil {
		sw.Stop()
		return fmt.Errorf("watch ping state: %w", err)
	}
	ready := make(chan struct{}, 2)
	// apply is told whether the initial contents are in: what they hold
	// was there before this replica matched any event.
	follow := func(w jetstream.KeyWatcher, apply func(e jetstream.KeyValueEntry, loaded bool)) {
		defer w.Stop()
		loaded := false
		for e := range w.Updates() {
			if e == nil {
				if !loaded {
					loaded = true
					ready <- struct{}{}
				}
				continue
			}
			apply(e, loaded)
		}
	}
	go follow(sw, func(e jetstream.KeyValueEntry, loaded bool) {
		id, _ := bus.SubOfKey(e.Key())
		defer changed(id)
		// After the change is in the index, which it then shows to whoever
		// finds seen this far.
		defer x.seen.Store(e.Revision())
		if e.Operation() != jetstream.KeyValuePut {
			x.put(id, nil, 0)
			return
		}
		var sub subs.Subscription
		if err := json.Unmarshal(e.Value(), &sub); err != nil {
			log.Error("undecodable subscription", "key", e.Key(), "err", err)
			return
		}
		old := x.get(id)
		x.put(id, &sub, e.Revision())
		if n := x.get(id); loaded && sub.Active && sub.RoutedFrom > 0 && (old == nil || old.sub.RoutedFrom != sub.RoutedFrom) {
			routable(n)
		}
	})
	go follow(stw, func(e jetstream.KeyValueEntry, _ bool) {
		k := knownState{}
		if e.Operation() == jetstream.KeyValuePut {
			st, err := subs.ParseState(e.Value())
			if err != nil {
				log.Error("undecodable ping state", "key", e.Key(), "err", err)
				return
			}
			k = knownState{st: st, rev: e.Revision()}
		}
		x.setState(e.Key(), k)
		if k.rev != 0 {
			stated(e.Key(), k.st, e.Created())
		}
	})
	for range 2 {
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
