package event_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"kurier.dev/services/internal/event"
)

// TestNonJSONData: data of any type is taken, in structured, batched and
// binary mode alike, and stored in the form its content type calls for
// (JSON as itself, UTF-8 text as a string, anything else as bytes), which
// reads back as the same event.
func TestNonJSONData(t *testing.T) {
	xml := `<?xml version="1.0"?><rechnung nr="4711">Müller & Söhne</rechnung>`
	latin1 := []byte("Nr;Kunde\n1;M\xfcller\n")
	withData := func(ct string, data json.RawMessage, bin []byte) event.Event {
		return event.Event{ID: "evt-1", Source: "/collmex/123", Type: "invoice.changed", Subject: "RE-4711",
			DataContentType: ct, Data: data, Binary: bin}
	}
	str := func(s string) json.RawMessage {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		return bytes.TrimSpace(b.Bytes())
	}
	tests := []struct {
		name   string
		decode func() (event.Event, error)
		want   event.Event
		stored string // what the stored form holds of the data
	}{{
		name: "binary mode, XML",
		decode: func() (event.Event, error) {
			return event.FromBinary(binaryBase("Content-Type", "application/xml"), []byte(xml), limits)
		},
		want:   withData("application/xml", str(xml), nil),
		stored: `"datacontenttype":"application/xml","data":"<?xml version=\"1.0\"?><rechnung nr=\"4711\">Müller & Söhne</rechnung>"`,
	}, {
		name: "binary mode, text in another charset",
		decode: func() (event.Event, error) {
			return event.FromBinary(binaryBase("Content-Type", "text/csv; charset=iso-8859-1"), latin1, limits)
		},
		want:   withData("text/csv; charset=iso-8859-1", nil, latin1),
		stored: `"datacontenttype":"text/csv; charset=iso-8859-1","data_base64":"TnI7S3VuZGUKMTtN/GxsZXIK"`,
	}, {
		name: "binary mode, octet-stream",
		decode: func() (event.Event, error) {
			return event.FromBinary(binaryBase("Content-Type", "application/octet-stream"), []byte{0, 1, 0xfe, 0xff}, limits)
		},
		want:   withData("application/octet-stream", nil, []byte{0, 1, 0xfe, 0xff}),
		stored: `"datacontenttype":"application/octet-stream","data_base64":"AAH+/w=="`,
	}, {
		name: "binary mode, plain text null is text",
		decode: func() (event.Event, error) {
			return event.FromBinary(binaryBase("Content-Type", "text/plain"), []byte("null"), limits)
		},
		want:   withData("text/plain", str("null"), nil),
		stored: `"datacontenttype":"text/plain","data":"null"`,
	}, {
		name: "binary mode, text without a body is no data",
		decode: func() (event.Event, error) {
			return event.FromBinary(binaryBase("Content-Type", "text/plain"), nil, limits)
		},
		want:   withData("text/plain", nil, nil),
		stored: `"datacontenttype":"text/plain"}`,
	}, {
		name: "structured, data_base64 without a type",
		decode: func() (event.Event, error) {
			return event.Decode(obj(t, map[string]any{"data_base64": "AAH+/w=="}), limits)
		},
		want:   withData("", nil, []byte{0, 1, 0xfe, 0xff}),
		stored: `"subject":"RE-4711","data_base64":"AAH+/w=="`,
	}, {
		name: "structured, data_base64 of PDF",
		decode: func() (event.Event, error) {
			return event.Decode(obj(t, map[string]any{"data_base64": "JVBERi0xLjQK", "datacontenttype": "application/pdf"}), limits)
		},
		want:   withData("application/pdf", nil, []byte("%PDF-1.4\n")),
		stored: `"datacontenttype":"application/pdf","data_base64":"JVBERi0xLjQK"`,
	}, {
		name: "structured, data_base64 of XML is stored as text",
		decode: func() (event.Event, error) {
			return event.Decode(obj(t, map[string]any{"data_base64": "PGEvPg==", "datacontenttype": "text/xml"}), limits)
		},
		want:   withData("text/xml", str("<a/>"), nil),
		stored: `"datacontenttype":"text/xml","data":"<a/>"`,
	}, {
		name: "structured, data_base64 of JSON is stored as JSON",
		decode: func() (event.Event, error) {
			return event.Decode(obj(t, map[string]any{"data_base64": "eyJhIjoxfQ==", "datacontenttype": "application/json"}), limits)
		},
		want:   withData("application/json", json.RawMessage(`{"a":1}`), nil),
		stored: `"datacontenttype":"application/json","data":{"a":1}`,
	}, {
		name: "structured, XML as a string",
		decode: func() (event.Event, error) {
			body := `{"specversion":"1.0","id":"evt-1","source":"/collmex/123","type":"invoice.changed","subject":"RE-4711",` +
				`"datacontenttype":"application/xml","data":` + string(str(xml)) + `}`
			return event.Decode([]byte(body), limits)
		},
		want:   withData("application/xml", str(xml), nil),
		stored: `"datacontenttype":"application/xml","data":"<?xml`,
	}, {
		name: "batch, data_base64",
		decode: func() (event.Event, error) {
			b := `[` + string(obj(t, nil)) + `,` + string(obj(t, map[string]any{"data_base64": "AAH+/w==", "datacontenttype": "image/png"})) + `]`
			events, err := event.DecodeBatch([]byte(b), 10, limits)
			if err != nil {
				return event.Event{}, err
			}
			return events[1], nil
		},
		want:   withData("image/png", nil, []byte{0, 1, 0xfe, 0xff}),
		stored: `"datacontenttype":"image/png","data_base64":"AAH+/w=="`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.decode()
			if err != nil {
				t.Fatalf("not accepted: %v", err)
			}
			if d := diffEvents(t, got, tt.want); d != "" {
				t.Fatal(d)
			}
			stored, err := got.MarshalJSON()
			if err != nil || !json.Valid(stored) || !bytes.Contains(stored, []byte(tt.stored)) {
				t.Fatalf("stored as %s (%v), want it to hold %s", stored, err, tt.stored)
			}
			back, err := event.Decode(stored, limits)
			if err != nil {
				t.Fatalf("stored form not accepted: %v", err)
			}
			if d := diffEvents(t, back, got); d != "" {
				t.Fatalf("read back from %s: %s", stored, d)
			}
		})
	}
}

// TestNonJSONDataLimit: MaxData counts the data itself, not what carries
// it: text as long as the limit is taken however much escaping it needs as
// a JSON string, and bytes however long their base64 is.
func TestNonJSONDataLimit(t *testing.T) {
	l := event.Limits{MaxData: 16}
	quoted := strings.Repeat(`"`, 16)
	if _, err := event.FromBinary(binaryBase("Content-Type", "text/plain"), []byte(quoted), l); err != nil {
		t.Errorf("16 bytes of text: %v", err)
	}
	_, err := event.FromBinary(binaryBase("Content-Type", "text/plain"), []byte(quoted+`"`), l)
	wantErr(t, err, "data", -1)
	if _, err := event.Decode(obj(t, map[string]any{"data_base64": "AAAAAAAAAAAAAAAAAAAAAA=="}), l); err != nil {
		t.Errorf("16 bytes as data_base64: %v", err)
	}
}

// TestMembers: Kurier's own JSON carries JSON data as itself, and other
// data with its content type.
func TestMembers(t *testing.T) {
	for _, tt := range []struct {
		name string
		ev   event.Event
		want string
	}{
		{"JSON", event.Event{DataContentType: "application/json", Data: json.RawMessage(`{"a":1}`)}, `{"data":{"a":1}}`},
		{"none", event.Event{DataContentType: "application/xml"}, `{}`},
		{"text", event.Event{DataContentType: "application/xml", Data: json.RawMessage(`"<a/>"`)}, `{"datacontenttype":"application/xml","data":"\u003ca/\u003e"}`},
		{"bytes", event.Event{DataContentType: "application/pdf", Binary: []byte("%PDF")}, `{"datacontenttype":"application/pdf","data_base64":"JVBERg=="}`},
		{"bytes of no type", event.Event{Binary: []byte("%PDF")}, `{"data_base64":"JVBERg=="}`},
	} {
		b, err := json.Marshal(tt.ev.Members())
		if err != nil || string(b) != tt.want {
			t.Errorf("%s: %s (%v), want %s", tt.name, b, err, tt.want)
		}
	}
}
