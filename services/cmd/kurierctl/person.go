package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// fieldModeWords are aPager PRO's field modes.
var fieldModeWords = enumWords{kind: "mode", desc: adminv1.APagerProFieldMode(0).Descriptor(), prefix: "A_PAGER_PRO_FIELD_MODE_"}

// originWords say how a person came into the book.
var originWords = enumWords{kind: "origin", desc: adminv1.PersonOrigin(0).Descriptor(), prefix: "PERSON_ORIGIN_"}

var personCommands = []*command{
	{
		path:     "person book",
		synopsis: "person book --org <org-id>",
		about: "Shows how many persons an organisation's address book holds, and how many a sync\n" +
			"marked deleted; then how its last sync through the sync API ended: accepted, with\n" +
			"what it changed, or failed on Kurier's side, with why (nothing changed then). A sync\n" +
			"refused for what it sent is not kept: its sender was told why.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` whose address book to show (required)")
			return func(ctx context.Context, s *session, _ []string) error {
				if *org == "" {
					return usageErrorf("person book needs --org <org-id>")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				b, err := api.GetAddressBook(ctx, &adminv1.GetAddressBookRequest{OrgId: *org})
				if err != nil {
					return err
				}
				return s.out.addressBook(b)
			}
		},
	},
	{
		path:     "person list",
		synopsis: "person list --org <org-id> [--deleted] [--limit N] [--all]",
		about: "Lists an organisation's address book, in the order the persons were last written:\n" +
			"the first page, or with --all every page. Persons a sync marked deleted are left\n" +
			"out unless --deleted is given.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` whose persons to list (required)")
			deleted := fs.Bool("deleted", false, "list the persons marked deleted too")
			var pf pageFlags
			pf.bind(fs, "persons")
			return func(ctx context.Context, s *session, _ []string) error {
				if *org == "" {
					return usageErrorf("person list needs --org <org-id>")
				}
				if err := pf.check(); err != nil {
					return err
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				req := &adminv1.ListPersonsRequest{OrgId: *org, IncludeDeleted: *deleted, PageSize: int32(pf.limit)}
				resp := &adminv1.ListPersonsResponse{}
				err = readPages(pf.all, func(token string) (string, error) {
					req.PageToken = token
					page, err := api.ListPersons(ctx, req)
					if err != nil {
						return "", err
					}
					resp.Persons = append(resp.Persons, page.GetPersons()...)
					resp.NextPageToken = page.GetNextPageToken()
					return page.GetNextPageToken(), nil
				})
				if err != nil {
					return err
				}
				return s.out.listing(len(resp.GetPersons()), resp.GetNextPageToken() != "", "persons",
					fmt.Sprintf("Org %s has no persons in its address book; a sync brings them, or: kurierctl person create --org %s --id <external-db-id>", *org, *org),
					func() error { return s.out.persons(resp, resp.GetPersons()...) })
			}
		},
	},
	{
		path:     "person get",
		args:     []string{"external-db-id"},
		synopsis: "person get --org <org-id> <external-db-id>",
		about:    "Shows one person with every field, its origin and its aPager PRO token.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` the person belongs to (required)")
			return func(ctx context.Context, s *session, args []string) error {
				if *org == "" {
					return usageErrorf("person get needs --org <org-id>")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				p, err := api.GetPerson(ctx, &adminv1.GetPersonRequest{OrgId: *org, ExternalDbId: args[0]})
				if err != nil {
					return err
				}
				return s.out.person(p)
			}
		},
	},
	{
		path: "person create",
		synopsis: `person create --org <org-id> --id <external-db-id> [--first-name "…"] [--last-name "…"] [--note "…"] ` +
			`[--os-functions a,b] [--os-groups a,b] [--alarm-groups a,b] [--issi …] [--xmpp …] [--a-pager-pro …] [--email …] [--mobil 0049…] [--mode legacy|token]`,
		about: "Adds a person by hand. No address-book sync ever changes or deletes it, and a sync\n" +
			"that lists its id is refused. In token mode the person gets an aPager PRO token.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` the person belongs to (required)")
			p := &adminv1.Person{}
			fs.StringVar(&p.ExternalDbId, "id", "", "the person's `external-db-id`, unique in the org (required)")
			fs.StringVar(&p.FirstName, "first-name", "", "first `name`")
			fs.StringVar(&p.LastName, "last-name", "", "last `name`")
			fs.StringVar(&p.Note, "note", "", "a `text` about the person")
			lists := map[string]*[]string{"os-functions": &p.OsFunctions, "os-groups": &p.OsGroups, "alarm-groups": &p.AlarmGroups}
			for name, l := range lists {
				fs.Func(name, "`names`, comma-separated", func(v string) error {
					*l = slices.AppendSeq(*l, listItems(v))
					return nil
				})
			}
			fs.StringVar(&p.Issi, "issi", "", "the radio's `ISSI`")
			fs.StringVar(&p.Xmpp, "xmpp", "", "an XMPP `address`")
			fs.StringVar(&p.APagerPro, "a-pager-pro", "", "the `address` aPager PRO is registered with: e-mail or 0049… (legacy mode)")
			fs.StringVar(&p.Email, "email", "", "an e-mail `address`")
			fs.StringVar(&p.Mobil, "mobil", "", "a mobile `number` 0049… (digits only)")
			fs.Func("mode", "aPager PRO's field `mode`: "+strings.Join(fieldModeWords.allowed(), " or ")+" (default legacy)", func(v string) error {
				n, err := fieldModeWords.parse(strings.TrimSpace(v))
				p.APagerProFieldMode = adminv1.APagerProFieldMode(n)
				return err
			})
			return func(ctx context.Context, s *session, _ []string) error {
				if *org == "" {
					return usageErrorf("person create needs --org <org-id>")
				}
				if p.GetExternalDbId() == "" {
					return usageErrorf("person create needs --id <external-db-id>")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				created, err := api.CreatePerson(ctx, &adminv1.CreatePersonRequest{OrgId: *org, Person: p})
				if err != nil {
					return err
				}
				return s.out.person(created)
			}
		},
	},
	{
		path:     "person delete",
		args:     []string{"external-db-id"},
		synopsis: "person delete --org <org-id> <external-db-id>",
		about:    "Deletes a person, made by hand or synced, at once; subscribers get person.deleted.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` the person belongs to (required)")
			return func(ctx context.Context, s *session, args []string) error {
				if *org == "" {
					return usageErrorf("person delete needs --org <org-id>")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.DeletePerson(ctx, &adminv1.DeletePersonRequest{OrgId: *org, ExternalDbId: args[0]})
				if err != nil {
					return err
				}
				if s.out.format == "json" {
					return s.out.json(resp)
				}
				_, err = fmt.Fprintf(s.out.w, "Deleted person %s of org %s.\n", args[0], *org)
				return err
			}
		},
	},
}

// persons prints msg as JSON, or persons as a table.
func (p *printer) persons(msg proto.Message, ps ...*adminv1.Person) error {
	if p.format == "json" {
		return p.json(msg)
	}
	tw := newTable(p.w, "EXTERNAL DB ID", "FIRST NAME", "LAST NAME", "ORIGIN", "DELETED", "MODE", "MOBIL", "EMAIL")
	for _, x := range ps {
		row(tw, x.GetExternalDbId(), x.GetFirstName(), x.GetLastName(), originWords.word(x.GetOrigin().Number()),
			yesNo(x.GetDeleted()), fieldModeWords.word(x.GetAPagerProFieldMode().Number()), x.GetMobil(), x.GetEmail())
	}
	return tw.Flush()
}

// person prints one person as JSON, or as a table row followed by the
// rest of its fields.
func (p *printer) person(ps *adminv1.Person) error {
	if err := p.persons(ps, ps); err != nil || p.format == "json" {
		return err
	}
	var d details
	d.add("NOTE", ps.GetNote())
	d.add("OS FUNCTIONS", ps.GetOsFunctions()...)
	d.add("OS GROUPS", ps.GetOsGroups()...)
	d.add("ALARM GROUPS", ps.GetAlarmGroups()...)
	d.add("ISSI", ps.GetIssi())
	d.add("XMPP", ps.GetXmpp())
	d.add("APAGER PRO", ps.GetAPagerPro())
	d.add("TOKEN", ps.GetToken())
	return d.print(p.w)
}

// addressBook prints b as JSON, or its counts as a table row followed by
// how its last sync ended.
func (p *printer) addressBook(b *adminv1.AddressBook) error {
	if p.format == "json" {
		return p.json(b)
	}
	tw := newTable(p.w, "ORG ID", "PERSONS", "MARKED DELETED")
	row(tw, b.GetOrgId(), strconv.FormatUint(uint64(b.GetPersons()), 10), strconv.FormatUint(uint64(b.GetMarkedDeleted()), 10))
	if err := tw.Flush(); err != nil {
		return err
	}
	var d details
	ls := b.GetLastSync()
	if ls == nil {
		d.add("LAST SYNC", "none yet")
		return d.print(p.w)
	}
	d.add("LAST SYNC", when(ls.GetTime()))
	d.add("SOURCE", ls.GetSource())
	if ls.GetError() == "" {
		d.add("OUTCOME", fmt.Sprintf("accepted (HTTP %d)", ls.GetStatus()))
		d.add("CHANGES", fmt.Sprintf("created %d, updated %d, deleted %d, marked deleted %d, unchanged %d",
			ls.GetCreated(), ls.GetUpdated(), ls.GetDeleted(), ls.GetMarkedDeleted(), ls.GetUnchanged()))
		return d.print(p.w)
	}
	d.add("OUTCOME", fmt.Sprintf("failed (HTTP %d): nothing changed", ls.GetStatus()))
	d.add("ERROR", ls.GetError())
	if ls.GetField() != "" {
		d.add("FIELD", ls.GetField())
	}
	return d.print(p.w)
}
