package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/stats"
)

// TestStats: the admin sums the rollups in STATS over each window, the
// hourly ones for the hours before the current one and the minutes for
// it; an org's figures are its subscriptions' and no other org's; and
// kurierctl shows them as a table and as JSON.
func TestStats(t *testing.T) {
	addr, conn := startAdminBus(t)
	for _, org := range []string{"acme", "other"} {
		ctlAt(t, addr, "org", "create", org).ok(t)
	}
	newSub := func(org, typ string) string {
		r := ctlAt(t, addr, "sub", "create", "--mode", "ping", "--org", org, "--system", "shop", "--type", typ, "--url", "https://example.com/hook", "-o", "json").ok(t)
		return unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription().GetSubscriptionId()
	}
	a, b, foreign := newSub("acme", "5"), newSub("acme", "6"), newSub("other", "5")

	now := time.Now().UTC()
	minute, hour := now.Truncate(time.Minute), now.Truncate(time.Hour)
	at := func(start time.Time, adds ...func(*stats.Rollup)) *stats.Rollup {
		r := &stats.Rollup{Start: start}
		for _, add := range adds {
			add(r)
		}
		return r
	}
	n := func(k int, c stats.Class, took time.Duration, when time.Time) func(*stats.Rollup) {
		return func(r *stats.Rollup) {
			for range k {
				r.Add(c, when, took)
			}
		}
	}
	lastSuccess := minute.Add(time.Second)
	put(t, conn, "acme", a, bus.StatsMinute,
		at(minute, n(2, stats.Success, 10*time.Millisecond, lastSuccess)),
		at(minute, n(1, stats.Server, 2*time.Second, minute)))
	put(t, conn, "acme", a, bus.StatsHour,
		// As a replica writes at a stop: the minutes stand for it.
		at(hour, n(100, stats.Success, time.Millisecond, hour)),
		at(hour.Add(-time.Hour), n(1, stats.Connection, 0, hour.Add(-time.Hour)), n(1, stats.Timeout, 0, hour.Add(-time.Hour)),
			n(2, stats.Client, 5*time.Millisecond, hour.Add(-50*time.Minute))),
		at(hour.Add(-72*time.Hour), n(5, stats.Success, 10*time.Millisecond, hour.Add(-72*time.Hour))),
		// A week and an hour ago: outside every window.
		at(hour.Add(-168*time.Hour), n(7, stats.Success, 10*time.Millisecond, hour.Add(-168*time.Hour))))
	put(t, conn, "acme", b, bus.StatsHour, at(hour.Add(-2*time.Hour), n(1, stats.Success, time.Second, hour.Add(-2*time.Hour))))
	put(t, conn, "other", foreign, bus.StatsMinute, at(minute, n(1000, stats.Success, time.Millisecond, minute)))

	get := func(args ...string) *adminv1.DeliveryStats {
		return unmarshal[adminv1.DeliveryStats](t, ctlAt(t, addr, append(args, "-o", "json")...).ok(t).stdout)
	}
	for _, c := range []struct {
		args                        []string
		window                      adminv1.StatsWindow
		attempts, successes, series uint64
	}{
		{[]string{"sub", "stats", a}, adminv1.StatsWindow_STATS_WINDOW_HOUR, 3, 2, 1},
		{[]string{"sub", "stats", a, "--window", "day"}, adminv1.StatsWindow_STATS_WINDOW_DAY, 7, 2, 2},
		{[]string{"sub", "stats", a, "--window", "week"}, adminv1.StatsWindow_STATS_WINDOW_WEEK, 12, 7, 3},
		{[]string{"org", "stats", "acme", "--window", "week"}, adminv1.StatsWindow_STATS_WINDOW_WEEK, 13, 8, 4},
		{[]string{"org", "stats", "other"}, adminv1.StatsWindow_STATS_WINDOW_HOUR, 1000, 1000, 1},
	} {
		st := get(c.args...)
		if st.GetWindow() != c.window || st.GetAttempts() != c.attempts || st.GetSuccesses() != c.successes || uint64(len(st.GetSeries())) != c.series {
			t.Errorf("%v: %v", c.args, st)
		}
	}
	week := get("sub", "stats", a, "--window", "week")
	if week.GetFailuresConnection() != 1 || week.GetFailuresTimeout() != 1 || week.GetFailures_4Xx() != 2 || week.GetFailures_5Xx() != 1 ||
		!week.GetLastSuccess().AsTime().Equal(lastSuccess) || !week.GetLastFailure().AsTime().Equal(minute) {
		t.Errorf("week of %s: %v", a, week)
	}
	// Of ten answers, seven took 10 ms: the median is in their bucket, p99
	// in that of the one of 2 s.
	if p50, p99 := week.GetLatencyP50().AsDuration(), week.GetLatencyP99().AsDuration(); p50 < 10*time.Millisecond || p50 > 12*time.Millisecond ||
		p99 < 2*time.Second || p99 > 2400*time.Millisecond {
		t.Errorf("week of %s: p50 %v, p99 %v", a, p50, p99)
	}
	if s := week.GetSeries(); !s[0].GetStart().AsTime().Equal(hour.Add(-72*time.Hour)) || s[1].GetFailures() != 4 || s[1].GetLatencyP50() == nil ||
		s[2].GetAttempts() != 3 || !s[2].GetStart().AsTime().Equal(hour) {
		t.Errorf("week series of %s: %v", a, s)
	}

	r := ctlAt(t, addr, "sub", "stats", a).ok(t)
	matchLines(t, r.stdout,
		`WINDOW  ATTEMPTS  SUCCESSES  CONNECTION  TIMEOUT  4XX  5XX  P50     P99     LAST SUCCESS          LAST FAILURE`,
		`hour    3         2          0           0        0    1    11\.3ms  2\.048s  `+rfc3339UTC+`  `+rfc3339UTC,
		``,
		`FROM                  ATTEMPTS  SUCCESSES  FAILURES  P50     P99`,
		rfc3339UTC+`  3         2          1         11\.3ms  2\.048s`)
	// Nothing counted: zeros, no latencies, no series.
	r = ctlAt(t, addr, "sub", "stats", b).ok(t)
	matchLines(t, r.stdout,
		`WINDOW  ATTEMPTS  SUCCESSES  CONNECTION  TIMEOUT  4XX  5XX  P50  P99  LAST SUCCESS  LAST FAILURE`,
		`hour    0         0          0           0        0    0    -    -    -             -`)

	ctlAt(t, addr, "sub", "stats", "0123456789abcdef0123").fails(t, 1, "subscription not found")
	ctlAt(t, addr, "sub", "stats", "nope").fails(t, 1, "subscription_id")
	ctlAt(t, addr, "org", "stats", "nope").fails(t, 1, `org "nope" not found`)
	ctlAt(t, addr, "sub", "stats", a, "--window", "month").fails(t, 2, `unknown window "month"; allowed: hour, day, week`)

	cc, err := dial(globals{server: addr, token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = adminv1.NewAdminServiceClient(cc).GetOrgStats(context.Background(), &adminv1.GetOrgStatsRequest{OrgId: "acme", Window: 9})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "window") {
		t.Errorf("window 9: %v", err)
	}

	// A deleted org's figures go with it.
	ctlAt(t, addr, "org", "delete", "other").ok(t)
	ctlAt(t, addr, "org", "create", "other").ok(t)
	if st := get("org", "stats", "other"); st.GetAttempts() != 0 {
		t.Errorf("other after its deletion: %v", st)
	}
}

// put stores rollups as a dispatcher does.
func put(t *testing.T, conn *jet.Conn, org, sub, level string, rs ...*stats.Rollup) {
	t.Helper()
	for i, r := range rs {
		m, err := stats.Message(org, sub, level, r, fmt.Sprint(sub, ".", level, ".", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.JS.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}
