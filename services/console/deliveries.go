package console

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/dlog"
)

// logPage is how many attempts the log shows at once.
const logPage = 100

// localTime is the form of an <input type="datetime-local">, read as UTC;
// browsers leave the seconds out unless the step asks for them.
var localTime = []string{"2006-01-02T15:04", "2006-01-02T15:04:05"}

// badField is input a page refuses, naming the field.
type badField struct{ field, message string }

func (e *badField) Error() string { return e.field + ": " + e.message }

// parseLocal reads a datetime-local field as UTC; "" is none.
func parseLocal(field, v string) (*timestamppb.Timestamp, error) {
	if v == "" {
		return nil, nil
	}
	for _, layout := range localTime {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return timestamppb.New(t), nil
		}
	}
	return nil, &badField{field, "must be a date and time, such as 2025-01-31T08:00 (UTC)"}
}

// timeRange reads the fields from and to: from must come before to.
func timeRange(from, to string) (since, until *timestamppb.Timestamp, err error) {
	if since, err = parseLocal("from", from); err != nil {
		return nil, nil, err
	}
	if until, err = parseLocal("to", to); err != nil {
		return nil, nil, err
	}
	if since != nil && until != nil && !until.AsTime().After(since.AsTime()) {
		return nil, nil, &badField{"to", "must be after from"}
	}
	return since, until, nil
}

// logQuery is the delivery log's filters, as the form gives them (to fill
// it in again) and as the API takes them.
type logQuery struct {
	Subscription, Outcome, From, To, Event, After string
	since, until                                  *timestamppb.Timestamp
}

func parseLogQuery(q url.Values) (logQuery, error) {
	l := logQuery{Subscription: q.Get("subscription"), Outcome: q.Get("outcome"), From: q.Get("from"),
		To: q.Get("to"), Event: q.Get("event"), After: q.Get("after")}
	var err error
	if l.since, l.until, err = timeRange(l.From, l.To); err != nil {
		return l, err
	}
	return l, checkAfter(l.After)
}

// checkAfter checks a page's position: the API's page token, a place in
// the stream it reads.
func checkAfter(after string) error {
	if n, err := strconv.ParseUint(after, 10, 64); after != "" && (err != nil || n == 0) {
		return &badField{"after", "must be a position from a page's link"}
	}
	return nil
}

// values are the filters as a query, without the position.
func (l logQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"subscription": l.Subscription, "outcome": l.Outcome, "from": l.From, "to": l.To, "event": l.Event} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// badInput answers a refused query or form: 400 naming the field.
func (c *Console) badInput(w http.ResponseWriter, r *http.Request, s session, err error) {
	d := failData{Status: http.StatusBadRequest, Message: err.Error()}
	if b, ok := err.(*badField); ok {
		d.Field = b.field
	}
	c.render(w, r, http.StatusBadRequest, "error", s, d)
}

// logRow is an attempt as the log and the tail show it.
type logRow struct {
	Time           string `json:"time"`
	Subscription   string `json:"subscription_id"`
	SubscriptionTo string `json:"subscription_url"`
	Event          string `json:"event_id"`
	Attempt        uint32 `json:"attempt,omitempty"`
	Status         int32  `json:"status,omitempty"`
	Outcome        string `json:"outcome"`
	Latency        string `json:"latency"`
	Error          string `json:"error,omitempty"`
	NextAttempt    string `json:"next_attempt,omitempty"`
}

func newLogRow(d *adminv1.Delivery) logRow {
	return logRow{
		Time: when(d.GetTime()), Subscription: d.GetSubscriptionId(), SubscriptionTo: path("subscriptions", d.GetSubscriptionId()),
		Event: d.GetEventId(), Attempt: d.GetAttempt(), Status: d.GetStatusCode(),
		Outcome: dlog.Ended(d.GetMode() == adminv1.DeliveryMode_DELIVERY_MODE_PING, d.GetOutcome(), int(d.GetStatusCode())),
		Latency: d.GetLatency().AsDuration().Round(time.Millisecond / 10).String(), Error: d.GetError(), NextAttempt: when(d.GetNextAttempt()),
	}
}

type deliveriesData struct {
	Org      *adminv1.Org
	Subs     []*adminv1.Subscription
	Outcomes []string
	Query    logQuery
	Rows     []logRow
	// Tail is the live tail's address, Next the next page's ("" for none).
	Tail, Next string
	Plots      []plotImage
}

func (c *Console) deliveries(w http.ResponseWriter, r *http.Request, s session) {
	q, err := parseLogQuery(r.URL.Query())
	if err != nil {
		c.badInput(w, r, s, err)
		return
	}
	org := r.PathValue("org")
	o, subs, err := c.orgAndSubs(r, s, org)
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	resp, err := c.api.ListDeliveries(call(r, s), &adminv1.ListDeliveriesRequest{OrgId: org, SubscriptionId: q.Subscription,
		Since: q.since, Until: q.until, Outcome: q.Outcome, EventId: q.Event, PageSize: logPage, PageToken: q.After})
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	d := deliveriesData{Org: o, Subs: subs, Outcomes: dlog.Outcomes, Query: q, Plots: plotImages(org, q.Subscription)}
	for _, del := range resp.GetDeliveries() {
		d.Rows = append(d.Rows, newLogRow(del))
	}
	base := path("orgs", org, "deliveries")
	// The tail shows what comes from now on: the time range is the log's.
	tail := q.values()
	tail.Del("from")
	tail.Del("to")
	d.Tail = base + "/tail?" + tail.Encode()
	v := q.values()
	if next := resp.GetNextPageToken(); next != "" {
		v.Set("after", next)
		d.Next = base + "?" + v.Encode()
	}
	c.render(w, r, http.StatusOK, "deliveries", s, d)
}

// orgAndSubs answers org and its subscriptions, for the pages that show
// the org's log with a choice of its subscriptions.
func (c *Console) orgAndSubs(r *http.Request, s session, org string) (*adminv1.Org, []*adminv1.Subscription, error) {
	ctx := call(r, s)
	o, err := c.api.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: org})
	if err != nil {
		return nil, nil, err
	}
	subs, err := c.api.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: org})
	if err != nil {
		return nil, nil, err
	}
	return o, subs.GetSubscriptions(), nil
}

// orgSub answers a subscription of org: one of another org is not found
// here, as if it did not exist.
func (c *Console) orgSub(r *http.Request, s session, org, id string) (*adminv1.Subscription, error) {
	sub, err := c.api.GetSubscription(call(r, s), &adminv1.GetSubscriptionRequest{SubscriptionId: id})
	if err != nil {
		return nil, err
	}
	if sub.GetOrgId() != org {
		return nil, status.Errorf(codes.NotFound, "subscription %q not found", id)
	}
	return sub, nil
}
