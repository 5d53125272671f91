package main

import (
	"bytes"
	"encoding/json"
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
	"kurier.dev/services/internal/durfmt"
)

// printer writes results as a table for people or as protojson for
// scripts. Notes that are not results go to errw, so stdout stays clean
// for pipes.
type printer struct {
	w, errw io.Writer
	format  string // "table" or "json"
	field   string // with -o value=field: print only this field of the JSON, bare
}

// jsonOptions print every field, empty lists as [] and zeros as
// themselves, rather than leaving them out as protojson does by default:
// a script reads .subscriptions[] or .active of any answer without
// checking first whether the field is there.
var jsonOptions = protojson.MarshalOptions{Multiline: true, EmitDefaultValues: true}

// jsonLineOptions put a document on one line, for output that streams.
var jsonLineOptions = protojson.MarshalOptions{EmitDefaultValues: true}

func (p *printer) json(m proto.Message) error { return p.marshal(jsonOptions, m) }

// jsonLine writes m as one line of JSON.
func (p *printer) jsonLine(m proto.Message) error { return p.marshal(jsonLineOptions, m) }

func (p *printer) marshal(opts protojson.MarshalOptions, m proto.Message) error {
	if p.field != "" {
		// Every field the answer can have, so that one not set is found
		// too, and prints empty.
		opts = protojson.MarshalOptions{EmitUnpopulated: true}
	}
	b, err := opts.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	if p.field != "" {
		if b, err = fieldValue(b, p.field); err != nil {
			return err
		}
	}
	_, err = p.w.Write(append(b, '\n'))
	return err
}

// fieldValue finds a field in a JSON document by its path, names and list
// indexes joined by dots (subscriptions.0.subscriptionId), and answers
// it for shell variables: a string or number as it is, null as nothing,
// anything else as JSON.
func fieldValue(doc []byte, path string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	for name := range strings.SplitSeq(path, ".") {
		switch c := v.(type) {
		case map[string]any:
			f, ok := c[name]
			if !ok {
				return nil, fmt.Errorf("the answer has no field %q (-o value=%s); -o json shows it whole", name, path)
			}
			v = f
		case []any:
			i, err := strconv.Atoi(name)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("the answer's list has no item %q (-o value=%s); -o json shows it whole", name, path)
			}
			v = c[i]
		default:
			return nil, fmt.Errorf("the answer has nothing under %q (-o value=%s); -o json shows it whole", name, path)
		}
	}
	switch c := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []byte(c), nil
	case json.Number:
		return []byte(c), nil
	}
	return json.Marshal(v)
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
	fmt.Fprintln(p.w)
	return p.secret("Secret (shown only once; Kurier keeps nothing but its hash, so store it now)", resp.GetSecret())
}

// secret sets a secret apart on a line of its own, easy to copy, after a
// line that says what it is.
func (p *printer) secret(about, secret string) error {
	_, err := fmt.Fprintf(p.w, "%s:\n\n    %s\n\n", about, secret)
	return err
}

// signingSecret is what the signing secret of a subscription is called
// where it is shown.
const signingSecret = "shown only once; Kurier signs its requests to the URL with it, so store it now"

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
// as createdKey does. Kurier makes no requests for a queue subscription, so
// its secret signs nothing and is not offered for storing.
func (p *printer) createdSub(resp *adminv1.CreateSubscriptionResponse) error {
	if p.format == "json" {
		return p.json(resp)
	}
	sub := resp.GetSubscription()
	if err := p.sub(sub); err != nil {
		return err
	}
	fmt.Fprintln(p.w)
	if sub.GetMode() == adminv1.DeliveryMode_DELIVERY_MODE_QUEUE {
		_, err := fmt.Fprintf(p.w, "Its events go into queue %s unsigned: a queue subscription needs no signing secret.\n", sub.GetQueueId())
		return err
	}
	return p.secret("Signing secret ("+signingSecret+")", resp.GetSigningSecret())
}

// sub prints one subscription as JSON, or as a table row followed, for a
// payload subscription, by its settings and whether its deliveries fail.
func (p *printer) sub(s *adminv1.Subscription) error {
	if err := p.subs(s, s); err != nil || p.format == "json" {
		return err
	}
	var d details
	add := d.add
	if s.GetMode() == adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD {
		add("TABLE", s.GetTable())
		add("FIELDS", or(strings.Join(s.GetFields(), ","), "all"))
		add("CONDITIONS", s.GetConditions())
		var attrs []string
		for _, a := range s.GetAttributes() {
			v := a.GetValue()
			if a.GetSecret() {
				v = "***"
			}
			attrs = append(attrs, a.GetName()+"="+v)
		}
		add("ATTRIBUTES", attrs...)
		var headers []string
		for _, h := range s.GetHeaders() {
			headers = append(headers, h.GetName()+": "+h.GetValue())
		}
		add("HEADERS", headers...)
		add("TIMEOUT", durfmt.Short(s.GetTimeout().AsDuration()))
		add("FORMAT", formatWords.word(s.GetPayloadFormat().Number()))
		add("ORDERING", orderingWords.word(s.GetOrdering().Number()))
		add("MAX IN FLIGHT", strconv.FormatUint(uint64(s.GetMaxInFlight()), 10))
		if r := s.GetRateLimitPerSecond(); r > 0 {
			burst := s.GetRateLimitBurst()
			if burst == 0 {
				burst = r // the API's 0: the limit itself
			}
			add("RATE LIMIT", fmt.Sprintf("%d/s, burst %d", r, burst))
		}
		var retries []string
		for _, d := range s.GetRetrySchedule() {
			retries = append(retries, durfmt.Short(d.AsDuration()))
		}
		add("RETRY", or(strings.Join(retries, ","), "default"))
		if sch := s.GetSchedule(); sch.GetDailyAt() != "" {
			add("SCHEDULE", "daily at "+sch.GetDailyAt()+" "+sch.GetTimeZone())
		}
	}
	if s.GetMode() == adminv1.DeliveryMode_DELIVERY_MODE_QUEUE {
		add("QUEUE", s.GetQueueId())
	}
	if s.GetFilter() != "" {
		add("FILTER", s.GetFilter())
	}
	if s.GetFailingSince() != nil {
		add("FAILING SINCE", when(s.GetFailingSince()))
	}
	if s.GetDisabledReason() != "" {
		add("DISABLED", s.GetDisabledReason())
	}
	return d.print(p.w)
}

// details are labelled values shown under a table row, a value per line;
// a list's values after the first go without the label.
type details [][2]string

func (d *details) add(label string, values ...string) {
	if len(values) == 0 {
		values = []string{""}
	}
	for i, v := range values {
		if i > 0 {
			label = ""
		}
		*d = append(*d, [2]string{label, cell(v)})
	}
}

// print writes the details after an empty line, if there are any.
func (d details) print(w io.Writer) error {
	if len(d) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, kv := range d {
		if kv[0] != "" {
			kv[0] += ":"
		}
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

// or is s, or alt when s is empty.
func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// rotated shows a new signing secret and until when the previous one
// signs too.
func (p *printer) rotated(resp *adminv1.RotateSecretResponse) error {
	if p.format == "json" {
		return p.json(resp)
	}
	if err := p.secret("New signing secret ("+signingSecret+")", resp.GetSigningSecret()); err != nil {
		return err
	}
	if resp.GetPreviousValidUntil() == nil {
		return nil
	}
	_, err := fmt.Fprintf(p.w, "The previous secret still signs until %s: requests carry a signature with each until then.\n",
		when(resp.GetPreviousValidUntil()))
	return err
}

// preview shows a delivery's request line, then its sample body indented,
// then whether the sample event would be delivered.
func (p *printer) preview(resp *adminv1.PreviewSubscriptionResponse) error {
	if p.format == "json" {
		return p.json(resp)
	}
	if _, err := fmt.Fprintf(p.w, "%s %s\n", resp.GetMethod(), resp.GetUrl()); err != nil {
		return err
	}
	if resp.GetSampleBody() != "" {
		var body bytes.Buffer
		if err := json.Indent(&body, []byte(resp.GetSampleBody()), "", "  "); err != nil {
			body.Reset()
			body.WriteString(resp.GetSampleBody()) // not JSON: as it is
		}
		if _, err := fmt.Fprintf(p.w, "\n%s\n", strings.TrimRight(body.String(), "\n")); err != nil {
			return err
		}
	}
	verdict := "would be delivered: it is of the subscription's types and its filter passes it"
	if !resp.GetMatches() {
		verdict = "would not be delivered: it is not of the subscription's types, or its filter does not pass it"
	}
	_, err := fmt.Fprintf(p.w, "\nThe sample event %s.\n", verdict)
	return err
}

// applied shows what applying API_NOTIFICATION records changed, then the
// subscriptions they name and the signing secrets of those it created, as
// createdSub does.
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
	if err := p.subs(resp, resp.GetSubscriptions()...); err != nil {
		return err
	}
	sep := "\n" // p.secret ends with an empty line; the table does not
	for _, s := range resp.GetSubscriptions() {
		secret, ok := resp.GetSigningSecrets()[s.GetSubscriptionId()]
		if !ok {
			continue
		}
		fmt.Fprint(p.w, sep)
		sep = ""
		if err := p.secret("Signing secret of "+s.GetSubscriptionId()+" ("+signingSecret+")", secret); err != nil {
			return err
		}
	}
	return nil
}

var deliveryHeader = []string{"TIME", "SUBSCRIPTION", "SYSTEM", "TYPES", "EVENT", "STATUS", "LATENCY", "UNACKED", "ATTEMPT", "OUTCOME", "NEXT ATTEMPT"}

// deliveryWidths are the widths a tail starts its columns at: those of a
// time, a subscription id, and typical values of the rest.
var deliveryWidths = []int{20, 20, 8, 15, 10, 6, 7, 7, 7, 9, 0}

func deliveryCells(d *adminv1.Delivery) []string {
	status := d.GetError()
	if d.GetStatusCode() != 0 {
		status = strconv.Itoa(int(d.GetStatusCode()))
	}
	latency := ""
	if d.GetLatency() != nil {
		latency = strconv.FormatInt(d.GetLatency().AsDuration().Round(time.Millisecond).Milliseconds(), 10) + "ms"
	}
	attempt := ""
	if d.GetAttempt() != 0 {
		attempt = strconv.FormatUint(uint64(d.GetAttempt()), 10)
	}
	return []string{when(d.GetTime()), d.GetSubscriptionId(), d.GetSystem(), strings.Join(d.GetEventTypes(), ","), d.GetEventId(),
		status, latency, unacked(d.GetMode(), d.GetUnacked()), attempt, d.GetOutcome(), when(d.GetNextAttempt())}
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

// deadLetters prints msg as JSON, or dead letters as a table.
func (p *printer) deadLetters(msg proto.Message, ds ...*adminv1.DeadLetter) error {
	if p.format == "json" {
		return p.json(msg)
	}
	tw := newTable(p.w, "DELIVERY ID", "SUBSCRIPTION", "EVENT", "TYPE", "TIME")
	for _, d := range ds {
		row(tw, d.GetDeliveryId(), d.GetSubscriptionId(), d.GetEventId(), d.GetEventType(), when(d.GetTime()))
	}
	return tw.Flush()
}

// queues prints msg as JSON, or queues as a table.
func (p *printer) queues(msg proto.Message, qs ...*adminv1.Queue) error {
	if p.format == "json" {
		return p.json(msg)
	}
	tw := newTable(p.w, "QUEUE ID", "ORG", "CREATED", "MESSAGES", "OLDEST")
	for _, q := range qs {
		oldest := ""
		if q.GetOldestMessageAge() != nil {
			oldest = durfmt.Short(q.GetOldestMessageAge().AsDuration().Round(time.Second))
		}
		row(tw, q.GetQueueId(), q.GetOrgId(), when(q.GetCreateTime()), strconv.FormatUint(q.GetDepth(), 10), oldest)
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

// listing prints a paged list: in table mode an empty one is only the
// hint; a note says when more pages were left unread.
func (p *printer) listing(n int, more bool, what, emptyHint string, print func() error) error {
	if n == 0 {
		p.note("%s", emptyHint)
		if p.format == "table" {
			return nil
		}
	}
	if err := print(); err != nil {
		return err
	}
	if more {
		p.note("More %s follow; --all lists them all.", what)
	}
	return nil
}
