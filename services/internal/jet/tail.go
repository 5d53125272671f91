package jet

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Tail markers: how often one is written, and how long each lives.
const (
	TailEvery = 500 * time.Millisecond
	TailTTL   = 5 * time.Second
)

// KeepTail writes an empty message on subject every TailEvery, each
// removed by the server TailTTL later, until ctx ends; the stream must
// allow per-message TTLs. It is for a work-queue stream that removes
// messages as fast as they come while older ones stay (retries waiting,
// digests gathering, a slow receiver's backlog). There, nats-server's file
// store starts a new block each time its last one empties, and an emptied
// block that remembers removals from the older ones stays, with its write
// buffer, until the buffer expires: at 5,000 tasks/s that held 700 MB of
// the server's heap (BenchmarkTailKept). A marker in the last block keeps
// it from emptying; a replica that dies leaves markers that expire. A
// marker is only written when may (nil: always) allows it, so that one
// never takes room the stream keeps for something else.
func KeepTail(ctx context.Context, js jetstream.JetStream, subject string, may func(context.Context, *nats.Msg) bool, log *slog.Logger) {
	t := time.NewTicker(TailEvery)
	defer t.Stop()
	for {
		m := nats.NewMsg(subject)
		m.Header.Set(jetstream.MsgTTLHeader, TailTTL.String())
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
