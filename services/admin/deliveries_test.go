package admin_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/jet"
)

// logged answers the event id and outcome of each delivery, in order.
func logged(ds []*adminv1.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.GetEventId()+":"+d.GetOutcome())
	}
	return out
}

func logRecords(t *testing.T, conn *jet.Conn, recs ...dlog.Record) {
	t.Helper()
	for _, r := range recs {
		r.Time = time.Now().UTC()
		m, err := dlog.Message(r)
		if err == nil {
			_, err = conn.JS.PublishMsg(context.Background(), m)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestListDeliveriesFilters: outcome (a ping's counted from its answer),
// event id and the end of a time range narrow the log; a filtered page
// holds page_size matches and its token goes on after the last of them;
// a filter the API does not know is refused naming it.
func TestListDeliveriesFilters(t *testing.T) {
	ctx, api, conn := busAdmin(t)
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	created, err := api.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
		OrgId: "acme", System: "erp", EventTypes: []string{"invoice.changed"}, Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD,
		Url: "https://erp.example/hook"}})
	if err != nil {
		t.Fatal(err)
	}
	sub := created.GetSubscription().GetSubscriptionId()
	rec := func(evt, outcome string, status int) dlog.Record {
		return dlog.Record{Org: "acme", Subscription: sub, Mode: "payload", EventID: evt, Outcome: outcome, Status: status, Attempt: 1}
	}
	ping := dlog.Record{Org: "acme", Subscription: sub, Mode: "ping", Status: 200}
	failedPing := ping
	failedPing.Status, failedPing.Error = 0, "connection refused"
	logRecords(t, conn, rec("e1", "retry", 500), rec("e1", "delivered", 200), rec("e2", "dead", 500), ping, failedPing)
	tail, err := api.TailDeliveries(ctx, &adminv1.TailDeliveriesRequest{OrgId: "acme", Outcome: "delivered"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tail.Header(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the stream's clock moves on: until falls between the two batches
	until := time.Now()
	time.Sleep(20 * time.Millisecond)
	logRecords(t, conn, rec("e3", "retry", 503), rec("e3", "delivered", 200))

	list := func(req *adminv1.ListDeliveriesRequest) ([]string, string) {
		t.Helper()
		req.OrgId = "acme"
		resp, err := api.ListDeliveries(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return logged(resp.GetDeliveries()), resp.GetNextPageToken()
	}
	for _, c := range []struct {
		req  *adminv1.ListDeliveriesRequest
		want string
	}{
		{&adminv1.ListDeliveriesRequest{}, "[e1:retry e1:delivered e2:dead : : e3:retry e3:delivered]"},
		{&adminv1.ListDeliveriesRequest{Outcome: "delivered"}, "[e1:delivered : e3:delivered]"},
		{&adminv1.ListDeliveriesRequest{Outcome: "dropped"}, "[:]"},
		{&adminv1.ListDeliveriesRequest{EventId: "e3"}, "[e3:retry e3:delivered]"},
		{&adminv1.ListDeliveriesRequest{EventId: "e1", Outcome: "retry", SubscriptionId: sub}, "[e1:retry]"},
		{&adminv1.ListDeliveriesRequest{Until: timestamppb.New(until)}, "[e1:retry e1:delivered e2:dead : :]"},
		{&adminv1.ListDeliveriesRequest{Until: timestamppb.New(until), Outcome: "retry"}, "[e1:retry]"},
		{&adminv1.ListDeliveriesRequest{Since: timestamppb.New(until), Outcome: "retry"}, "[e3:retry]"},
		{&adminv1.ListDeliveriesRequest{EventId: "nope"}, "[]"},
	} {
		if got, next := list(c.req); fmt.Sprint(got) != c.want || next != "" {
			t.Errorf("%v: %v (next %q), want %s", c.req, got, next, c.want)
		}
	}

	// Pages of matches: each token starts the next page after the last
	// match, skipping what does not match.
	var pages []string
	token := ""
	for {
		got, next := list(&adminv1.ListDeliveriesRequest{Outcome: "retry", PageSize: 1, PageToken: token})
		pages = append(pages, got...)
		if next == "" {
			break
		}
		if len(pages) > 5 {
			t.Fatalf("paging does not end: %v", pages)
		}
		token = next
	}
	if fmt.Sprint(pages) != "[e1:retry e3:retry]" {
		t.Errorf("pages of retries: %v", pages)
	}

	// The tail sends only the matching attempts made after it began.
	logRecords(t, conn, rec("e4", "retry", 500), rec("e4", "delivered", 200))
	d, err := tail.Recv()
	if err != nil || d.GetEventId() != "e3" || d.GetOutcome() != "delivered" {
		t.Fatalf("tail: %v %v", d, err)
	}
	if d, err := tail.Recv(); err != nil || d.GetEventId() != "e4" || d.GetOutcome() != "delivered" {
		t.Fatalf("tail: %v %v", d, err)
	}

	_, err = api.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme", Outcome: "lost"})
	refused(t, err, "outcome")
	_, err = api.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme", Since: timestamppb.New(until), Until: timestamppb.New(until.Add(-time.Second))})
	refused(t, err, "until")
	bad, err := api.TailDeliveries(ctx, &adminv1.TailDeliveriesRequest{OrgId: "acme", Outcome: "lost"})
	if err == nil {
		_, err = bad.Recv()
	}
	if err == io.EOF {
		t.Fatal("tail with an unknown outcome ended without refusing")
	}
	refused(t, err, "outcome")
}
