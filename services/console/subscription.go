package console

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/durfmt"
)

// modes are the delivery modes by the names the forms and URLs use.
var modes = map[string]adminv1.DeliveryMode{
	"ping":    adminv1.DeliveryMode_DELIVERY_MODE_PING,
	"payload": adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD,
	"queue":   adminv1.DeliveryMode_DELIVERY_MODE_QUEUE,
}

func modeName(m adminv1.DeliveryMode) string {
	for name, v := range modes {
		if v == m {
			return name
		}
	}
	return ""
}

// masks are the fields the form of each mode carries, so an update sets
// those and no other.
var masks = map[string][]string{
	"ping": {"system", "name", "event_types", "url", "filter"},
	"payload": {"system", "name", "event_types", "url", "filter", "table", "fields", "conditions", "attributes",
		"headers", "timeout", "payload_format", "ordering", "max_in_flight", "retry_schedule", "schedule",
		"rate_limit_per_second", "rate_limit_burst"},
	"queue": {"system", "name", "event_types", "filter", "queue_id"},
}

// subForm is a subscription's settings as the form carries them: as text,
// so that a refused form comes back as it was typed.
type subForm struct {
	System, Name, EventTypes, URL, Filter                        string
	Table, Fields, Conditions, Attributes, Headers, Timeout      string
	PayloadFormat, Ordering, MaxInFlight, RetrySchedule          string
	DailyAt, TimeZone, RateLimitPerSecond, RateLimitBurst, Queue string
	Inactive                                                     bool
}

// secretMark marks a secret attribute's line, whose value the delivery
// log masks.
const secretMark = "(secret) "

func formOf(sub *adminv1.Subscription) subForm {
	f := subForm{
		System: sub.GetSystem(), Name: sub.GetName(), EventTypes: strings.Join(sub.GetEventTypes(), ", "),
		URL: sub.GetUrl(), Filter: sub.GetFilter(), Table: sub.GetTable(), Fields: strings.Join(sub.GetFields(), ", "),
		Conditions: sub.GetConditions(), PayloadFormat: "standard", Ordering: "concurrent",
		DailyAt: sub.GetSchedule().GetDailyAt(), TimeZone: sub.GetSchedule().GetTimeZone(), Queue: sub.GetQueueId(),
	}
	var lines []string
	for _, a := range sub.GetAttributes() {
		mark := ""
		if a.GetSecret() {
			mark = secretMark
		}
		lines = append(lines, mark+a.GetName()+"="+a.GetValue())
	}
	f.Attributes = strings.Join(lines, "\n")
	lines = nil
	for _, h := range sub.GetHeaders() {
		lines = append(lines, h.GetName()+"="+h.GetValue())
	}
	f.Headers = strings.Join(lines, "\n")
	if t := sub.GetTimeout(); t != nil {
		f.Timeout = durfmt.Short(t.AsDuration())
	}
	if sub.GetPayloadFormat() == adminv1.PayloadFormat_PAYLOAD_FORMAT_FLAT {
		f.PayloadFormat = "flat"
	}
	if sub.GetOrdering() == adminv1.Ordering_ORDERING_ORDERED {
		f.Ordering = "ordered"
	}
	if n := sub.GetMaxInFlight(); n != 0 {
		f.MaxInFlight = strconv.Itoa(int(n))
	}
	var delays []string
	for _, d := range sub.GetRetrySchedule() {
		delays = append(delays, durfmt.Short(d.AsDuration()))
	}
	f.RetrySchedule = strings.Join(delays, ", ")
	if n := sub.GetRateLimitPerSecond(); n != 0 {
		f.RateLimitPerSecond = strconv.Itoa(int(n))
	}
	if n := sub.GetRateLimitBurst(); n != 0 {
		f.RateLimitBurst = strconv.Itoa(int(n))
	}
	return f
}

func readForm(r *http.Request) subForm {
	v := func(name string) string { return strings.TrimSpace(r.PostFormValue(name)) }
	return subForm{
		System: v("system"), Name: v("name"), EventTypes: v("event_types"), URL: v("url"), Filter: v("filter"),
		Table: v("table"), Fields: v("fields"), Conditions: v("conditions"), Attributes: v("attributes"),
		Headers: v("headers"), Timeout: v("timeout"), PayloadFormat: v("payload_format"), Ordering: v("ordering"),
		MaxInFlight: v("max_in_flight"), RetrySchedule: v("retry_schedule"), DailyAt: v("schedule.daily_at"),
		TimeZone: v("schedule.time_zone"), RateLimitPerSecond: v("rate_limit_per_second"),
		RateLimitBurst: v("rate_limit_burst"), Queue: v("queue_id"), Inactive: r.PostFormValue("inactive") != "",
	}
}

// splitList splits a list typed with commas, spaces or line breaks.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// formPairs reads name=value lines, blank ones left out.
func formPairs(field, s string) ([][2]string, error) {
	var out [][2]string
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, &badField{field, "line " + strconv.Itoa(i+1) + " must be name=value"}
		}
		out = append(out, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
	}
	return out, nil
}

func formNumber(field, s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, &badField{field, "must be a whole number"}
	}
	return uint32(n), nil
}

func formDuration(field, s string) (*durationpb.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, &badField{field, "must be a duration such as 15s, 5m or 2h"}
	}
	return durationpb.New(d), nil
}

// subscription is the form as the API takes it, for the mode.
func (f subForm) subscription(mode string) (*adminv1.Subscription, error) {
	sub := &adminv1.Subscription{Mode: modes[mode], System: f.System, Name: f.Name, EventTypes: splitList(f.EventTypes),
		Filter: f.Filter}
	switch mode {
	case "queue":
		sub.QueueId = f.Queue
		return sub, nil
	case "ping":
		sub.Url = f.URL
		return sub, nil
	}
	sub.Url, sub.Table, sub.Fields, sub.Conditions = f.URL, f.Table, splitList(f.Fields), f.Conditions
	attrs, err := formPairs("attributes", f.Attributes)
	if err != nil {
		return nil, err
	}
	for _, a := range attrs {
		name, secret := strings.CutPrefix(a[0], strings.TrimSpace(secretMark))
		sub.Attributes = append(sub.Attributes, &adminv1.Attribute{Name: strings.TrimSpace(name), Value: a[1], Secret: secret})
	}
	headers, err := formPairs("headers", f.Headers)
	if err != nil {
		return nil, err
	}
	for _, h := range headers {
		sub.Headers = append(sub.Headers, &adminv1.Header{Name: h[0], Value: h[1]})
	}
	if f.Timeout != "" {
		if sub.Timeout, err = formDuration("timeout", f.Timeout); err != nil {
			return nil, err
		}
	}
	switch f.PayloadFormat {
	case "", "standard":
		sub.PayloadFormat = adminv1.PayloadFormat_PAYLOAD_FORMAT_STANDARD
	case "flat":
		sub.PayloadFormat = adminv1.PayloadFormat_PAYLOAD_FORMAT_FLAT
	default:
		return nil, &badField{"payload_format", "must be standard or flat"}
	}
	switch f.Ordering {
	case "", "concurrent":
		sub.Ordering = adminv1.Ordering_ORDERING_CONCURRENT
	case "ordered":
		sub.Ordering = adminv1.Ordering_ORDERING_ORDERED
	default:
		return nil, &badField{"ordering", "must be concurrent or ordered"}
	}
	for _, d := range splitList(f.RetrySchedule) {
		delay, err := formDuration("retry_schedule", d)
		if err != nil {
			return nil, err
		}
		sub.RetrySchedule = append(sub.RetrySchedule, delay)
	}
	if f.DailyAt != "" || f.TimeZone != "" {
		sub.Schedule = &adminv1.DeliverySchedule{DailyAt: f.DailyAt, TimeZone: f.TimeZone}
	}
	if sub.MaxInFlight, err = formNumber("max_in_flight", f.MaxInFlight); err != nil {
		return nil, err
	}
	if sub.RateLimitPerSecond, err = formNumber("rate_limit_per_second", f.RateLimitPerSecond); err != nil {
		return nil, err
	}
	if sub.RateLimitBurst, err = formNumber("rate_limit_burst", f.RateLimitBurst); err != nil {
		return nil, err
	}
	return sub, nil
}

// subPage is the page of a subscription, or of a new one (Sub nil).
type subPage struct {
	OrgID, Mode string
	Sub         *adminv1.Subscription
	Form        subForm
	// Queues are the org's, for a queue subscription to choose from.
	Queues []*adminv1.Queue
	// Error and Field say why the form or an action was refused.
	Error, Field string
	Last         *logRow
	Plots        []plotImage
	Sample       string
	Preview      *adminv1.PreviewSubscriptionResponse
	Test         *testResult
}

type testResult struct {
	Resp    *adminv1.SendTestEventResponse
	Latency string
}

// renderSub answers the page, with what every one shows filled in.
func (c *Console) renderSub(w http.ResponseWriter, r *http.Request, s session, code int, d subPage) {
	if d.Mode == "queue" {
		queues, err := c.api.ListQueues(call(r, s), &adminv1.ListQueuesRequest{OrgId: d.OrgID})
		if err != nil {
			c.apiFail(w, r, s, err)
			return
		}
		d.Queues = queues.GetQueues()
	}
	if d.Sub != nil {
		if last := d.Sub.GetLastDelivery(); last != nil {
			row := newLogRow(last)
			d.Last = &row
		}
		d.Plots = plotImages(d.OrgID, d.Sub.GetSubscriptionId())
	}
	c.render(w, r, code, "subscription", s, d)
}

// refused answers an API refusal of a form on the form's page, filled in
// as it was sent, naming the field; other errors as an error page.
func (c *Console) refused(w http.ResponseWriter, r *http.Request, s session, d subPage, err error) {
	if b, ok := err.(*badField); ok {
		d.Error, d.Field = b.message, b.field
		c.renderSub(w, r, s, http.StatusBadRequest, d)
		return
	}
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument && st.Code() != codes.AlreadyExists {
		c.apiFail(w, r, s, err)
		return
	}
	d.Error = st.Message()
	for _, det := range st.Details() {
		if br, ok := det.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			d.Field = br.GetFieldViolations()[0].GetField()
		}
	}
	code := http.StatusBadRequest
	if st.Code() == codes.AlreadyExists {
		code = http.StatusConflict
	}
	c.renderSub(w, r, s, code, d)
}

func (c *Console) newSub(w http.ResponseWriter, r *http.Request, s session) {
	org, mode := r.PathValue("org"), r.URL.Query().Get("mode")
	if mode == "" {
		mode = "payload"
	}
	if _, ok := modes[mode]; !ok {
		c.badInput(w, r, s, &badField{"mode", "must be payload, ping or queue"})
		return
	}
	if _, err := c.api.GetOrg(call(r, s), &adminv1.GetOrgRequest{OrgId: org}); err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	c.renderSub(w, r, s, http.StatusOK, subPage{OrgID: org, Mode: mode, Form: subForm{PayloadFormat: "standard", Ordering: "concurrent"}})
}

func (c *Console) createSub(w http.ResponseWriter, r *http.Request, s session) {
	org, mode := r.PathValue("org"), r.PostFormValue("mode")
	if _, ok := modes[mode]; !ok {
		c.badInput(w, r, s, &badField{"mode", "must be payload, ping or queue"})
		return
	}
	d := subPage{OrgID: org, Mode: mode, Form: readForm(r)}
	sub, err := d.Form.subscription(mode)
	if err != nil {
		c.refused(w, r, s, d, err)
		return
	}
	sub.OrgId = org
	resp, err := c.api.CreateSubscription(call(r, s), &adminv1.CreateSubscriptionRequest{Subscription: sub, Inactive: d.Form.Inactive})
	if err != nil {
		c.refused(w, r, s, d, err)
		return
	}
	id := resp.GetSubscription().GetSubscriptionId()
	if mode == "queue" {
		// Its events go into the queue unsigned: there is no secret to show.
		http.Redirect(w, r, path("subscriptions", id), http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "secret", s, secretData{
		Title: "Subscription made", About: "The signing secret of " + id + ", which its requests are signed with (Standard Webhooks):",
		Secret: resp.GetSigningSecret(), Note: "Copy it now: it is not shown again. Rotating it makes a new one.",
		Back: path("subscriptions", id), BackText: "On to the subscription",
	})
}

// subOfURL reads the subscription the URL names, answering an error page when
// it cannot.
func (c *Console) subOfURL(w http.ResponseWriter, r *http.Request, s session) (*adminv1.Subscription, bool) {
	sub, err := c.api.GetSubscription(call(r, s), &adminv1.GetSubscriptionRequest{SubscriptionId: r.PathValue("id")})
	if err != nil {
		c.apiFail(w, r, s, err)
		return nil, false
	}
	return sub, true
}

func pageOf(sub *adminv1.Subscription) subPage {
	return subPage{OrgID: sub.GetOrgId(), Mode: modeName(sub.GetMode()), Sub: sub, Form: formOf(sub)}
}

func (c *Console) showSub(w http.ResponseWriter, r *http.Request, s session) {
	if sub, ok := c.subOfURL(w, r, s); ok {
		c.renderSub(w, r, s, http.StatusOK, pageOf(sub))
	}
}

func (c *Console) updateSub(w http.ResponseWriter, r *http.Request, s session) {
	cur, ok := c.subOfURL(w, r, s)
	if !ok {
		return
	}
	d := pageOf(cur)
	d.Form = readForm(r)
	in, err := d.Form.subscription(d.Mode)
	if err != nil {
		c.refused(w, r, s, d, err)
		return
	}
	in.SubscriptionId = cur.GetSubscriptionId()
	if _, err := c.api.UpdateSubscription(call(r, s), &adminv1.UpdateSubscriptionRequest{Subscription: in,
		UpdateMask: &fieldmaskpb.FieldMask{Paths: masks[d.Mode]}}); err != nil {
		c.refused(w, r, s, d, err)
		return
	}
	http.Redirect(w, r, path("subscriptions", cur.GetSubscriptionId()), http.StatusSeeOther)
}

func (c *Console) setSubActive(w http.ResponseWriter, r *http.Request, s session) {
	active, err := strconv.ParseBool(r.PostFormValue("active"))
	if err != nil {
		c.badInput(w, r, s, &badField{"active", "must be true or false"})
		return
	}
	id := r.PathValue("id")
	if _, err := c.api.SetSubscriptionActive(call(r, s), &adminv1.SetSubscriptionActiveRequest{SubscriptionId: id, Active: active}); err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	http.Redirect(w, r, path("subscriptions", id), http.StatusSeeOther)
}

func (c *Console) rotateSecret(w http.ResponseWriter, r *http.Request, s session) {
	id := r.PathValue("id")
	resp, err := c.api.RotateSecret(call(r, s), &adminv1.RotateSecretRequest{SubscriptionId: id})
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "secret", s, secretData{
		Title: "Secret rotated", About: "The new signing secret of " + id + ":", Secret: resp.GetSigningSecret(),
		Note: "Copy it now: it is not shown again. Until " + when(resp.GetPreviousValidUntil()) +
			" requests carry a signature with the previous secret too, so the receiver can switch over.",
		Back: path("subscriptions", id), BackText: "Back to the subscription",
	})
}

func (c *Console) previewSub(w http.ResponseWriter, r *http.Request, s session) {
	sub, ok := c.subOfURL(w, r, s)
	if !ok {
		return
	}
	d := pageOf(sub)
	d.Sample = r.PostFormValue("sample_event")
	resp, err := c.api.PreviewSubscription(call(r, s), &adminv1.PreviewSubscriptionRequest{SubscriptionId: sub.GetSubscriptionId(), SampleEvent: d.Sample})
	if err != nil {
		c.refused(w, r, s, d, err)
		return
	}
	d.Preview = resp
	c.renderSub(w, r, s, http.StatusOK, d)
}

func (c *Console) testSub(w http.ResponseWriter, r *http.Request, s session) {
	sub, ok := c.subOfURL(w, r, s)
	if !ok {
		return
	}
	resp, err := c.api.SendTestEvent(call(r, s), &adminv1.SendTestEventRequest{SubscriptionId: sub.GetSubscriptionId()})
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	d := pageOf(sub)
	d.Test = &testResult{Resp: resp, Latency: resp.GetLatency().AsDuration().Round(time.Millisecond / 10).String()}
	c.renderSub(w, r, s, http.StatusOK, d)
}

func (c *Console) deleteSub(w http.ResponseWriter, r *http.Request, s session) {
	if r.PostFormValue("confirm") != "yes" {
		c.badInput(w, r, s, &badField{"confirm", "tick the box to confirm the deletion"})
		return
	}
	sub, ok := c.subOfURL(w, r, s)
	if !ok {
		return
	}
	if _, err := c.api.DeleteSubscription(call(r, s), &adminv1.DeleteSubscriptionRequest{SubscriptionId: sub.GetSubscriptionId()}); err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	http.Redirect(w, r, path("orgs", sub.GetOrgId())+"#subscriptions", http.StatusSeeOther)
}
