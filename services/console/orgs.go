package console

import (
	"net/http"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

type orgsData struct{ Orgs []*adminv1.Org }

func (c *Console) orgs(w http.ResponseWriter, r *http.Request, s session) {
	resp, err := c.api.ListOrgs(call(r, s), &adminv1.ListOrgsRequest{})
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "orgs", s, orgsData{Orgs: resp.GetOrgs()})
}
