package dispatcher

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/internal/filter"
)

// filters applies subscriptions' filters, and counts and logs what they
// decide. An event a filter cannot judge (a field its data lacks, the
// cost limit) is not delivered: a filter says what a system wants, and
// delivering what it might not want is the worse mistake. The first such
// failure of each revision of a subscription is logged, every one counted.
type filters struct {
	results *prometheus.CounterVec
	log     *slog.Logger
}

func newFilters(log *slog.Logger) *filters {
	return &filters{log: log, results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kurier_filter_results_total", Help: "Events judged by subscriptions' filters, by result (passed, filtered, error: not delivered).",
	}, []string{"result"})}
}

// pass tells whether the subscription gets the event. input reads the
// event once, for the first filter that needs it (eventInput).
func (f *filters) pass(e *entry, input func() (*filter.Input, error)) bool {
	if e.filter == nil && e.filterErr == nil {
		return true
	}
	ok, err := false, e.filterErr
	if err == nil {
		var in *filter.Input
		if in, err = input(); err == nil {
			ok, err = e.filter.Match(in)
		}
	}
	switch {
	case err != nil:
		f.results.WithLabelValues("error").Inc()
		if e.warned.CompareAndSwap(false, true) {
			f.log.Warn("filter failed: the events it cannot judge are not delivered", "subscription", e.sub.ID, "err", err)
		}
	case ok:
		f.results.WithLabelValues("passed").Inc()
	default:
		f.results.WithLabelValues("filtered").Inc()
	}
	return ok
}

// eventInput reads a stored event for filters when the first asks, and
// answers the same to the rest; like filter.Input, not for concurrent use.
func eventInput(stored []byte, at time.Time) func() (*filter.Input, error) {
	var in *filter.Input
	var err error
	read := false
	return func() (*filter.Input, error) {
		if !read {
			read = true
			in, err = filter.ParseInput(stored, at)
		}
		return in, err
	}
}
