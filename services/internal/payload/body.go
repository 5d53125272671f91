package payload

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"kurier.dev/services/internal/event"
)

// Body is the JSON body of one delivery of e.
//
// Standard:
//
//	{"id":<id>,"type":<type>,"subject":<subject>,"timestamp":<ts>,"data":<data>}
//
// with ts the event's time, or ts given when it has none, in RFC 3339
// (nanoseconds, UTC), and absent data as null. Data that is not JSON goes
// with its content type: text (XML, CSV) as a string,
//
//	{…,"timestamp":<ts>,"datacontenttype":"application/xml","data":"<a/>"}
//
// and anything else base64-encoded, in "data_base64" instead of "data".
//
// Flat (profacto): one object holding the data's members followed by the
// attributes as string members. An attribute wins over a data member of the
// same name, since it is what the subscriber configured for its receiver.
// Data that is not an object (array, string, number, null or absent) becomes
// the member "data"; data that is not JSON the members "datacontenttype"
// and "data" or "data_base64", as in Standard.
//
// Fields, when not empty, keeps only those top-level members of object data;
// it is ignored for other data. The data's members keep their order and
// their numbers their text (1.50 stays 1.50): receivers such as accounting
// systems compare amounts as written, and a float64 round trip would change
// them.
func Body(s Spec, e event.Event, ts time.Time) ([]byte, error) {
	var b bytes.Buffer
	if err := writeBody(&b, s, e, ts); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Digest is the body of a daily digest: a JSON array of Body for each
// event, in order, each with its own time (stored[i] for events[i] without
// one), so a digest sent again is the same bytes.
func Digest(s Spec, events []event.Event, stored []time.Time) ([]byte, error) {
	if len(stored) != len(events) {
		return nil, fmt.Errorf("payload: %d events but %d times", len(events), len(stored))
	}
	// Checked here too so that a bad format shows on a day without events,
	// not only on the first day with some.
	if s.Format != Standard && s.Format != Flat && s.Format != "" {
		return nil, fmt.Errorf("payload: unknown body format %q", s.Format)
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, e := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := writeBody(&b, s, e, stored[i]); err != nil {
			return nil, err
		}
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

func writeBody(b *bytes.Buffer, s Spec, e event.Event, ts time.Time) error {
	members, isObject, err := dataMembers(e)
	if err != nil {
		return fmt.Errorf("payload: event %s: data: %w", e.ID, err)
	}
	if isObject && len(s.Fields) > 0 {
		members = slices.DeleteFunc(members, func(m member) bool { return !slices.Contains(s.Fields, m.name) })
	}
	switch s.Format {
	case Standard, "":
		b.WriteString(`{"id":`)
		writeString(b, e.ID)
		b.WriteString(`,"type":`)
		writeString(b, e.Type)
		b.WriteString(`,"subject":`)
		writeString(b, e.Subject)
		b.WriteString(`,"timestamp":`)
		if t, err := time.Parse(time.RFC3339Nano, e.Time); err == nil {
			ts = t
		}
		writeString(b, ts.UTC().Format(time.RFC3339Nano))
		switch {
		case isObject:
			b.WriteString(`,"data":`)
			writeObject(b, members)
		case members[0].name == "":
			b.WriteString(`,"data":`)
			b.Write(members[0].raw)
		default:
			for _, m := range members {
				b.WriteByte(',')
				writeMember(b, m)
			}
		}
		b.WriteByte('}')
	case Flat:
		if !isObject && members[0].name == "" {
			members[0].name = "data"
		}
		members = slices.DeleteFunc(members, func(m member) bool {
			return slices.ContainsFunc(s.Attributes, func(a Attr) bool { return a.Name == m.name })
		})
		for _, a := range s.Attributes {
			members = append(members, member{name: a.Name, str: a.Value})
		}
		writeObject(b, members)
	default:
		return fmt.Errorf("payload: unknown body format %q", s.Format)
	}
	return nil
}

// member is one member of the body's object: raw JSON taken from the data
// as it was written, or, when raw is nil, the string str.
type member struct {
	name string
	raw  []byte
	str  string
}

func writeObject(b *bytes.Buffer, members []member) {
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		writeMember(b, m)
	}
	b.WriteByte('}')
}

func writeMember(b *bytes.Buffer, m member) {
	writeString(b, m.name)
	b.WriteByte(':')
	if m.raw != nil {
		b.Write(m.raw)
	} else {
		writeString(b, m.str)
	}
}

// dataMembers is the event's data as members of a body: those of object
// data (isObject), other JSON data as one member without a name, and data
// that is not JSON as named members: its content type, if it has one, and
// the text as "data" or the bytes base64-encoded as "data_base64".
func dataMembers(e event.Event) (members []member, isObject bool, err error) {
	d := e.Members()
	if d.DataContentType == "" && d.DataBase64 == nil {
		return split(d.Data)
	}
	if d.DataContentType != "" {
		members = append(members, member{name: "datacontenttype", str: d.DataContentType})
	}
	if d.DataBase64 != nil {
		return append(members, member{name: "data_base64", str: base64.StdEncoding.EncodeToString(d.DataBase64)}), false, nil
	}
	var c bytes.Buffer
	if err := json.Compact(&c, d.Data); err != nil {
		return nil, false, err
	}
	return append(members, member{name: "data", raw: c.Bytes()}), false, nil
}

// split takes object data apart into its members, in order, each value
// compacted but otherwise as written. Other data comes back as one member
// without a name; absent data as null.
func split(data json.RawMessage) (members []member, isObject bool, err error) {
	// Only JSON's own whitespace: bytes.TrimSpace would also take Unicode
	// spaces and so accept data that is not JSON.
	data = bytes.Trim(data, " \t\r\n")
	if len(data) == 0 {
		return []member{{raw: []byte("null")}}, false, nil
	}
	if !json.Valid(data) {
		return nil, false, fmt.Errorf("is not valid JSON")
	}
	if data[0] != '{' {
		var c bytes.Buffer
		if err := json.Compact(&c, data); err != nil {
			return nil, false, err
		}
		return []member{{raw: c.Bytes()}}, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // the opening brace
		return nil, false, err
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false, err
		}
		name, ok := t.(string)
		if !ok {
			return nil, false, fmt.Errorf("member name %v is not a string", t)
		}
		// RawMessage keeps the value's text: decoding into any would turn
		// numbers into float64.
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false, err
		}
		var c bytes.Buffer
		if err := json.Compact(&c, v); err != nil {
			return nil, false, err
		}
		members = append(members, member{name: name, raw: c.Bytes()})
	}
	return members, true, nil
}

// writeString writes s as a JSON string. Unlike json.Marshal it leaves <, >
// and & as they are: the body is not HTML, and receivers comparing strings
// byte for byte should see what the producer sent.
func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode ends with a newline
}
