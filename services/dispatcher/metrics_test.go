package dispatcher

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// TestMetricsMove runs a flow through every mode and outcome, and checks
// that every metric the dispatcher registers has moved.
func TestMetricsMove(t *testing.T) {
	ctx := context.Background()
	conn, store := startStore(t, bus.DefaultLimits())
	qs, err := queues.Open(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	q := queues.Queue{ID: queues.NewID(), Org: "acme", Created: time.Now()}
	if err := qs.Create(ctx, q, 10); err != nil {
		t.Fatal(err)
	}
	// The path says how the receiver answers.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/fail"):
			w.WriteHeader(http.StatusInternalServerError)
		case strings.HasPrefix(r.URL.Path, "/gone"):
			w.WriteHeader(http.StatusGone)
		}
	}))
	t.Cleanup(srv.Close)
	create := func(mode subs.Mode, system, path string, adjust func(*subs.Subscription)) subs.Subscription {
		sub := subs.Subscription{ID: subs.NewID(), Org: "acme", System: system, EventTypes: []string{"doc.changed"}, Mode: mode,
			Active: true, Secret: subs.NewSecret(), Created: time.Now(), URL: srv.URL + path, Timeout: 5 * time.Second, MaxInFlight: 1}
		if adjust != nil {
			adjust(&sub)
		}
		if err := store.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
		return sub
	}
	create(subs.ModePing, "ping-ok", "/ok", nil)
	create(subs.ModePing, "ping-fail", "/fail", nil)
	switchedOff := create(subs.ModePing, "ping-off", "/ok", nil)
	// A filter that passes: kurier_filter_results_total.
	create(subs.ModePayload, "ok", "/ok", func(s *subs.Subscription) { s.Filter = `subject != ""` })
	create(subs.ModePayload, "dead", "/fail", func(s *subs.Subscription) { s.RetrySchedule = []time.Duration{100 * time.Millisecond} })
	create(subs.ModePayload, "waiting", "/fail", func(s *subs.Subscription) { s.RetrySchedule = []time.Duration{time.Hour} })
	create(subs.ModePayload, "gone", "/gone", nil)
	create(subs.ModeQueue, "queue-ok", "", func(s *subs.Subscription) { s.QueueID = q.ID })
	create(subs.ModeQueue, "queue-gone", "", func(s *subs.Subscription) { s.QueueID = queues.NewID() })

	cfg := DefaultConfig()
	cfg.NotifyDelay = 300 * time.Millisecond
	cfg.AllowPrivate = true
	reg := prometheus.NewRegistry()
	svc, _ := start(t, conn, cfg, reg)
	natstest.WaitFor(t, 10*time.Second, "every subscription known and partition taken", func() bool {
		return len(svc.index.all()) == 9 && owned(svc) == bus.Partitions
	})
	publishEvents(t, conn, "doc.changed", 1)
	// Off before its ping is due: the due ping is skipped.
	time.Sleep(50 * time.Millisecond)
	if _, err := store.Update(ctx, switchedOff.ID, func(s *subs.Subscription) error { s.Active = false; return nil }); err != nil {
		t.Fatal(err)
	}

	want := map[string]bool{}
	for _, mo := range []string{"ping success", "ping dropped", "payload success", "payload retry", "payload dead", "payload disabled",
		"queue success", "queue dropped"} {
		want[mo] = true
	}
	var missing []string
	natstest.WaitFor(t, 15*time.Second, "every metric moved", func() bool {
		missing = unmoved(t, reg, want)
		return len(missing) == 0
	})
	if len(missing) > 0 {
		t.Errorf("never moved: %v", missing)
	}
}

// unmoved lists the registered metrics (and the wanted mode and outcome
// pairs of kurier_deliveries_total) that are still at zero.
func unmoved(t *testing.T, reg *prometheus.Registry, want map[string]bool) []string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	seen := map[string]bool{}
	for _, f := range families {
		moved := false
		for _, m := range f.GetMetric() {
			if value(m) > 0 {
				moved = true
			}
			if f.GetName() == "kurier_deliveries_total" && value(m) > 0 {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				seen[labels["mode"]+" "+labels["outcome"]] = true
			}
		}
		if !moved {
			out = append(out, f.GetName())
		}
	}
	for _, name := range []string{"kurier_dispatch_events_total", "kurier_ping_scheduled_total", "kurier_pings_skipped_total",
		"kurier_deliveries_total", "kurier_delivery_duration_seconds", "kurier_delivery_lag_seconds", "kurier_retries_scheduled",
		"kurier_dispatcher_partitions", "kurier_dispatch_subscriptions", "kurier_queue_deliveries_total"} {
		found := false
		for _, f := range families {
			found = found || f.GetName() == name
		}
		if !found {
			out = append(out, name+" (not registered or never observed)")
		}
	}
	for mo := range want {
		if !seen[mo] {
			out = append(out, "kurier_deliveries_total "+mo)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// TestRetriesWaitingCounted: kurier_retries_scheduled is the number of
// retries waiting as scheduled messages (the pending count of a consumer
// that is never read), and it falls as they fire.
func TestRetriesWaitingCounted(t *testing.T) {
	conn, store := startStore(t, bus.DefaultLimits())
	rcv := newPosts()
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	cfg := DefaultConfig()
	cfg.AllowPrivate = true
	reg := prometheus.NewRegistry()
	svc, _ := start(t, conn, cfg, reg)
	const n = 3
	for i := range n {
		rcv.fail[fmt.Sprintf("doc.changed-%d", i)] = http.StatusInternalServerError
	}
	id := payloadSub(t, store, srv.URL, "doc.changed", 10, func(s *subs.Subscription) { s.RetrySchedule = []time.Duration{8 * time.Second} })
	knows(t, []*Service{svc}, id)
	publishEvents(t, conn, "doc.changed", n)
	waiting := func() float64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "kurier_retries_scheduled" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("kurier_retries_scheduled is not registered")
		return 0
	}
	// The gauge is up to 5 s old.
	natstest.WaitFor(t, 8*time.Second, "3 retries waiting", func() bool { return waiting() == n })
	natstest.WaitFor(t, 20*time.Second, "the retries delivered", func() bool { return len(rcv.ids(id)) == n })
	natstest.WaitFor(t, 8*time.Second, "no retry waiting", func() bool { return waiting() == 0 })
}
