package console

import (
	"net/http"
	"strings"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/durfmt"
)

// orgData is an organisation's overview.
type orgData struct {
	Org    *adminv1.Org
	Subs   []subRow
	Queues []queueRow
	Book   *adminv1.AddressBook
	Keys   []keyRow
	Scopes []string
	Plots  []plotImage
}

// subRow is a subscription as the overview lists it.
type subRow struct {
	Sub   *adminv1.Subscription
	Mode  string
	Types string
	Last  *logRow
}

func newSubRow(sub *adminv1.Subscription) subRow {
	row := subRow{Sub: sub, Mode: modeName(sub.GetMode()), Types: strings.Join(sub.GetEventTypes(), ", ")}
	if d := sub.GetLastDelivery(); d != nil {
		last := newLogRow(d)
		row.Last = &last
	}
	return row
}

type queueRow struct {
	Queue  *adminv1.Queue
	Oldest string
}

type keyRow struct {
	Key    *adminv1.Key
	Scopes string
}

// scopes are the key scopes by the names the forms use.
var scopes = []struct {
	name  string
	scope adminv1.KeyScope
}{
	{"ingest", adminv1.KeyScope_KEY_SCOPE_INGEST},
	{"changes", adminv1.KeyScope_KEY_SCOPE_CHANGES},
	{"partner", adminv1.KeyScope_KEY_SCOPE_PARTNER},
	{"addressbook", adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK},
}

func scopeNames() []string {
	out := make([]string, len(scopes))
	for i, s := range scopes {
		out[i] = s.name
	}
	return out
}

func (c *Console) org(w http.ResponseWriter, r *http.Request, s session) {
	id := r.PathValue("org")
	ctx := call(r, s)
	o, err := c.api.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: id})
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	d := orgData{Org: o, Scopes: scopeNames(), Plots: plotImages(id, "")}
	subs, err := c.api.ListSubscriptions(ctx, &adminv1.ListSubscriptionsRequest{OrgId: id})
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	for _, sub := range subs.GetSubscriptions() {
		d.Subs = append(d.Subs, newSubRow(sub))
	}
	queues, err := c.api.ListQueues(ctx, &adminv1.ListQueuesRequest{OrgId: id})
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	for _, q := range queues.GetQueues() {
		row := queueRow{Queue: q}
		if age := q.GetOldestMessageAge(); age != nil {
			row.Oldest = durfmt.Short(age.AsDuration().Round(time.Second))
		}
		d.Queues = append(d.Queues, row)
	}
	if d.Book, err = c.api.GetAddressBook(ctx, &adminv1.GetAddressBookRequest{OrgId: id}); err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	keys, err := c.api.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: id})
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	for _, k := range keys.GetKeys() {
		var names []string
		for _, sc := range k.GetScopes() {
			for _, known := range scopes {
				if known.scope == sc {
					names = append(names, known.name)
				}
			}
		}
		d.Keys = append(d.Keys, keyRow{Key: k, Scopes: strings.Join(names, ", ")})
	}
	c.render(w, r, http.StatusOK, "org", s, d)
}

// secretData is the page that shows a secret once: the API keeps only its
// hash (keys) or never answers it again (signing secrets).
type secretData struct {
	Title, About, Secret, Note string
	// Back is where to go on, with its link's text.
	Back, BackText string
}

func (c *Console) createKey(w http.ResponseWriter, r *http.Request, s session) {
	org := r.PathValue("org")
	req := &adminv1.CreateKeyRequest{OrgId: org, Description: strings.TrimSpace(r.PostFormValue("description"))}
	for _, v := range r.PostForm["scope"] {
		known := false
		for _, sc := range scopes {
			if sc.name == v {
				req.Scopes, known = append(req.Scopes, sc.scope), true
			}
		}
		if !known {
			c.badInput(w, r, s, &badField{"scopes", "must be one of " + strings.Join(scopeNames(), ", ")})
			return
		}
	}
	resp, err := c.api.CreateKey(call(r, s), req)
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "secret", s, secretData{
		Title: "Key made", About: "The key " + resp.GetKey().GetKeyId() + " of " + org + ":", Secret: resp.GetSecret(),
		Note: "Copy it now: Kurier keeps only its hash, and it is not shown again.",
		Back: path("orgs", org), BackText: "Back to " + org,
	})
}

// revokeKey revokes a key of the org in the URL only: a key id of another
// org is not found here.
func (c *Console) revokeKey(w http.ResponseWriter, r *http.Request, s session) {
	org, id := r.PathValue("org"), r.PathValue("key")
	ctx := call(r, s)
	keys, err := c.api.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: org})
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	found := false
	for _, k := range keys.GetKeys() {
		found = found || k.GetKeyId() == id
	}
	if !found {
		c.fail(w, r, s, http.StatusNotFound, "The organisation has no key "+id+".")
		return
	}
	if _, err := c.api.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: id}); err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	http.Redirect(w, r, path("orgs", org)+"#keys", http.StatusSeeOther)
}
