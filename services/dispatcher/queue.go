package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/subs"
)

// queueing is queue delivery: a matching event becomes a message in the
// queue a queue subscription names, written straight into QUEUES.
type queueing struct {
	store   *queues.Store
	results *prometheus.CounterVec
}

func newQueueing(ctx context.Context, conn *bus.Conn, reg prometheus.Registerer) (*queueing, error) {
	store, err := queues.Open(ctx, conn)
	if err != nil {
		return nil, err
	}
	q := &queueing{store: store, results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kurier_queue_deliveries_total", Help: "Events put into queues, by result (queued, duplicate, full, gone).",
	}, []string{"result"})}
	if err := reg.Register(q.results); err != nil {
		return nil, fmt.Errorf("dispatcher metrics: %w", err)
	}
	return q, nil
}

// enqueue puts an event into a queue subscription's queue. Its message id
// is the subscription's and the event's stream sequence, so an event
// handled again after a failure is a duplicate, not a second message.
//
// A queue that is full or gone cannot take the event now or later: waiting
// would hold up every other subscription's events, so it is dropped and
// the delivery log says so.
func (s *Service) enqueue(ctx context.Context, sub subs.Subscription, m jetstream.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return err
	}
	var e event.Event
	if err := json.Unmarshal(m.Data(), &e); err != nil {
		s.log.Error("undecodable event, not queued", "subscription", sub.ID, "seq", md.Sequence.Stream, "err", err)
		return nil
	}
	content, err := queues.EventContent(e, md.Timestamp)
	if err != nil {
		return err
	}
	start := time.Now()
	_, err = s.queueing.store.Get(ctx, sub.QueueID)
	var seq uint64
	if err == nil {
		seq, err = s.queueing.store.Post(ctx, sub.QueueID, content, sub.ID+":"+strconv.FormatUint(md.Sequence.Stream, 10))
	}
	result := "queued"
	switch {
	case err == nil && seq == 0:
		result = "duplicate"
	case err == nil:
	case errors.Is(err, queues.ErrFull):
		result = "full"
	case errors.Is(err, queues.ErrNotFound):
		result = "gone"
	default:
		return err
	}
	s.queueing.results.WithLabelValues(result).Inc()
	if err == nil {
		return nil
	}
	s.log.Warn("event dropped", "subscription", sub.ID, "queue", sub.QueueID, "event", e.ID, "err", err)
	rec := dlog.Record{Time: time.Now().UTC(), Org: sub.Org, Subscription: sub.ID, System: sub.System,
		EventTypes: []string{e.Type}, Mode: string(sub.Mode), EventID: e.ID, Error: err.Error(),
		LatencyMS: float64(time.Since(start).Microseconds()) / 1000, Attempt: 1, Outcome: "dropped"}
	s.logs.Go(func() {
		if err := dlog.Append(ctx, s.conn.JS, rec); err != nil {
			s.log.Warn("delivery not logged", "subscription", sub.ID, "err", err)
		}
	})
	return nil
}
