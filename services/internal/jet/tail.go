package jet

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TailEvery is how often a tail marker is written.
const TailEvery = 500 * time.Millisecond

// KeepTail writes an empty message on subject every TailEvery until ctx
// ends, each rolling up the one before, so the stream holds one marker
// however many replicas write them; the stream must allow roll-ups (one
// with message schedules does). It is for a work-queue stream that
// removes messages as fast as they come while older ones stay (retries
// waiting, digests gathering, a slow receiver's backlog). There,
// nats-server's file store starts a new block each time its last one
// empties, and an emptied block that remembers removals from the older
// ones stays, with its write buffer, until the buffer expires: at 5,000
// tasks/s that held 700 MB of the server's heap (BenchmarkTailKept). A
// marker in the last block keeps it from emptying. As markers replace
// each other, they never change the stream's size, which the dispatchers
// and a redelivery read to tell whether it is full. A marker is only
// written when may (nil: always) allows it, so that one never takes room
// the stream keeps for something else.
func KeepTail(ctx context.Context, js jetstream.JetStream, subject string, may func(context.Context, *nats.Msg) bool, log *slog.Logger) {
	t := time.NewTicker(TailEvery)
	defer t.Stop()
	for {
		m := nats.NewMsg(subject)
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		if may == nil || may(ctx, m) {
			wctx, cancel := context.WithTimeout(ctx, TailEvery)
			_, err := js.PublishMsg(wctx, m)
			cancel()
			if err != nil && ctx.Err() == nil {
				// Nothing depends on one marker; a cluster without a
				// leader just has none for a while.
				log.Debug("tail marker not written", "subject", subject, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
