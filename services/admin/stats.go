package admin

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/stats"
)

var windows = map[adminv1.StatsWindow]stats.Window{
	adminv1.StatsWindow_STATS_WINDOW_UNSPECIFIED: stats.LastHour,
	adminv1.StatsWindow_STATS_WINDOW_HOUR:        stats.LastHour,
	adminv1.StatsWindow_STATS_WINDOW_DAY:         stats.LastDay,
	adminv1.StatsWindow_STATS_WINDOW_WEEK:        stats.LastWeek,
}

func (s *Service) GetSubscriptionStats(ctx context.Context, req *adminv1.GetSubscriptionStatsRequest) (*adminv1.DeliveryStats, error) {
	w, err := window(req.GetWindow())
	if err != nil {
		return nil, err
	}
	sub, err := s.sub(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	return s.stats(ctx, sub.Org, sub.ID, req.GetWindow(), w)
}

func (s *Service) GetOrgStats(ctx context.Context, req *adminv1.GetOrgStatsRequest) (*adminv1.DeliveryStats, error) {
	w, err := window(req.GetWindow())
	if err != nil {
		return nil, err
	}
	if _, err := s.org(ctx, req.GetOrgId()); err != nil {
		return nil, err
	}
	return s.stats(ctx, req.GetOrgId(), "", req.GetWindow(), w)
}

func window(w adminv1.StatsWindow) (stats.Window, error) {
	got, ok := windows[w]
	if !ok {
		return got, invalid("window", "must be hour, day or week")
	}
	return got, nil
}

// stats sums the rollups of a subscription, or of an org's when sub is "".
func (s *Service) stats(ctx context.Context, org, sub string, name adminv1.StatsWindow, w stats.Window) (*adminv1.DeliveryStats, error) {
	sum, err := stats.Read(ctx, s.conn.JS, org, sub, w, s.now())
	if err != nil {
		return nil, err
	}
	if name == adminv1.StatsWindow_STATS_WINDOW_UNSPECIFIED {
		name = adminv1.StatsWindow_STATS_WINDOW_HOUR
	}
	t := &sum.Total
	resp := &adminv1.DeliveryStats{
		Window: name, Attempts: t.Attempts, Successes: t.Successes,
		FailuresConnection: t.Connection, FailuresTimeout: t.Timeout, Failures_4Xx: t.Client, Failures_5Xx: t.Server,
		LatencyP50: latency(t, 0.5), LatencyP99: latency(t, 0.99),
		LastSuccess: stamp(t.LastSuccess), LastFailure: stamp(t.LastFailure),
	}
	for _, b := range sum.Series {
		resp.Series = append(resp.Series, &adminv1.StatsBucket{
			Start: timestamppb.New(b.Start), Attempts: b.Attempts, Successes: b.Successes, Failures: b.Failures(),
			LatencyP50: latency(&b, 0.5), LatencyP99: latency(&b, 0.99),
		})
	}
	return resp, nil
}

// latency is a percentile of the answered attempts; none without any.
func latency(r *stats.Rollup, q float64) *durationpb.Duration {
	d := r.Quantile(q)
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func stamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
