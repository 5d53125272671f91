// Package event is Kurier's CloudEvents 1.0 model: parsing the structured,
// batched and binary HTTP modes, the checks every accepted event passes, and
// the JSON form events are stored in.
package event

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"kurier.dev/services/internal/catalog"
)

// Media types of the three HTTP modes' bodies.
const (
	MediaStructured = "application/cloudevents+json"
	MediaBatch      = "application/cloudevents-batch+json"
)

// Event is one change event. Attributes Kurier does not know are kept as
// extensions and stored unchanged.
type Event struct {
	ID              string
	Source          string
	Type            string
	Subject         string // the document id
	Time            string // RFC 3339, empty when the producer gave none
	DataContentType string
	DataSchema      string
	// Data is the data as a JSON value: the data itself when its content
	// type is JSON (or none is given), a JSON string holding it when it is
	// text of another type (XML, CSV). nil when absent or binary.
	Data json.RawMessage
	// Binary is data of any other kind, or text not in UTF-8, as bytes
	// (data_base64 in the stored form); nil otherwise.
	Binary     []byte
	Extensions map[string]json.RawMessage
}

// Limits bound what an event may hold.
type Limits struct {
	MaxData int // bytes of data per event
}

// Error is a rejected event: the field at fault and, in a batch, its index.
type Error struct {
	Index   int // -1 outside a batch
	Field   string
	Message string
	// TooLarge marks a size limit, which HTTP answers with 413.
	TooLarge bool
}

func (e *Error) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("event %d: %s: %s", e.Index, e.Field, e.Message)
	}
	return e.Field + ": " + e.Message
}

func fieldErr(field, format string, args ...any) *Error {
	return &Error{Index: -1, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Bounds on attribute lengths; ids and subjects travel in NATS headers and
// HTTP queries, so they stay short and printable.
const (
	maxID      = 256
	maxSubject = 256
	maxSource  = 1024
	maxExtName = 20
)

var extName = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

// reserved names cannot be extensions; binary mode could otherwise smuggle
// a second "data" in through a ce-data header.
var reserved = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true, "subject": true, "time": true,
	"datacontenttype": true, "dataschema": true, "data": true, "data_base64": true,
}

// Decode parses and checks one event in structured mode.
func Decode(b []byte, l Limits) (Event, error) {
	if !utf8.Valid(b) {
		return Event{}, fieldErr("body", "is not valid UTF-8")
	}
	var e Event
	if err := e.decode(b); err != nil {
		return Event{}, err
	}
	return e, e.Check(l)
}

// DecodeBatch parses and checks a batch: a JSON array of structured events,
// at most max of them. One bad event fails the whole batch.
func DecodeBatch(b []byte, max int, l Limits) ([]Event, error) {
	if !utf8.Valid(b) {
		return nil, fieldErr("body", "is not valid UTF-8")
	}
	// One pass decodes the array and every object's attributes.
	var objs []map[string]json.RawMessage
	if err := json.Unmarshal(b, &objs); err != nil {
		return nil, batchErr(b, err)
	}
	switch {
	case len(objs) == 0:
		return nil, fieldErr("body", "the batch is empty")
	case len(objs) > max:
		return nil, fieldErr("body", "the batch holds %d events, at most %d are allowed", len(objs), max)
	}
	events := make([]Event, len(objs))
	for i, m := range objs {
		err := events[i].fill(m)
		if err == nil {
			err = events[i].Check(l)
		}
		if err != nil {
			e := err.(*Error)
			e.Index = i
			return nil, e
		}
	}
	return events, nil
}

// batchErr explains why a batch did not decode, naming the element that is
// not an object where that is the reason.
func batchErr(b []byte, err error) error {
	var raws []json.RawMessage
	if _, ok := err.(*json.UnmarshalTypeError); ok && json.Unmarshal(b, &raws) == nil {
		for i, raw := range raws {
			if raw[0] != '{' {
				return &Error{Index: i, Field: "body", Message: "is not a JSON object"}
			}
		}
	}
	return fieldErr("body", "is not a JSON array of event objects: %s", jsonReason(err))
}

// FromBinary builds an event from binary mode: attributes in ce-* headers
// (values percent-encoded, as the HTTP binding says), the body as data.
func FromBinary(h http.Header, body []byte, l Limits) (Event, error) {
	var e Event
	var spec string
	for name, vals := range h {
		lower := strings.ToLower(name)
		if !strings.HasPrefix(lower, "ce-") || len(vals) == 0 {
			continue
		}
		attr := lower[3:]
		v, err := url.PathUnescape(vals[0])
		if err != nil || !utf8.ValidString(v) {
			return Event{}, fieldErr(attr, "header %s is not a valid percent-encoded UTF-8 value", name)
		}
		switch attr {
		case "specversion":
			spec = v
		case "id":
			e.ID = v
		case "source":
			e.Source = v
		case "type":
			e.Type = v
		case "subject":
			e.Subject = v
		case "time":
			e.Time = v
		case "dataschema":
			e.DataSchema = v
		case "datacontenttype":
			return Event{}, fieldErr(attr, "binary mode takes the data content type from Content-Type")
		default:
			if e.Extensions == nil {
				e.Extensions = map[string]json.RawMessage{}
			}
			q, _ := json.Marshal(v)
			e.Extensions[attr] = q
		}
	}
	if spec != "1.0" {
		return Event{}, fieldErr("specversion", "must be \"1.0\"")
	}
	e.DataContentType = h.Get("Content-Type")
	// A body of no stated type is JSON, as it always was in binary mode.
	if err := e.setBytes(body, "data", true); err != nil {
		return Event{}, err
	}
	return e, e.Check(l)
}

// setBytes sets data that came as bytes (binary mode's body, data_base64)
// in the form its content type calls for, so that the same data is stored
// alike however it was sent: JSON as itself; text (text/*, XML) in UTF-8
// as a string; anything else as bytes. Bytes of no stated type are JSON
// when untyped is, and binary otherwise. No bytes, or JSON null, are no
// data.
func (e *Event) setBytes(b []byte, field string, untyped bool) error {
	switch {
	case e.DataContentType == "" && untyped || IsJSON(e.DataContentType):
		if t := bytes.TrimSpace(b); len(t) == 0 || string(t) == "null" {
			return nil
		}
		if !utf8.Valid(b) || !json.Valid(b) {
			return fieldErr(field, "is not valid JSON, as its content type says")
		}
		e.Data = json.RawMessage(b)
	case len(b) == 0:
	case isText(e.DataContentType) && utf8.Valid(b):
		e.Data = quote(string(b))
	default:
		e.Binary = b
	}
	return nil
}

// isText tells whether a media type is text that a JSON string can carry
// as it is: text/*, or XML, in UTF-8 (or with no charset named).
func isText(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	if cs := params["charset"]; cs != "" && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
		return false
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/xml" || strings.HasSuffix(mt, "+xml")
}

// quote is s as a JSON string, with <, > and & as they are: XML reads
// better that way, and the text stays what the producer sent.
func quote(s string) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// decode fills e from a structured-mode JSON object. It checks that each
// attribute has the right JSON type; Check does the rest.
func (e *Event) decode(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fieldErr("body", "is not a JSON object: %s", jsonReason(err))
	}
	return e.fill(m)
}

// fill takes the attributes out of a decoded JSON object.
func (e *Event) fill(m map[string]json.RawMessage) error {
	if m == nil {
		return fieldErr("body", "is not a JSON object")
	}
	str := func(name string, dst *string) error {
		raw, ok := m[name]
		if !ok {
			return nil
		}
		delete(m, name)
		// Most attributes hold no escapes: the text between the quotes is
		// the value, and the decoder has already checked it is valid JSON.
		if len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 {
			*dst = string(raw[1 : len(raw)-1])
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return fieldErr(name, "must be a string")
		}
		return nil
	}
	var spec string
	for _, a := range []struct {
		name string
		dst  *string
	}{
		{"specversion", &spec}, {"id", &e.ID}, {"source", &e.Source}, {"type", &e.Type},
		{"subject", &e.Subject}, {"time", &e.Time}, {"datacontenttype", &e.DataContentType},
		{"dataschema", &e.DataSchema},
	} {
		if err := str(a.name, a.dst); err != nil {
			return err
		}
	}
	if spec != "1.0" {
		return fieldErr("specversion", "must be \"1.0\"")
	}
	if raw, ok := m["data"]; ok {
		delete(m, "data")
		if string(raw) != "null" {
			e.Data = raw
		}
	}
	if raw, ok := m["data_base64"]; ok {
		delete(m, "data_base64")
		if err := e.fillBase64(raw); err != nil {
			return err
		}
	}
	for name, raw := range m {
		if len(raw) == 0 || raw[0] == '{' || raw[0] == '[' || string(raw) == "null" {
			return fieldErr(name, "an extension attribute must be a string, number or boolean")
		}
		if e.Extensions == nil {
			e.Extensions = map[string]json.RawMessage{}
		}
		e.Extensions[name] = raw
	}
	return nil
}

// fillBase64 takes data_base64: binary data, base64-encoded (RFC 4648).
func (e *Event) fillBase64(raw json.RawMessage) error {
	if string(raw) == "null" {
		return nil
	}
	if e.Data != nil {
		return fieldErr("data_base64", "an event has data or data_base64, not both")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fieldErr("data_base64", "must be a string")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fieldErr("data_base64", "is not base64 (RFC 4648, with padding): %v", err)
	}
	return e.setBytes(b, "data_base64", false)
}

// Check applies the rules every accepted event follows.
func (e *Event) Check(l Limits) error {
	switch {
	case e.ID == "":
		return fieldErr("id", "is required")
	case len(e.ID) > maxID || !printable(e.ID):
		return fieldErr("id", "must be at most %d printable characters", maxID)
	case e.Source == "":
		return fieldErr("source", "is required")
	case len(e.Source) > maxSource || !printable(e.Source):
		return fieldErr("source", "must be a URI-reference of at most %d characters", maxSource)
	case e.Type == "":
		return fieldErr("type", "is required")
	case !catalog.ValidType(e.Type):
		return fieldErr("type", "must be a dotted lower-case name such as invoice.changed (2-8 segments of a-z, 0-9, _ or -, each starting with a letter, at most %d characters)", catalog.MaxTypeLen)
	case e.Subject == "":
		return fieldErr("subject", "is required: it is the id of the changed document")
	case len(e.Subject) > maxSubject || !printable(e.Subject):
		return fieldErr("subject", "must be at most %d printable characters", maxSubject)
	case e.dataSize() > l.MaxData:
		err := fieldErr("data", "is %d bytes, at most %d are allowed", e.dataSize(), l.MaxData)
		if e.Binary != nil {
			err.Field = "data_base64"
		}
		err.TooLarge = true
		return err
	case Depth(e.Data) > MaxDepth:
		return fieldErr("data", "nests %d levels of arrays and objects, at most %d are allowed", Depth(e.Data), MaxDepth)
	}
	for name := range e.Extensions {
		if reserved[name] {
			return fieldErr(name, "is a CloudEvents context attribute and cannot be an extension")
		}
		if !extName.MatchString(name) {
			return fieldErr(name, "is not a CloudEvents attribute: extension names are 1-%d lower-case letters or digits", maxExtName)
		}
	}
	if _, err := url.Parse(e.Source); err != nil {
		return fieldErr("source", "is not a URI-reference")
	}
	if e.Time != "" {
		if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
			return fieldErr("time", "must be an RFC 3339 timestamp")
		}
	}
	if e.DataContentType != "" && !IsMediaType(e.DataContentType) {
		return fieldErr("datacontenttype", "must be a media type such as application/json or application/xml")
	}
	if e.Text() && e.Data[0] != '"' {
		return fieldErr("data", "must be a string when datacontenttype is not JSON (send bytes base64-encoded in data_base64)")
	}
	if e.DataSchema != "" {
		if u, err := url.Parse(e.DataSchema); err != nil || !u.IsAbs() || !printable(e.DataSchema) {
			return fieldErr("dataschema", "must be an absolute URI")
		}
	}
	return nil
}

// Text tells whether the data is text of a type other than JSON, which
// Data holds as a JSON string.
func (e Event) Text() bool {
	return e.Data != nil && e.DataContentType != "" && !IsJSON(e.DataContentType)
}

// DataMembers are the members that carry an event's data in Kurier's own
// JSON (queue messages, the change feed, payload bodies): JSON data as
// itself in data; other data with its content type, text as a string in
// data, anything else base64-encoded in data_base64.
type DataMembers struct {
	DataContentType string          `json:"datacontenttype,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
	DataBase64      []byte          `json:"data_base64,omitempty"`
}

// Members answers the members that carry the event's data.
func (e Event) Members() DataMembers {
	d := DataMembers{Data: e.Data, DataBase64: e.Binary}
	if e.Text() || e.Binary != nil {
		d.DataContentType = e.DataContentType
	}
	return d
}

// dataSize is the size of the data itself: JSON as written, text and
// bytes as they are, not as a JSON string or base64 carries them.
func (e *Event) dataSize() int {
	if e.Binary != nil {
		return len(e.Binary)
	}
	if e.Text() {
		var s string
		if json.Unmarshal(e.Data, &s) == nil {
			return len(s)
		}
	}
	return len(e.Data)
}

// MaxDepth bounds how deeply the JSON Kurier passes on to receivers (event
// data, queue messages) may nest arrays and objects. Documents rarely go
// past ten levels; 32 leaves room for the envelopes Kurier wraps data in
// and stays within what common JSON parsers take by default (64 for
// .NET's), so that no receiver is handed a document its parser refuses.
const MaxDepth = 32

// Depth answers how deeply the JSON text b nests arrays and objects: 0
// for a scalar, 1 for {"a":1}. b must be valid JSON.
func Depth(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString:
			if c == '\\' {
				i++ // the escaped character cannot end the string
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// IsMediaType tells whether s is a media type (RFC 2045: type/subtype,
// parameters allowed).
func IsMediaType(s string) bool {
	mt, _, err := mime.ParseMediaType(s)
	typ, sub, ok := strings.Cut(mt, "/")
	return err == nil && ok && typ != "" && sub != ""
}

// IsJSON tells whether a media type is JSON (application/json or a +json type).
func IsJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func jsonReason(err error) string {
	if se, ok := err.(*json.SyntaxError); ok {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	return err.Error()
}

// MarshalJSON writes the event in structured mode: the stored form.
func (e Event) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"specversion":"1.0"`)
	put := func(name, v string) {
		if v == "" {
			return
		}
		b.WriteString(`,"` + name + `":`)
		if plain(v) {
			b.WriteByte('"')
			b.WriteString(v)
			b.WriteByte('"')
			return
		}
		q, _ := json.Marshal(v)
		b.Write(q)
	}
	put("id", e.ID)
	put("source", e.Source)
	put("type", e.Type)
	put("subject", e.Subject)
	put("time", e.Time)
	put("datacontenttype", e.DataContentType)
	put("dataschema", e.DataSchema)
	names := make([]string, 0, len(e.Extensions))
	for n := range e.Extensions {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		b.WriteString(`,"` + n + `":`)
		b.Write(e.Extensions[n])
	}
	if e.Data != nil {
		b.WriteString(`,"data":`)
		// Compacting also checks data built elsewhere than by Decode.
		if err := json.Compact(&b, e.Data); err != nil {
			return nil, fmt.Errorf("event %s: data: %w", e.ID, err)
		}
	}
	if e.Binary != nil {
		b.WriteString(`,"data_base64":"`)
		b.WriteString(base64.StdEncoding.EncodeToString(e.Binary))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// plain tells whether s can be written between quotes as it is.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// UnmarshalJSON reads an event in structured mode without the acceptance
// checks, for events read back from the stream.
func (e *Event) UnmarshalJSON(b []byte) error {
	var d Event
	if err := d.decode(b); err != nil {
		return err
	}
	*e = d
	return nil
}
