package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/subs"
)

// queuer is queue mode (ComNorm): a matching event becomes a message in
// the queue a queue subscription names, written straight into QUEUES as
// the event is routed.
type queuer struct {
	store   *queues.Store
	send    *sender
	results *prometheus.CounterVec
}

func newQueuer(ctx context.Context, conn *jet.Conn, send *sender) (*queuer, error) {
	store, err := queues.Open(ctx, conn)
	if err != nil {
		return nil, err
	}
	return &queuer{store: store, send: send, results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kurier_queue_deliveries_total", Help: "Events put into queues, by result (queued, duplicate, full, gone).",
	}, []string{"result"})}, nil
}

// put puts an event into a queue subscription's queue. Its message id is
// the subscription's and the event's stream sequence, so an event routed
// again after a failure is a duplicate, not a second message.
//
// A queue that is full or gone cannot take the event now or later: waiting
// would hold up every other subscription's events, so it is dropped and
// the delivery log says so.
func (q *queuer) put(ctx context.Context, sub subs.Subscription, m jetstream.Msg, md *jetstream.MsgMetadata) error {
	var e event.Event
	if err := json.Unmarshal(m.Data(), &e); err != nil {
		q.send.log.Error("undecodable event, not queued", "subscription", sub.ID, "seq", md.Sequence.Stream, "err", err)
		return nil
	}
	content, err := queues.EventContent(e, md.Timestamp)
	if err != nil {
		return err
	}
	start := time.Now()
	_, err = q.store.Get(ctx, sub.QueueID)
	var seq uint64
	if err == nil {
		seq, err = q.store.Post(ctx, sub.QueueID, content, sub.ID+":"+strconv.FormatUint(md.Sequence.Stream, 10))
	}
	result := "queued"
	switch {
	case err == nil && seq == 0:
		result = "duplicate"
	case err == nil:
	case errors.Is(err, queues.ErrFull), errors.Is(err, queues.ErrStoreFull):
		result = "full"
	case errors.Is(err, queues.ErrNotFound):
		result = "gone"
	default:
		return err
	}
	q.results.WithLabelValues(result).Inc()
	took := time.Since(start)
	q.send.m.duration.WithLabelValues(string(subs.ModeQueue)).Observe(took.Seconds())
	// The log has one record per event, as for the other modes: a
	// duplicate was logged when it was first queued.
	rec := dlog.Record{Time: time.Now().UTC(), Org: sub.Org, Subscription: sub.ID, System: sub.System,
		EventTypes: []string{e.Type}, Mode: string(sub.Mode), EventID: e.ID,
		LatencyMS: float64(took.Microseconds()) / 1000, Attempt: 1}
	switch result {
	case "queued":
		q.send.m.lag.WithLabelValues(string(subs.ModeQueue)).Observe(time.Since(md.Timestamp).Seconds())
		rec.Outcome = "delivered"
		q.send.record(rec, outSuccess)
		return nil
	case "duplicate":
		return nil
	}
	q.send.log.Warn("event dropped", "subscription", sub.ID, "queue", sub.QueueID, "event", e.ID, "err", err)
	rec.Outcome, rec.Error = "dropped", err.Error()
	q.send.record(rec, outDropped)
	return nil
}
