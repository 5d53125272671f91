package console

import (
	"net/http"
	"net/url"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

type deadLettersData struct {
	Org *adminv1.Org
	// Subs are the org's payload subscriptions, the ones that have dead
	// letters to redeliver.
	Subs         []*adminv1.Subscription
	Subscription string
	Dead         []*adminv1.DeadLetter
	Next         string
	// After a redelivery: how many it queued again.
	Redelivered bool
	Queued      uint32
}

func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request, s session) {
	q := r.URL.Query()
	if err := checkAfter(q.Get("after")); err != nil {
		c.badInput(w, r, s, err)
		return
	}
	c.deadLettersPage(w, r, s, q.Get("subscription"), q.Get("after"), deadLettersData{})
}

// deadLettersPage answers a page of the org's dead letters (of one
// subscription, when sub is set) from the position after on, with what d
// already says.
func (c *Console) deadLettersPage(w http.ResponseWriter, r *http.Request, s session, sub, after string, d deadLettersData) {
	org := r.PathValue("org")
	o, subs, err := c.orgAndSubs(r, s, org)
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	resp, err := c.api.ListDeadLetters(call(r, s), &adminv1.ListDeadLettersRequest{OrgId: org, SubscriptionId: sub, PageSize: logPage, PageToken: after})
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	d.Org, d.Subscription, d.Dead = o, sub, resp.GetDeadLetters()
	for _, sb := range subs {
		if sb.GetMode() == adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD {
			d.Subs = append(d.Subs, sb)
		}
	}
	if next := resp.GetNextPageToken(); next != "" {
		v := url.Values{"after": {next}}
		if sub != "" {
			v.Set("subscription", sub)
		}
		d.Next = path("orgs", org, "deadletters") + "?" + v.Encode()
	}
	c.render(w, r, http.StatusOK, "deadletters", s, d)
}

// redeliver queues deliveries of a subscription of the org again: the dead
// letter delivery_id, or the events stored from from to to when the form
// has the range's fields, or else all its dead letters.
func (c *Console) redeliver(w http.ResponseWriter, r *http.Request, s session) {
	org := r.PathValue("org")
	subID := r.PostFormValue("subscription_id")
	if subID == "" {
		c.badInput(w, r, s, &badField{"subscription_id", "is required"})
		return
	}
	req := &adminv1.RedeliverRequest{SubscriptionId: subID}
	// Either field makes it a range: a form that lost from must not
	// become the widest redelivery there is.
	_, hasFrom := r.PostForm["from"]
	_, hasTo := r.PostForm["to"]
	isRange := hasFrom || hasTo
	switch one := r.PostFormValue("delivery_id"); {
	case one != "":
		req.What = &adminv1.RedeliverRequest_DeliveryId{DeliveryId: one}
	case isRange:
		since, until, err := timeRange(r.PostFormValue("from"), r.PostFormValue("to"))
		if err == nil && since == nil {
			err = &badField{"from", "is required"}
		}
		if err != nil {
			c.badInput(w, r, s, err)
			return
		}
		req.What = &adminv1.RedeliverRequest_Events{Events: &adminv1.TimeRange{Since: since, Until: until}}
	default:
		req.What = &adminv1.RedeliverRequest_AllDeadLetters{AllDeadLetters: true}
	}
	// Redeliver takes no org: a subscription of another org is not found
	// under this one's address.
	if _, err := c.orgSub(r, s, org, subID); err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	resp, err := c.api.Redeliver(call(r, s), req)
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	c.deadLettersPage(w, r, s, "", "", deadLettersData{Redelivered: true, Queued: resp.GetQueued()})
}
