package dispatcher

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/stats"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// TestStatsByClass: attempts of every class, payload and ping, end up in
// the subscription's figures with the class the delivery log gives them,
// and the org's figures are their sum.
func TestStatsByClass(t *testing.T) {
	ctx := context.Background()
	conn, store := startStore(t, bus.DefaultLimits())
	// The path says how to answer: /200, /404, /503, /slow (past the
	// subscription's timeout).
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch what := strings.Split(r.URL.Path, "/")[1]; what {
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "200":
			time.Sleep(20 * time.Millisecond)
		default:
			var code int
			_, _ = fmt.Sscan(what, &code)
			w.WriteHeader(code)
		}
	}))
	t.Cleanup(srv.Close)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String()
	closed.Close()

	// One attempt per event: the first retry would come an hour later.
	once := func(s *subs.Subscription) {
		s.RetrySchedule, s.Timeout = []time.Duration{time.Hour}, 300*time.Millisecond
	}
	ids := map[string]string{}
	for _, what := range []string{"200", "404", "503", "slow", "refused"} {
		url := srv.URL + "/" + what
		if what == "refused" {
			url = refused
		}
		ids[what] = payloadSub(t, store, url, "doc."+what, 10, once, func(s *subs.Subscription) { s.URL = url })
	}
	ping := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "p", EventTypes: []string{"doc.ping"}, Mode: subs.ModePing,
		URL: srv.URL + "/200", Active: true, Secret: subs.NewSecret(), Created: time.Now()}
	if err := store.Create(ctx, ping); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.AllowPrivate, cfg.NotifyDelay, cfg.StatsInterval = true, 100*time.Millisecond, 100*time.Millisecond
	start(t, conn, cfg, prometheus.NewRegistry())
	time.Sleep(300 * time.Millisecond) // consumers in place before the first event
	began := time.Now()
	for what := range ids {
		publishEvents(t, conn, "doc."+what, 3)
	}
	publishEvents(t, conn, "doc.ping", 1)

	read := func(sub string) stats.Rollup {
		sum, err := stats.Read(ctx, conn.JS, "acme", sub, stats.LastHour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return sum.Total
	}
	want := map[string]stats.Rollup{
		"200":     {Attempts: 3, Successes: 3},
		"404":     {Attempts: 3, Client: 3},
		"503":     {Attempts: 3, Server: 3},
		"slow":    {Attempts: 3, Timeout: 3},
		"refused": {Attempts: 3, Connection: 3},
	}
	for what, w := range want {
		natstest.WaitForErr(t, 15*time.Second, "the figures of "+what, func() error {
			got := read(ids[what])
			if got.Attempts != w.Attempts || got.Successes != w.Successes || got.Client != w.Client || got.Server != w.Server ||
				got.Timeout != w.Timeout || got.Connection != w.Connection {
				return fmt.Errorf("%+v", got)
			}
			return nil
		})
		got := read(ids[what])
		if (w.Successes > 0) != !got.LastSuccess.IsZero() || (w.Successes == 0) != !got.LastFailure.IsZero() {
			t.Errorf("%s: last success %v, last failure %v", what, got.LastSuccess, got.LastFailure)
		}
		for _, last := range []time.Time{got.LastSuccess, got.LastFailure} {
			if !last.IsZero() && (last.Before(began.Add(-time.Second)) || last.After(time.Now())) {
				t.Errorf("%s: last attempt at %v, not within the test", what, last)
			}
		}
		// Only answers have a latency.
		answered := what == "200" || what == "404" || what == "503"
		if p50 := got.Quantile(0.5); answered != (p50 > 0) {
			t.Errorf("%s: p50 %v", what, p50)
		}
	}
	ok := read(ids["200"])
	if p50 := ok.Quantile(0.5); p50 < 20*time.Millisecond || p50 > 2*time.Second {
		t.Errorf("p50 of answers that took 20 ms: %v", p50)
	}
	natstest.WaitForErr(t, 15*time.Second, "the ping's figures", func() error {
		if got := read(ping.ID); got.Attempts != 1 || got.Successes != 1 {
			return fmt.Errorf("%+v", got)
		}
		return nil
	})
	org, err := stats.Read(ctx, conn.JS, "acme", "", stats.LastHour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if g := org.Total; g.Attempts != 16 || g.Successes != 4 || g.Client != 3 || g.Server != 3 || g.Timeout != 3 || g.Connection != 3 {
		t.Errorf("org: %+v", g)
	}
	if len(org.Series) == 0 || len(org.Series) > 2 {
		t.Errorf("org series of %d minutes, want the one or two the test ran in", len(org.Series))
	}
}

// TestStatsOfReplicasAddUp: two replicas counting the same subscription
// (a partition that moved) write their own rollups, and the reader sums
// them; an hour is written once it is over, and everything when a replica
// stops, so the day's figures take the last hour from hourly rollups and
// the current one from the minutes.
func TestStatsOfReplicasAddUp(t *testing.T) {
	ctx := context.Background()
	conn := natstest.Start(t, bus.DefaultLimits())
	sub := subs.Subscription{ID: subs.NewID(), Org: "acme"}
	a, b := newTally(conn.JS, natstest.Log, time.Hour), newTally(conn.JS, natstest.Log, time.Hour)
	now := time.Now()
	lastHour := now.Add(-time.Hour)
	a.add(sub, lastHour, 10*time.Millisecond, stats.Success)
	a.add(sub, now, 10*time.Millisecond, stats.Success)
	b.add(sub, now, 3*time.Second, stats.Server)
	b.add(sub, now, 0, stats.Timeout)
	b.add(subs.Subscription{ID: subs.NewID(), Org: "other"}, now, time.Millisecond, stats.Success)

	a.flush(false)
	b.flush(false)
	day := func() stats.Summary {
		sum, err := stats.Read(ctx, conn.JS, "acme", sub.ID, stats.LastDay, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	got := day()
	if got.Total.Attempts != 4 || got.Total.Successes != 2 || got.Total.Server != 1 || got.Total.Timeout != 1 {
		t.Fatalf("day: %+v", got.Total)
	}
	if len(got.Series) != 2 || !got.Series[0].Start.Equal(lastHour.Truncate(time.Hour)) || got.Series[0].Attempts != 1 || got.Series[1].Attempts != 3 {
		t.Errorf("day series: %+v", got.Series)
	}
	// p99 of two 10 ms answers and one of 3 s falls in the bucket of 3 s.
	if p99 := got.Total.Quantile(0.99); p99 < 3*time.Second || p99 > 3600*time.Millisecond {
		t.Errorf("p99 %v", p99)
	}
	hour, err := stats.Read(ctx, conn.JS, "acme", sub.ID, stats.LastHour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if hour.Total.Attempts != 3 {
		t.Errorf("hour: %+v", hour.Total)
	}

	// The current hour, written at a stop, is read from the minutes still:
	// not counted twice.
	go a.run()
	a.close()
	if got := day(); got.Total.Attempts != 4 {
		t.Errorf("day after a stop: %+v", got.Total)
	}
	other, err := stats.Read(ctx, conn.JS, "other", "", stats.LastWeek, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if other.Total.Attempts != 1 {
		t.Errorf("other org: %+v", other.Total)
	}
}

// BenchmarkTallyAdd is what counting costs an attempt, with attempts of
// 1,000 subscriptions from all cores at once.
func BenchmarkTallyAdd(b *testing.B) {
	t := newTally(nil, natstest.Log, time.Hour)
	var subList []subs.Subscription
	for range 1000 {
		subList = append(subList, subs.Subscription{ID: subs.NewID(), Org: "acme"})
	}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			t.add(subList[i%len(subList)], now, time.Duration(i%500)*time.Millisecond, stats.Class(i%5))
		}
	})
}
