package dispatcher

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/stats"
	"kurier.dev/services/internal/subs"
)

// maxUnsent bounds the rollups kept for sending again while STATS cannot
// be written: past it the oldest are dropped, since figures must not cost
// the deliveries memory.
const maxUnsent = 100000

// tally rolls this replica's attempts up in memory, per subscription and
// minute and per subscription and hour, and writes them to STATS: the
// minutes on every flush (what came since the last), an hour once it is
// over, and everything when the dispatcher stops. Replicas write their
// own rollups and readers sum them, so a subscription whose partition
// moved is counted right. An hour's rollup of a replica that dies without
// stopping is lost with it, while its minutes written until then stay.
type tally struct {
	js    jetstream.JetStream
	log   *slog.Logger
	every time.Duration
	id    string // names this process's rollups in their message ids

	mu      sync.Mutex
	minutes map[rollupKey]*stats.Rollup
	hours   map[rollupKey]*stats.Rollup

	// Only the flushing goroutine uses these.
	seq    uint64
	unsent []*nats.Msg // rollups no stream confirmed, sent again under the same ids

	stop, done chan struct{}
}

type rollupKey struct {
	org, sub string
	start    int64 // Unix seconds
}

func newTally(js jetstream.JetStream, log *slog.Logger, every time.Duration) *tally {
	return &tally{js: js, log: log, every: every, id: nuid.Next(),
		minutes: map[rollupKey]*stats.Rollup{}, hours: map[rollupKey]*stats.Rollup{},
		stop: make(chan struct{}), done: make(chan struct{})}
}

// add counts an attempt begun at at.
func (t *tally) add(sub subs.Subscription, at time.Time, took time.Duration, c stats.Class) {
	minute, hour := at.Truncate(time.Minute), at.Truncate(time.Hour)
	t.mu.Lock()
	defer t.mu.Unlock()
	rollup(t.minutes, rollupKey{sub.Org, sub.ID, minute.Unix()}, minute).Add(c, at, took)
	rollup(t.hours, rollupKey{sub.Org, sub.ID, hour.Unix()}, hour).Add(c, at, took)
}

func rollup(m map[rollupKey]*stats.Rollup, k rollupKey, start time.Time) *stats.Rollup {
	r, ok := m[k]
	if !ok {
		r = &stats.Rollup{Start: start}
		m[k] = r
	}
	return r
}

// run flushes every interval until close.
func (t *tally) run() {
	defer close(t.done)
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			t.flush(false)
		case <-t.stop:
			t.flush(true)
			return
		}
	}
}

// close writes everything counted and stops; nothing may be added after it.
func (t *tally) close() {
	close(t.stop)
	<-t.done
}

// flush writes the minutes counted since the last flush and the hours
// that are over, or with all every hour too.
func (t *tally) flush(all bool) {
	now := time.Now().Truncate(time.Hour).Unix()
	t.mu.Lock()
	minutes := t.minutes
	t.minutes = map[rollupKey]*stats.Rollup{}
	var hours map[rollupKey]*stats.Rollup
	if all {
		hours, t.hours = t.hours, map[rollupKey]*stats.Rollup{}
	} else {
		hours = map[rollupKey]*stats.Rollup{}
		for k, r := range t.hours {
			if k.start < now {
				hours[k] = r
				delete(t.hours, k)
			}
		}
	}
	t.mu.Unlock()

	msgs := t.unsent
	for level, rs := range map[string]map[rollupKey]*stats.Rollup{bus.StatsMinute: minutes, bus.StatsHour: hours} {
		for k, r := range rs {
			t.seq++
			m, err := stats.Message(k.org, k.sub, level, r, t.id+"."+strconv.FormatUint(t.seq, 10))
			if err != nil {
				t.log.Warn("statistics not kept", "subscription", k.sub, "err", err)
				continue
			}
			msgs = append(msgs, m)
		}
	}
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Only what was not stored is kept: a stored rollup sent again after
	// its stream's dedupe window would be stored, and counted, twice.
	msgs, err := jet.PublishEach(ctx, t.js, msgs)
	if err == nil {
		t.unsent = nil
		return
	}
	if drop := len(msgs) - maxUnsent; drop > 0 {
		t.log.Warn("statistics dropped", "rollups", drop)
		msgs = msgs[drop:]
	}
	t.unsent = msgs
	if all {
		t.log.Warn("statistics not kept", "rollups", len(msgs), "err", err)
	} else {
		t.log.Warn("statistics not kept yet, sent again with the next flush", "rollups", len(msgs), "err", err)
	}
}
