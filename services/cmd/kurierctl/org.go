package main

import (
	"context"
	"flag"
	"fmt"

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
				return s.out.orgs(org, org)
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
