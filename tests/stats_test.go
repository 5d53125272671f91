package tests

import (
	"context"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/tests/harness"
)

// TestStatsSurviveRestartAndAgree: the figures are kept in JetStream, not
// in a process: what a dispatcher counted is written when it stops (here
// only then, its interval being an hour), a restarted kurier answers it,
// and a second admin replica answers the same.
func TestStatsSurviveRestartAndAgree(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_STATS_INTERVAL=1h"}})
	adm, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST)
	rcv := newReceiver(t)
	rcv.script["/fails"] = []int{503, 503}
	once := []*durationpb.Duration{durationpb.New(time.Hour)} // no retry within the test
	ok := payloadSub(t, adm, &adminv1.Subscription{System: "ok", EventTypes: []string{"invoice.changed"}, Url: rcv.URL + "/ok", RetrySchedule: once})
	bad := payloadSub(t, adm, &adminv1.Subscription{System: "bad", EventTypes: []string{"quote.changed"}, Url: rcv.URL + "/fails", RetrySchedule: once})
	for _, typ := range []string{"invoice.changed", "quote.changed"} {
		change(t, k, secret, typ, "D-1", nil)
		change(t, k, secret, typ, "D-2", nil)
	}
	for range 4 {
		rcv.next(t, 10*time.Second)
	}
	ctx := context.Background()
	org := &adminv1.GetOrgStatsRequest{OrgId: "acme"}
	if st, err := adm.GetOrgStats(ctx, org); err != nil || st.GetAttempts() != 0 {
		t.Fatalf("before any flush: %v %v", st, err)
	}

	k.Stop(t, syscall.SIGTERM)
	k = k.Restart(t)
	type query struct {
		what string
		ask  func(adminv1.AdminServiceClient) (*adminv1.DeliveryStats, error)
	}
	var queries []query
	for _, w := range []adminv1.StatsWindow{adminv1.StatsWindow_STATS_WINDOW_HOUR, adminv1.StatsWindow_STATS_WINDOW_WEEK} {
		queries = append(queries, query{"org " + w.String(), func(a adminv1.AdminServiceClient) (*adminv1.DeliveryStats, error) {
			return a.GetOrgStats(ctx, &adminv1.GetOrgStatsRequest{OrgId: "acme", Window: w})
		}})
		for _, sub := range []*adminv1.CreateSubscriptionResponse{ok, bad} {
			id := sub.GetSubscription().GetSubscriptionId()
			queries = append(queries, query{id + " " + w.String(), func(a adminv1.AdminServiceClient) (*adminv1.DeliveryStats, error) {
				return a.GetSubscriptionStats(ctx, &adminv1.GetSubscriptionStatsRequest{SubscriptionId: id, Window: w})
			}})
		}
	}
	first := k.Admin(t)
	answers := make([]*adminv1.DeliveryStats, len(queries))
	for i, q := range queries {
		st, err := q.ask(first)
		if err != nil {
			t.Fatal(err)
		}
		attempts := uint64(2)
		if q.what[:3] == "org" {
			attempts = 4
			if st.GetSuccesses() != 2 || st.GetFailures_5Xx() != 2 || st.GetLastSuccess() == nil || st.GetLastFailure() == nil ||
				st.GetLatencyP50() == nil || len(st.GetSeries()) == 0 {
				t.Errorf("%s after a restart: %v", q.what, st)
			}
		}
		if st.GetAttempts() != attempts {
			t.Errorf("%s after a restart: %v", q.what, st)
		}
		answers[i] = st
	}

	second := harness.Start(t, harness.Options{Role: "admin", NATSURL: k.NATS}).Admin(t)
	for i, q := range queries {
		if got, err := q.ask(second); err != nil || !proto.Equal(got, answers[i]) {
			t.Errorf("%s from a second admin: %v %v, want %v", q.what, got, err, answers[i])
		}
	}
}
