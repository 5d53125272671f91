package addresssync

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/natstest"
)

// An externalDbId is bounded in characters, so an id a sync took can be
// deleted through FE2's DELETE however many bytes its characters take.
func TestDeleteTakesEveryIDASyncTakes(t *testing.T) {
	e := newEnv(t)
	base := e.service(time.Second)
	key := e.org("acme", func(o *tenant.Org) { o.AllowPersonDeletion = true })
	long := strings.Repeat("ä", 200) // 200 characters, 400 bytes
	want(t, syncList(t, base, key, p(long, "Ada"), p("1", "Bob")), 200, Counts{Created: 2})
	a := call(t, http.MethodDelete, base+"/rest/addressbook/external/persons/"+url.PathEscape(long), key, "", nil)
	want(t, a, 200, Counts{Deleted: 1})
	if got := e.persons("acme"); len(got) != 1 {
		t.Fatalf("after the delete the book has %d persons, want 1", len(got))
	}
}

// The org's settings that a sync acts on are those in force once it has
// the book: a sync that waited for another while the org's sync was
// switched off (as deleting the org does before it deletes the book)
// changes nothing, and one that waited while person deletion was
// switched off marks deleted instead of deleting.
func TestSyncActsOnTheOrgAsItIsOnceItHasTheBook(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*tenant.Org)
		status int
		counts Counts
	}{
		{"sync switched off", func(o *tenant.Org) { o.AddressbookSync = false }, 503, Counts{}},
		{"deletion switched off", func(o *tenant.Org) { o.AllowPersonDeletion = false }, 200, Counts{Unchanged: 1, MarkedDeleted: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			base := e.service(10 * time.Second)
			key := e.org("acme", func(o *tenant.Org) { o.AllowPersonDeletion = true })
			want(t, syncList(t, base, key, p("1", "Ada"), p("2", "Bob")), 200, Counts{Created: 2})
			before := e.writes()

			w, err := e.book.Lock(context.Background(), "acme")
			if err != nil {
				t.Fatal(err)
			}
			var a answer
			var wg sync.WaitGroup
			wg.Go(func() { a = syncList(t, base, key, p("1", "Ada")) })
			time.Sleep(300 * time.Millisecond) // the sync is waiting for the lock
			if _, err := e.tenants.UpdateOrg(context.Background(), "acme", func(o *tenant.Org) error { tt.change(o); return nil }); err != nil {
				t.Fatal(err)
			}
			w.Release()
			wg.Wait()
			if a.Status != tt.status || (a.Status == 200 && a.Counts != tt.counts) {
				t.Fatalf("answer %v, want %d %+v", a, tt.status, tt.counts)
			}
			got := e.persons("acme")
			switch tt.status {
			case 503:
				if after := e.writes(); after != before || len(got) != 2 {
					t.Fatalf("a sync of an org with the sync switched off wrote: %d persons, writes at %v, were %v", len(got), after, before)
				}
			default:
				if bob, ok := got["2"]; !ok || !bob.Deleted {
					t.Fatalf("Bob is %+v (in the book: %v), want him marked deleted", bob, ok)
				}
			}
		})
	}
}

// An id that a sync's deletion gave up and another org then took stays
// that org's when the deleting sync's journal is finished again: a
// process that died after sending the sync's events and before ending
// its journal leaves it for the next holder, who sends what is left.
func TestFinishingAgainLeavesAnIDAnotherOrgTook(t *testing.T) {
	e := newEnv(t)
	base := e.service(time.Second)
	acme := e.org("acme", func(o *tenant.Org) { o.AllowPersonDeletion = true })
	globex := e.org("globex", nil)
	want(t, syncList(t, base, acme, p("x", "Ada"), p("1", "Bob")), 200, Counts{Created: 2})

	journal, err := e.conn.NC.SubscribeSync(bus.SyncOf("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.conn.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	want(t, syncList(t, base, acme, p("1", "Bob")), 200, Counts{Unchanged: 1, Deleted: 1})
	var left []*nats.Msg
	for {
		m, err := journal.NextMsg(time.Second)
		if err != nil {
			break
		}
		left = append(left, m)
	}
	if len(left) < 3 {
		t.Fatalf("the sync journalled %d messages, want its changes and two states", len(left))
	}
	// The journal as a process that died before ending it leaves it.
	for _, m := range left {
		if _, err := e.conn.JS.PublishMsg(context.Background(), &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}); err != nil {
			t.Fatal(err)
		}
	}

	want(t, syncList(t, base, globex, p("x", "Gina")), 200, Counts{Created: 1})
	want(t, syncList(t, base, acme, p("1", "Bob")), 200, Counts{Unchanged: 1}) // finishes the journal first
	owners, err := e.book.Owners(context.Background(), []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	if o := owners["x"].Org; o != "globex" {
		t.Fatalf("x belongs to %q, want globex, whose person it is", o)
	}
	if a := syncList(t, base, acme, p("1", "Bob"), p("x", "Ada")); a.Status != 412 || a.Error.Code != "person_of_other_org" {
		t.Fatalf("acme listing globex's x: %v, want 412 person_of_other_org", a)
	}
	wantEvents := []string{"person.created x", "person.created 1", "person.deleted x"}
	if ev := e.events("acme"); !slices.Equal(ev, wantEvents) {
		t.Fatalf("acme's events\n got %q\nwant %q", ev, wantEvents)
	}
}

// A client that hangs up in the middle of a sync's writes gets nothing
// changed: the sync is undone once every write it sent has landed, so
// that none lands after the undo read the book.
func TestSyncUndoneWhenItsClientHangsUp(t *testing.T) {
	e := newEnv(t)
	base := e.service(10 * time.Second)
	key := e.org("acme", nil)
	list := make([]map[string]any, 8000)
	for i := range list {
		list[i] = p(fmt.Sprint(i), "P")
	}
	want(t, syncList(t, base, key, list[:4000]...), 200, Counts{Created: 4000})
	for _, p := range list[:4000] {
		p["note"] = "changed"
	}
	body, err := json.Marshal(map[string]any{"personList": list})
	if err != nil {
		t.Fatal(err)
	}
	states, err := e.conn.NC.SubscribeSync(bus.SyncState("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.conn.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	hangUp := syncUnanswered(t, base, key, body)
	defer hangUp()
	if _, err := states.NextMsg(30 * time.Second); err != nil { // begun: the writes go out
		t.Fatal(err)
	}
	hangUp()
	journal := func() uint64 { return journalLen(t, e.conn) }
	natstest.WaitFor(t, 10*time.Second, "the sync to end", func() bool { return journal() == 0 })
	time.Sleep(200 * time.Millisecond) // any write still on its way lands
	got, changed := e.persons("acme"), 0
	for _, p := range got {
		if p.Note == "changed" {
			changed++
		}
	}
	n := len(e.events("acme"))
	switch {
	case len(got) == 8000 && changed == 4000 && n == 12000:
		t.Log("the sync was finished")
	case len(got) == 4000 && changed == 0 && n == 4000:
		t.Log("the sync was undone")
	default:
		t.Fatalf("after the client hung up: %d persons, %d changed, %d events", len(got), changed, n)
	}
}
