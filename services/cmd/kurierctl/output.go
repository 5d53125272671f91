package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

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

// jsonLineOptions put a document on one line, for output that streams.
var jsonLineOptions = protojson.MarshalOptions{}

func (p *printer) json(m proto.Message) error { return p.marshal(jsonOptions, m) }

// jsonLine writes m as one line of JSON.
func (p *printer) jsonLine(m proto.Message) error { return p.marshal(jsonLineOptions, m) }

func (p *printer) marshal(opts protojson.MarshalOptions, m proto.Message) error {
	b, err := opts.Marshal(m)
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

// subs prints msg as JSON, or subs as a table.
func (p *printer) subs(msg proto.Message, subs ...*adminv1.Subscription) error {
	if p.format == "json" {
		return p.json(msg)
	}
	tw := newTable(p.w, "ID", "SYSTEM", "NAME", "TYPES", "MODE", "URL", "ACTIVE", "UNACKED", "LAST PING", "PENDING SINCE")
	for _, s := range subs {
		row(tw, s.GetSubscriptionId(), s.GetSystem(), s.GetName(), strings.Join(s.GetEventTypes(), ","),
			modeName(s.GetMode()), s.GetUrl(), yesNo(s.GetActive()), unacked(s.GetMode(), s.GetUnacked()),
			when(s.GetLastNotifiedAt()), when(s.GetPendingSince()))
	}
	return tw.Flush()
}

// createdSub shows a new subscription with its signing secret set apart,
// as createdKey does.
func (p *printer) createdSub(resp *adminv1.CreateSubscriptionResponse) error {
	if p.format == "json" {
		return p.json(resp)
	}
	if err := p.subs(resp, resp.GetSubscription()); err != nil {
		return err
	}
	_, err := fmt.Fprintf(p.w, "\nSigning secret (shown only once; Kurier signs its requests to the URL with it, so store it now):\n\n    %s\n\n", resp.GetSigningSecret())
	return err
}

// applied shows what applying API_NOTIFICATION records changed, then the
// subscriptions they name.
func (p *printer) applied(resp *adminv1.ApplyApiNotificationResponse) error {
	if p.format == "json" {
		return p.json(resp)
	}
	if _, err := fmt.Fprintf(p.w, "created %d, updated %d, deleted %d, unchanged %d\n",
		resp.GetCreated(), resp.GetUpdated(), resp.GetDeleted(), resp.GetUnchanged()); err != nil {
		return err
	}
	if len(resp.GetSubscriptions()) == 0 {
		return nil
	}
	fmt.Fprintln(p.w)
	return p.subs(resp, resp.GetSubscriptions()...)
}

var deliveryHeader = []string{"TIME", "SUBSCRIPTION", "SYSTEM", "TYPES", "STATUS", "LATENCY", "UNACKED"}

// deliveryWidths are the widths a tail starts its columns at: those of a
// time, a subscription id, and typical values of the rest.
var deliveryWidths = []int{20, 20, 8, 15, 6, 7, 0}

func deliveryCells(d *adminv1.Delivery) []string {
	status := d.GetError()
	if d.GetStatusCode() != 0 {
		status = strconv.Itoa(int(d.GetStatusCode()))
	}
	latency := ""
	if d.GetLatency() != nil {
		latency = strconv.FormatInt(d.GetLatency().AsDuration().Round(time.Millisecond).Milliseconds(), 10) + "ms"
	}
	return []string{when(d.GetTime()), d.GetSubscriptionId(), d.GetSystem(), strings.Join(d.GetEventTypes(), ","),
		status, latency, unacked(d.GetMode(), d.GetUnacked())}
}

// deliveries prints msg as JSON, or deliveries as a table.
func (p *printer) deliveries(msg proto.Message, ds ...*adminv1.Delivery) error {
	if p.format == "json" {
		return p.json(msg)
	}
	tw := newTable(p.w, deliveryHeader...)
	for _, d := range ds {
		row(tw, deliveryCells(d)...)
	}
	return tw.Flush()
}

// unacked shows the unacknowledged pings, which only ping mode counts.
func unacked(mode adminv1.DeliveryMode, n uint32) string {
	if mode != adminv1.DeliveryMode_DELIVERY_MODE_PING {
		return ""
	}
	return strconv.FormatUint(uint64(n), 10)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// streamTable prints rows as they come, aligned like a table although the
// rows to come are unknown: a column widens when a wider cell arrives,
// and rows printed before stay as they were.
type streamTable struct {
	w      io.Writer
	widths []int
}

func newStreamTable(w io.Writer, widths []int, header ...string) (*streamTable, error) {
	t := &streamTable{w: w, widths: slices.Clone(widths)}
	return t, t.row(header...)
}

func (t *streamTable) row(cells ...string) error {
	var b strings.Builder
	for i, c := range cells {
		c = cell(c)
		b.WriteString(c)
		if i == len(cells)-1 {
			break
		}
		n := utf8.RuneCountInString(c)
		t.widths[i] = max(t.widths[i], n)
		b.WriteString(strings.Repeat(" ", t.widths[i]-n+2))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(t.w, b.String())
	return err
}

// note tells a person something in table mode; scripts reading JSON get
// the bare response instead.
func (p *printer) note(format string, args ...any) {
	if p.format == "table" {
		fmt.Fprintf(p.errw, format+"\n", args...)
	}
}
