package stats

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
)

// Message is the stream message that stores a rollup of a level
// (bus.StatsMinute or bus.StatsHour) under the message id id, which makes
// a flush sent again after a failure a duplicate.
func Message(org, sub, level string, r *Rollup, id string) (*nats.Msg, error) {
	b, err := r.Encode()
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(bus.StatsSubject(level, org, sub))
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, id)
	return m, nil
}

// Window is the last Steps steps of Step each, the current one included.
type Window struct {
	Step  time.Duration // time.Minute or time.Hour
	Steps int
}

var (
	LastHour = Window{Step: time.Minute, Steps: 60}
	LastDay  = Window{Step: time.Hour, Steps: 24}
	LastWeek = Window{Step: time.Hour, Steps: 7 * 24}
)

// Summary is the attempts of a window: all of them, and by step, oldest
// first, steps without attempts left out.
type Summary struct {
	Total  Rollup
	Series []Rollup
}

// skew is how much earlier than its rollup's start a reader looks for it:
// the stream stamps a message by the server's clock, the rollup is stamped
// by the dispatcher's.
const skew = 5 * time.Minute

// Read sums the rollups of a subscription, or of an org's subscriptions
// when sub is "", over the window ending now. An hourly window takes the
// hours before the current one from hourly rollups, which a dispatcher
// writes once the hour is over, and the current hour from minute ones.
func Read(ctx context.Context, js jetstream.JetStream, org, sub string, w Window, now time.Time) (Summary, error) {
	now = now.UTC()
	cur := now.Truncate(w.Step)
	from := cur.Add(-time.Duration(w.Steps-1) * w.Step)
	steps := map[time.Time]*Rollup{}
	add := func(r Rollup) {
		at := r.Start.Truncate(w.Step)
		s, ok := steps[at]
		if !ok {
			s = &Rollup{Start: at}
			steps[at] = s
		}
		s.Merge(&r)
	}
	if w.Step == time.Minute {
		if err := read(ctx, js, bus.StatsMinute, org, sub, from, func(r Rollup) bool { return !r.Start.Before(from) }, add); err != nil {
			return Summary{}, err
		}
	} else {
		if err := read(ctx, js, bus.StatsHour, org, sub, from, func(r Rollup) bool { return !r.Start.Before(from) && r.Start.Before(cur) }, add); err != nil {
			return Summary{}, err
		}
		if err := read(ctx, js, bus.StatsMinute, org, sub, cur, func(r Rollup) bool { return !r.Start.Before(cur) }, add); err != nil {
			return Summary{}, err
		}
	}
	var sum Summary
	for _, s := range steps {
		sum.Total.Merge(s)
		sum.Series = append(sum.Series, *s)
	}
	sum.Total.Start = from
	slices.SortFunc(sum.Series, func(a, b Rollup) int { return a.Start.Compare(b.Start) })
	return sum, nil
}

// read hands the rollups of a level stored since about from that keep
// accepts to add.
func read(ctx context.Context, js jetstream.JetStream, level, org, sub string, from time.Time, keep func(Rollup) bool, add func(Rollup)) error {
	since := from.Add(-skew)
	filter := bus.StatsFilter(level, org, sub)
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since}
	_, _, err := jet.Read(ctx, js, bus.StatsStream(level), cfg, math.MaxInt, func(m jetstream.Msg) (bool, error) {
		r, err := Decode(m.Data())
		if err != nil {
			return true, fmt.Errorf("%s: %w", m.Subject(), err)
		}
		if keep(r) {
			add(r)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", filter, err)
	}
	return nil
}
