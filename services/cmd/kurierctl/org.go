package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

var orgCommands = []*command{
	{
		path:     "org create",
		args:     []string{"org-id"},
		synopsis: `org create <org-id> [--name "Display Name"]`,
		about: "Creates an organisation. Its id is 2 to 32 lower-case letters, digits and dashes,\n" +
			"starting with a letter or digit; it cannot be changed later.",
		setup: func(fs *flag.FlagSet) runFunc {
			name := fs.String("name", "", "`display name` shown beside the id")
			return func(ctx context.Context, s *session, args []string) error {
				api, err := s.api()
				if err != nil {
					return err
				}
				org, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: args[0], DisplayName: *name})
				if err != nil {
					return err
				}
				return s.out.orgs(org, org)
			}
		},
	},
	{
		path:     "org get",
		args:     []string{"org-id"},
		synopsis: "org get <org-id>",
		about:    "Shows one organisation.",
		setup: func(*flag.FlagSet) runFunc {
			return func(ctx context.Context, s *session, args []string) error {
				api, err := s.api()
				if err != nil {
					return err
				}
				org, err := api.GetOrg(ctx, &adminv1.GetOrgRequest{OrgId: args[0]})
				if err != nil {
					return err
				}
				return s.out.org(org)
			}
		},
	},
	{
		path:     "org update",
		args:     []string{"org-id"},
		synopsis: `org update <org-id> [--name "…"] [--addressbook-sync=true|false] [--person-quota N] [--allow-person-deletion=true|false]`,
		about: "Changes what the flags given name and keeps the rest. The address-book sync API\n" +
			"(FE2) answers 503 for an org without --addressbook-sync; --person-quota bounds its\n" +
			"persons not marked deleted (0: no limit); with --allow-person-deletion a sync deletes\n" +
			"the synced persons its list lacks, which it otherwise marks deleted.",
		setup: func(fs *flag.FlagSet) runFunc {
			in := &adminv1.Org{}
			mask := &fieldmaskpb.FieldMask{}
			given := func(path string, set func(string) error) func(string) error {
				return func(v string) error {
					mask.Paths = append(mask.Paths, path)
					return set(v)
				}
			}
			fs.Func("name", "`display name` shown beside the id", given("display_name", func(v string) error {
				in.DisplayName = v
				return nil
			}))
			fs.BoolFunc("addressbook-sync", "switch the address-book sync API on (=false: off)", given("addressbook_sync_enabled", func(v string) (err error) {
				in.AddressbookSyncEnabled, err = strconv.ParseBool(v)
				return err
			}))
			fs.Func("person-quota", "at most `N` persons not marked deleted; 0 for no limit", given("person_quota", func(v string) error {
				n, err := strconv.ParseUint(v, 10, 32)
				in.PersonQuota = uint32(n)
				return err
			}))
			fs.BoolFunc("allow-person-deletion", "let syncs delete persons (=false: they mark them deleted)", given("allow_person_deletion", func(v string) (err error) {
				in.AllowPersonDeletion, err = strconv.ParseBool(v)
				return err
			}))
			return func(ctx context.Context, s *session, args []string) error {
				if len(mask.Paths) == 0 {
					return usageErrorf("org update needs at least one of --name, --addressbook-sync, --person-quota, --allow-person-deletion")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				in.OrgId = args[0]
				org, err := api.UpdateOrg(ctx, &adminv1.UpdateOrgRequest{Org: in, UpdateMask: mask})
				if err != nil {
					return err
				}
				return s.out.org(org)
			}
		},
	},
	{
		path:     "org list",
		synopsis: "org list",
		about:    "Lists all organisations.",
		setup: func(*flag.FlagSet) runFunc {
			return func(ctx context.Context, s *session, _ []string) error {
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.ListOrgs(ctx, &adminv1.ListOrgsRequest{})
				if err != nil {
					return err
				}
				if len(resp.GetOrgs()) == 0 {
					s.out.note("No organisations yet; create one with: kurierctl org create <org-id>")
					if s.out.format == "table" {
						return nil
					}
				}
				return s.out.orgs(resp, resp.GetOrgs()...)
			}
		},
	},
	{
		path:     "org delete",
		args:     []string{"org-id"},
		synopsis: "org delete <org-id>",
		about:    "Deletes an organisation together with all its keys and its stored events. There is no undo.",
		setup: func(*flag.FlagSet) runFunc {
			return func(ctx context.Context, s *session, args []string) error {
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: args[0]})
				if err != nil {
					return err
				}
				if s.out.format == "json" {
					return s.out.json(resp)
				}
				_, err = fmt.Fprintf(s.out.w, "Deleted org %s with its keys and stored events.\n", args[0])
				return err
			}
		},
	},
}

// org prints one organisation as JSON, or as a table row followed by its
// address-book settings.
func (p *printer) org(o *adminv1.Org) error {
	if err := p.orgs(o, o); err != nil || p.format == "json" {
		return err
	}
	var d details
	d.add("ADDRESS BOOK SYNC", yesNo(o.GetAddressbookSyncEnabled()))
	quota := "none"
	if n := o.GetPersonQuota(); n > 0 {
		quota = strconv.FormatUint(uint64(n), 10)
	}
	d.add("PERSON QUOTA", quota)
	deletion := "no: a sync marks the persons its list lacks deleted"
	if o.GetAllowPersonDeletion() {
		deletion = "yes: a sync deletes the persons its list lacks"
	}
	d.add("PERSON DELETION", deletion)
	return d.print(p.w)
}
