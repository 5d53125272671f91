package main

import (
	"context"
	"flag"
	"slices"
	"strings"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

var keyCommands = []*command{
	{
		path:     "key create",
		synopsis: `key create --org <org-id> --scope ingest[,changes,partner,addressbook] [--scope …] [--description "…"]`,
		about: "Creates a key for an organisation and prints its secret. The secret is shown only\n" +
			"this once: Kurier keeps nothing but its hash. Scopes: " + strings.Join(allowedScopes(), ", ") + ".",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` the key belongs to (required)")
			var scopes scopeList
			fs.Var(&scopes, "scope", "what the key may do: `scopes`, comma-separated or repeated (required)")
			desc := fs.String("description", "", "a `text` saying who uses the key, shown in lists")
			return func(ctx context.Context, s *session, _ []string) error {
				if *org == "" {
					return usageErrorf("key create needs --org <org-id>")
				}
				if len(scopes) == 0 {
					return usageErrorf("key create needs --scope; allowed: %s", strings.Join(allowedScopes(), ", "))
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: *org, Scopes: scopes, Description: *desc})
				if err != nil {
					return err
				}
				return s.out.createdKey(resp)
			}
		},
	},
	{
		path:     "key list",
		synopsis: "key list --org <org-id>",
		about:    "Lists an organisation's keys, revoked ones included. Secrets are never shown again.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` whose keys to list (required)")
			return func(ctx context.Context, s *session, _ []string) error {
				if *org == "" {
					return usageErrorf("key list needs --org <org-id>")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: *org})
				if err != nil {
					return err
				}
				if len(resp.GetKeys()) == 0 {
					s.out.note("Org %s has no keys; create one with: kurierctl key create --org %s --scope ingest", *org, *org)
					if s.out.format == "table" {
						return nil
					}
				}
				return s.out.keys(resp, resp.GetKeys()...)
			}
		},
	},
	{
		path:     "key revoke",
		args:     []string{"key-id"},
		synopsis: "key revoke <key-id>",
		about:    "Revokes a key: it stops working at once and stays listed as revoked.",
		setup: func(*flag.FlagSet) runFunc {
			return func(ctx context.Context, s *session, args []string) error {
				api, err := s.api()
				if err != nil {
					return err
				}
				key, err := api.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: args[0]})
				if err != nil {
					return err
				}
				return s.out.keys(key, key)
			}
		},
	},
}

// scopeWords are the scopes a key can have.
var scopeWords = enumWords{kind: "scope", desc: adminv1.KeyScope(0).Descriptor(), prefix: "KEY_SCOPE_"}

func allowedScopes() []string { return scopeWords.allowed() }

func parseScope(word string) (adminv1.KeyScope, error) {
	n, err := scopeWords.parse(word)
	return adminv1.KeyScope(n), err
}

func scopeName(sc adminv1.KeyScope) string { return scopeWords.word(sc.Number()) }

func scopeNames(scs []adminv1.KeyScope) string {
	names := make([]string, len(scs))
	for i, sc := range scs {
		names[i] = scopeName(sc)
	}
	return strings.Join(names, ",")
}

// scopeList is the --scope flag: comma-separated, repeatable, each scope
// counted once.
type scopeList []adminv1.KeyScope

func (l *scopeList) String() string {
	if l == nil {
		return ""
	}
	return scopeNames(*l)
}

func (l *scopeList) Set(v string) error {
	for word := range listItems(v) {
		sc, err := parseScope(word)
		if err != nil {
			return err
		}
		if !slices.Contains(*l, sc) {
			*l = append(*l, sc)
		}
	}
	return nil
}
