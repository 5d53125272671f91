package main

import (
	"context"
	"flag"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

const statsAbout = "Counts the delivery attempts (pings, payload POSTs and digests; queue deliveries\n" +
	"make no request and are not counted) of the last hour, day or week: successes (2xx),\n" +
	"failures by class (no connection, timeout, 4xx, 5xx), the latency of the answered\n" +
	"ones (p50 and p99, each at most 19% above the true value), and the last success and\n" +
	"failure in the window; then the same per minute (hour) or per hour (day, week). The\n" +
	"figures are at most KURIER_STATS_INTERVAL (10s) behind."

var subStatsCommand = statsCommand("sub stats", "subscription-id", statsAbout,
	func(ctx context.Context, api adminv1.AdminServiceClient, id string, w adminv1.StatsWindow) (*adminv1.DeliveryStats, error) {
		return api.GetSubscriptionStats(ctx, &adminv1.GetSubscriptionStatsRequest{SubscriptionId: id, Window: w})
	})

var orgStatsCommand = statsCommand("org stats", "org-id",
	strings.Replace(statsAbout, "Counts the delivery attempts", "Counts the delivery attempts of all of an org's subscriptions", 1),
	func(ctx context.Context, api adminv1.AdminServiceClient, id string, w adminv1.StatsWindow) (*adminv1.DeliveryStats, error) {
		return api.GetOrgStats(ctx, &adminv1.GetOrgStatsRequest{OrgId: id, Window: w})
	})

// statsCommand is a command at path that shows the statistics get answers
// for its one argument, named arg, over the --window.
func statsCommand(path, arg, about string,
	get func(context.Context, adminv1.AdminServiceClient, string, adminv1.StatsWindow) (*adminv1.DeliveryStats, error)) *command {
	return &command{
		path:     path,
		args:     []string{arg},
		synopsis: path + " <" + arg + "> [--window hour|day|week]",
		about:    about,
		setup: func(fs *flag.FlagSet) runFunc {
			w := bindWindow(fs)
			return func(ctx context.Context, s *session, args []string) error {
				api, err := s.api()
				if err != nil {
					return err
				}
				st, err := get(ctx, api, args[0], adminv1.StatsWindow(*w))
				if err != nil {
					return err
				}
				return s.out.stats(st)
			}
		},
	}
}

// windowWords are the spans statistics cover.
var windowWords = enumWords{kind: "window", desc: adminv1.StatsWindow(0).Descriptor(), prefix: "STATS_WINDOW_"}

// windowFlag is the --window flag.
type windowFlag adminv1.StatsWindow

func bindWindow(fs *flag.FlagSet) *windowFlag {
	w := windowFlag(adminv1.StatsWindow_STATS_WINDOW_HOUR)
	fs.Var(&w, "window", "the `window`: "+strings.Join(windowWords.allowed(), ", ")+" (default hour)")
	return &w
}

func (w *windowFlag) String() string {
	if w == nil {
		return ""
	}
	return windowWords.word(adminv1.StatsWindow(*w).Number())
}

func (w *windowFlag) Set(v string) error {
	n, err := windowWords.parse(strings.TrimSpace(v))
	if err != nil {
		return err
	}
	*w = windowFlag(n)
	return nil
}

// stats prints delivery statistics as JSON, or as a row of totals and a
// table of the steps that had attempts.
func (p *printer) stats(st *adminv1.DeliveryStats) error {
	if p.format == "json" {
		return p.json(st)
	}
	n := func(v uint64) string { return strconv.FormatUint(v, 10) }
	tw := newTable(p.w, "WINDOW", "ATTEMPTS", "SUCCESSES", "CONNECTION", "TIMEOUT", "4XX", "5XX", "P50", "P99", "LAST SUCCESS", "LAST FAILURE")
	row(tw, windowWords.word(st.GetWindow().Number()), n(st.GetAttempts()), n(st.GetSuccesses()), n(st.GetFailuresConnection()),
		n(st.GetFailuresTimeout()), n(st.GetFailures_4Xx()), n(st.GetFailures_5Xx()), latencyCell(st.GetLatencyP50()), latencyCell(st.GetLatencyP99()),
		when(st.GetLastSuccess()), when(st.GetLastFailure()))
	if err := tw.Flush(); err != nil || len(st.GetSeries()) == 0 {
		return err
	}
	if _, err := p.w.Write([]byte("\n")); err != nil {
		return err
	}
	tw = newTable(p.w, "FROM", "ATTEMPTS", "SUCCESSES", "FAILURES", "P50", "P99")
	for _, b := range st.GetSeries() {
		row(tw, when(b.GetStart()), n(b.GetAttempts()), n(b.GetSuccesses()), n(b.GetFailures()), latencyCell(b.GetLatencyP50()), latencyCell(b.GetLatencyP99()))
	}
	return tw.Flush()
}

// latencyCell shows a latency to a tenth of a millisecond, finer than its
// bucket; none when nothing was answered.
func latencyCell(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	return d.AsDuration().Round(100 * time.Microsecond).String()
}
