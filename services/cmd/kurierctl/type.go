package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// maxSchemaFile keeps a schema file within what one gRPC call carries;
// the server refuses one above 64 KiB with its own message.
const maxSchemaFile = 4<<20 - 1024

var typeCommands = []*command{
	{
		path:     "type list",
		synopsis: "type list [--org <org-id>]",
		about: "Lists the event types Kurier knows, with their Collmex event codes. With --org, also\n" +
			"which of them the organisation gave a JSON Schema, and the types of its own it gave one.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` whose schemas to show")
			return func(ctx context.Context, s *session, _ []string) error {
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.ListEventTypes(ctx, &adminv1.ListEventTypesRequest{OrgId: *org})
				if err != nil {
					return err
				}
				return s.out.eventTypes(resp, *org != "", resp.GetEventTypes()...)
			}
		},
	},
	{
		path:     "type get-schema",
		args:     []string{"event-type"},
		synopsis: "type get-schema --org <org-id> <event-type>",
		about:    "Prints the JSON Schema an organisation gave an event type, as it was set.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` the schema belongs to (required)")
			return func(ctx context.Context, s *session, args []string) error {
				if *org == "" {
					return usageErrorf("type get-schema needs --org <org-id>")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.ListEventTypes(ctx, &adminv1.ListEventTypesRequest{OrgId: *org})
				if err != nil {
					return err
				}
				for _, t := range resp.GetEventTypes() {
					if t.GetName() == args[0] && t.GetSchema() != "" {
						if s.out.format == "json" {
							return s.out.json(t)
						}
						_, err := fmt.Fprintln(s.out.w, t.GetSchema())
						return err
					}
				}
				return status.Errorf(codes.NotFound, "org %s gave event type %s no schema", *org, args[0])
			}
		},
	},
	{
		path:     "type set-schema",
		args:     []string{"event-type"},
		synopsis: "type set-schema --org <org-id> <event-type> -f <file>|-",
		about: "Gives an organisation's events of a type a JSON Schema (draft 2020-12 unless it names\n" +
			"another with $schema), in place of any it had: from then on ingest refuses its events\n" +
			"of the type whose data does not match, with a 400 naming where. At most 64 KiB; a\n" +
			"schema may not $ref anything outside itself. The type may be one of the org's own.",
		setup: func(fs *flag.FlagSet) runFunc {
			var f fileFlags
			f.bind(fs, "the `org-id` the schema is for (required)", "the schema's `file`, - for standard input (required)")
			return func(ctx context.Context, s *session, args []string) error {
				if err := f.check("type set-schema"); err != nil {
					return err
				}
				text, err := readSchema(f.file, s.in)
				if err != nil {
					return err
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				t, err := api.SetEventTypeSchema(ctx, &adminv1.SetEventTypeSchemaRequest{OrgId: f.org, EventType: args[0], Schema: text})
				if err != nil {
					return err
				}
				if s.out.format == "json" {
					return s.out.json(t)
				}
				_, err = fmt.Fprintf(s.out.w, "Events of type %s of org %s are now checked against the schema (%d bytes).\n", t.GetName(), f.org, len(t.GetSchema()))
				return err
			}
		},
	},
	{
		path:     "type delete-schema",
		args:     []string{"event-type"},
		synopsis: "type delete-schema --org <org-id> <event-type>",
		about:    "Removes an organisation's schema for an event type: its events of the type are no longer checked.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` the schema belongs to (required)")
			return func(ctx context.Context, s *session, args []string) error {
				if *org == "" {
					return usageErrorf("type delete-schema needs --org <org-id>")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				t, err := api.DeleteEventTypeSchema(ctx, &adminv1.DeleteEventTypeSchemaRequest{OrgId: *org, EventType: args[0]})
				if err != nil {
					return err
				}
				if s.out.format == "json" {
					return s.out.json(t)
				}
				_, err = fmt.Fprintf(s.out.w, "Deleted the schema of %s for org %s: its events of the type are no longer checked.\n", t.GetName(), *org)
				return err
			}
		},
	},
}

// readSchema reads the file named on the command line, or stdin for "-".
func readSchema(name string, stdin io.Reader) (string, error) {
	b, name, err := readInput(name, stdin, maxSchemaFile, "the most one call takes")
	switch {
	case err != nil:
		return "", err
	case !utf8.Valid(b):
		return "", errors.New(name + " is not UTF-8, as JSON must be")
	}
	return string(b), nil
}

// eventTypes prints msg as JSON, or types as a table; with schemas, a
// column says which have one and how large.
func (p *printer) eventTypes(msg *adminv1.ListEventTypesResponse, schemas bool, types ...*adminv1.EventType) error {
	if p.format == "json" {
		return p.json(msg)
	}
	header := []string{"NAME", "SYSTEM", "COLLMEX", "DESCRIPTION"}
	if schemas {
		header = append(header, "SCHEMA")
	}
	tw := newTable(p.w, header...)
	for _, t := range types {
		cells := []string{t.GetName(), t.GetSystem(), t.GetCollmexCode(), t.GetDescription()}
		if schemas {
			size := ""
			if n := len(t.GetSchema()); n > 0 {
				size = strconv.Itoa(n) + " bytes"
			}
			cells = append(cells, size)
		}
		row(tw, cells...)
	}
	return tw.Flush()
}
