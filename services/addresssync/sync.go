package addresssync

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"kurier.dev/services/internal/book"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
)

// maxSource bounds the readable name of a sync's source.
const maxSource = 200

func (s *Service) sync(r *http.Request) (Counts, error) {
	o, err := s.org(r.Context(), r)
	if err != nil {
		return Counts{}, err
	}
	c, source, err := s.syncBook(r, o)
	s.record(r.Context(), o.ID, source, c, err)
	return c, err
}

// record keeps how an org's sync ended, for the admin API: its counts, or
// why Kurier could not carry it out (5xx). A request refused for what it
// sent (4xx) leaves no trace, as bad input changes nothing; its answer and
// the log tell the sender why. A failure to keep the outcome changes
// nothing of the sync.
func (s *Service) record(ctx context.Context, org, source string, c Counts, err error) {
	ls := book.LastSync{Time: time.Now().UTC(), Source: source, Status: http.StatusOK, Created: c.Created,
		Updated: c.Updated, Deleted: c.Deleted, MarkedDeleted: c.MarkedDeleted, Unchanged: c.Unchanged}
	if err != nil {
		ls = book.LastSync{Time: ls.Time, Source: source, Status: http.StatusInternalServerError, Error: "the sync failed"}
		if we, ok := errors.AsType[*web.Error](err); ok {
			ls.Status, ls.Error, ls.Field = we.Status, we.Message, we.Field
		}
		if ls.Status < http.StatusInternalServerError {
			return
		}
	}
	// The answer is written whether or not the client still waits for it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.book.RecordSync(ctx, org, ls); err != nil {
		s.log.WarnContext(ctx, "the sync's outcome was not kept", "org", org, "err", err)
	}
}

// syncBook makes the org's book agree with the request's list, answering
// the counts and the source the request named.
func (s *Service) syncBook(r *http.Request, o tenant.Org) (Counts, string, error) {
	ctx := r.Context()
	if !event.IsJSON(r.Header.Get("Content-Type")) {
		return Counts{}, "", web.Errf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type", "send the person list as application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, int64(s.cfg.MaxBody)))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return Counts{}, "", web.Errf(http.StatusRequestEntityTooLarge, "too_large", "body", "is larger than %d bytes", s.cfg.MaxBody)
		}
		return Counts{}, "", web.Errf(http.StatusBadRequest, "invalid_body", "body", "the body could not be read: %v", err)
	}
	source, list, err := decode(body)
	if err != nil {
		return Counts{}, "", err
	}

	w, err := s.lock(ctx, o.ID)
	if err != nil {
		return Counts{}, source, err
	}
	defer w.Release()
	if o, err = s.current(ctx, o.ID); err != nil {
		return Counts{}, source, err
	}
	b, err := w.Book(ctx)
	if err != nil {
		return Counts{}, source, unavailable(err)
	}
	p, err := reconcile(b, list, o.AllowPersonDeletion)
	if err != nil {
		return Counts{}, source, err
	}
	if err := s.claim(ctx, p, list); err != nil {
		return Counts{}, source, err
	}
	if o.PersonQuota > 0 && p.active > o.PersonQuota {
		return Counts{}, source, web.Errf(http.StatusForbidden, "quota_exceeded", "personList",
			"the organisation would have %d persons, its quota is %d; nothing was changed", p.active, o.PersonQuota)
	}
	err = w.Commit(ctx, p.changes)
	if ce, ok := errors.AsType[*book.ConflictError](err); ok {
		// Another org's sync took the id after it was read.
		return Counts{}, source, otherOrg(list, p.index[ce.ID])
	}
	if err != nil {
		return Counts{}, source, unavailable(err)
	}
	s.log.InfoContext(ctx, "address book synced", "org", o.ID, "source", source, "persons", len(list), "created", p.counts.Created,
		"updated", p.counts.Updated, "deleted", p.counts.Deleted, "marked_deleted", p.counts.MarkedDeleted)
	return p.counts, source, nil
}

// claim checks that no listed person new to the org belongs to another
// org, and marks the new ids to be claimed for it.
func (s *Service) claim(ctx context.Context, p *plan, list []book.Fields) error {
	ids := make([]string, 0, len(p.news))
	for _, i := range p.news {
		ids = append(ids, p.changes[i].ID)
	}
	if len(ids) == 0 {
		return nil
	}
	owners, err := s.book.Owners(ctx, ids)
	if err != nil {
		return unavailable(err)
	}
	for _, i := range p.news {
		c := &p.changes[i]
		switch o := owners[c.ID]; o.Org {
		case "":
			c.Claim, c.ClaimRev = true, o.Rev
		case p.org:
			// The org's already: a deletion it has not yet finished giving up.
		default:
			return otherOrg(list, p.index[c.ID])
		}
	}
	return nil
}

func otherOrg(list []book.Fields, i int) error {
	return personErr(http.StatusPreconditionFailed, "person_of_other_org", i, "externalDbId",
		"%q belongs to a person of another organisation; nothing was changed", list[i].ExternalDbID)
}

// personErr names the person at index i and, if given, its field.
func personErr(status int, code string, i int, field, format string, args ...any) *web.Error {
	name := "personList[" + strconv.Itoa(i) + "]"
	if field != "" {
		name += "." + field
	}
	e := web.Errf(status, code, name, format, args...)
	e.Index = &i
	return e
}

// decode reads a sync request and checks every person in it.
func decode(body []byte) (string, []book.Fields, error) {
	// The decoder would take bytes that are not UTF-8 as U+FFFD, storing
	// persons that are not what the directory sent.
	if !utf8.Valid(body) {
		return "", nil, web.Errf(http.StatusBadRequest, "invalid_body", "body", "is not valid UTF-8")
	}
	var req struct {
		Source     json.RawMessage `json:"source"`
		PersonList []book.Fields   `json:"personList"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return "", nil, requestErr(body, err)
	}
	var source string
	if len(req.Source) > 0 && string(req.Source) != "null" {
		if err := json.Unmarshal(req.Source, &source); err != nil {
			return "", nil, web.Errf(http.StatusBadRequest, "invalid_body", "source", "must be a string")
		}
	}
	if utf8.RuneCountInString(source) > maxSource {
		return "", nil, web.Errf(http.StatusBadRequest, "invalid_body", "source", "has more than %d characters", maxSource)
	}
	list := req.PersonList
	if list == nil {
		return "", nil, web.Errf(http.StatusBadRequest, "invalid_body", "personList", "is required: the whole list of persons to sync")
	}
	seen := make(map[string]int, len(list))
	for i := range list {
		if err := list[i].Check(); err != nil {
			return "", nil, personErr(http.StatusBadRequest, "invalid_person", i, err.Field, "%s", err.Message)
		}
		if j, dup := seen[list[i].ExternalDbID]; dup {
			return "", nil, personErr(http.StatusBadRequest, "invalid_person", i, "externalDbId", "is personList[%d]'s too: each person once", j)
		}
		seen[list[i].ExternalDbID] = i
	}
	return source, list, nil
}

// requestErr says what is wrong with a request that did not decode. The
// list decodes in one pass unless something is wrong; then the persons
// are decoded one at a time to find the one at fault.
func requestErr(body []byte, err error) error {
	var req struct {
		PersonList json.RawMessage `json:"personList"`
	}
	if json.Unmarshal(body, &req) != nil {
		return web.Errf(http.StatusBadRequest, "invalid_body", "body", "is not a JSON object: %v", err)
	}
	var elems []json.RawMessage
	if json.Unmarshal(req.PersonList, &elems) != nil {
		return web.Errf(http.StatusBadRequest, "invalid_body", "personList", "must be an array of persons")
	}
	for i, e := range elems {
		var f book.Fields
		err := json.Unmarshal(e, &f)
		if err == nil {
			continue
		}
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
			return personErr(http.StatusBadRequest, "invalid_person", i, te.Field, "must be a JSON %s", jsonType(te))
		}
		return personErr(http.StatusBadRequest, "invalid_person", i, "", "must be a JSON object")
	}
	return web.Errf(http.StatusBadRequest, "invalid_body", "body", "%v", err)
}

func jsonType(te *json.UnmarshalTypeError) string {
	if te.Type.Kind().String() == "slice" {
		return "array of strings"
	}
	return te.Type.Kind().String()
}

// plan is what a sync changes.
type plan struct {
	org     string
	changes []book.Change
	counts  Counts
	index   map[string]int // each listed external id's index in the list
	news    []int          // changes that bring an id new to the org
	active  int            // persons not marked deleted after the sync
}

// reconcile works out the changes that make the book agree with the
// list: every listed person created or updated; a synced person the list
// lacks deleted, or marked deleted where deleting is not allowed. Persons
// made by hand are left alone, and may not be listed.
func reconcile(b *book.Book, list []book.Fields, allowDelete bool) (*plan, error) {
	p := &plan{org: b.Org, index: make(map[string]int, len(list))}
	for i, f := range list {
		p.index[f.ExternalDbID] = i
		e, ok := b.Persons[f.ExternalDbID]
		if ok && e.Person.Origin != book.OriginSync {
			return nil, personErr(http.StatusPreconditionFailed, "person_made_by_hand", i, "externalDbId",
				"%q is a person created by hand, which no sync changes; nothing was changed", f.ExternalDbID)
		}
		var prev *book.Person
		if ok {
			prev = &e.Person
		}
		after := book.NewPerson(f, book.OriginSync, prev)
		switch {
		case !ok:
			p.counts.Created++
			p.news = append(p.news, len(p.changes))
		case after.Equal(prev):
			p.counts.Unchanged++
			continue
		default:
			p.counts.Updated++
		}
		p.changes = append(p.changes, b.Change(f.ExternalDbID, &after))
	}
	p.active = len(list)
	var missing []string
	for id := range b.Persons {
		if _, listed := p.index[id]; !listed {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing) // the events come in an order that does not vary
	for _, id := range missing {
		e := b.Persons[id]
		switch {
		case e.Person.Origin != book.OriginSync:
			if !e.Person.Deleted {
				p.active++
			}
		case allowDelete:
			p.counts.Deleted++
			p.changes = append(p.changes, b.Change(id, nil))
		case !e.Person.Deleted:
			p.counts.MarkedDeleted++
			marked := e.Person
			marked.Deleted = true
			p.changes = append(p.changes, b.Change(id, &marked))
		}
	}
	return p, nil
}
