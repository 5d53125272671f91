package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// printer writes results as a table for people or as protojson for
// scripts. Notes that are not results go to errw, so stdout stays clean
// for pipes.
type printer struct {
	w, errw io.Writer
	format  string // "table" or "json"
}

var jsonOptions = protojson.MarshalOptions{Multiline: true, EmitUnpopulated: false}

func (p *printer) json(m proto.Message) error {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	_, err = p.w.Write(append(b, '\n'))
	return err
}

func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func row(tw *tabwriter.Writer, cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

// cell makes a value safe for a table: the server rejects control
// characters today, but an older or foreign server must not be able to
// break the columns or send terminal escapes.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// when formats a time as RFC 3339 in UTC, so that tables read the same
// wherever they are printed.
func when(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// orgs prints msg as JSON, or orgs as a table.
func (p *printer) orgs(msg proto.Message, orgs ...*adminv1.Org) error {
	if p.format == "json" {
		return p.json(msg)
	}
	tw := newTable(p.w, "ORG ID", "DISPLAY NAME", "CREATED")
	for _, o := range orgs {
		row(tw, o.GetOrgId(), o.GetDisplayName(), when(o.GetCreateTime()))
	}
	return tw.Flush()
}

// keys prints msg as JSON, or keys as a table.
func (p *printer) keys(msg proto.Message, keys ...*adminv1.Key) error {
	if p.format == "json" {
		return p.json(msg)
	}
	tw := newTable(p.w, "KEY ID", "ORG", "SCOPES", "DESCRIPTION", "CREATED", "REVOKED")
	for _, k := range keys {
		row(tw, k.GetKeyId(), k.GetOrgId(), scopeNames(k.GetScopes()), k.GetDescription(),
			when(k.GetCreateTime()), when(k.GetRevokeTime()))
	}
	return tw.Flush()
}

// createdKey shows a new key with its secret set apart on a line of its
// own, easy to copy, since it cannot be fetched again.
func (p *printer) createdKey(resp *adminv1.CreateKeyResponse) error {
	if p.format == "json" {
		return p.json(resp)
	}
	if err := p.keys(resp, resp.GetKey()); err != nil {
		return err
	}
	_, err := fmt.Fprintf(p.w, "\nSecret (shown only once; Kurier keeps nothing but its hash, so store it now):\n\n    %s\n\n", resp.GetSecret())
	return err
}

// note tells a person something in table mode; scripts reading JSON get
// the bare response instead.
func (p *printer) note(format string, args ...any) {
	if p.format == "table" {
		fmt.Fprintf(p.errw, format+"\n", args...)
	}
}
