package dispatcher

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a delivery, as counted in kurier_deliveries_total.
const (
	outSuccess  = "success"
	outRetry    = "retry"
	outDead     = "dead"
	outDisabled = "disabled"
	outDropped  = "dropped"
)

// metrics are the dispatcher's figures. Every one moves in a flow that
// uses all three modes (TestMetricsMove).
type metrics struct {
	events     prometheus.Counter
	scheduled  prometheus.Counter
	skipped    *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	lag        *prometheus.HistogramVec
	partitions prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, extra ...prometheus.Collector) (metrics, error) {
	m := metrics{
		events:    prometheus.NewCounter(prometheus.CounterOpts{Name: "kurier_dispatch_events_total", Help: "Events the dispatcher has matched to subscriptions."}),
		scheduled: prometheus.NewCounter(prometheus.CounterOpts{Name: "kurier_ping_scheduled_total", Help: "Ping timers started."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kurier_pings_skipped_total", Help: "Due pings not made, by reason (capped, covered, inactive).",
		}, []string{"reason"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kurier_deliveries_total", Help: "Deliveries by mode (ping, payload, queue) and outcome (success, retry, dead, disabled, dropped).",
		}, []string{"mode", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kurier_delivery_duration_seconds", Help: "How long a delivery's request took, by mode.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"mode"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kurier_delivery_lag_seconds", Help: "From an event's storing to its receiver's answer, by mode (for pings: from the change that started the timer).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
		}, []string{"mode"}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kurier_dispatcher_partitions", Help: "Payload partitions this dispatcher replica owns.",
		}),
	}
	for _, c := range append([]prometheus.Collector{m.events, m.scheduled, m.skipped, m.deliveries, m.duration, m.lag, m.partitions}, extra...) {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("dispatcher metrics: %w", err)
		}
	}
	return m, nil
}
