package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"kurier.dev/services/internal/event"
)

// limits is generous enough for every test event except the ones about size.
var limits = event.Limits{MaxData: 4096}

// minimal is the smallest event Kurier accepts, as a JSON object.
func minimal() map[string]any {
	return map[string]any{
		"specversion": "1.0",
		"id":          "evt-1",
		"source":      "/collmex/123",
		"type":        "invoice.changed",
		"subject":     "RE-4711",
	}
}

// obj builds a structured-mode body from minimal(): set overrides or adds
// attributes (a json.RawMessage value is written as is), del removes them.
func obj(t *testing.T, set map[string]any, del ...string) []byte {
	t.Helper()
	m := minimal()
	for k, v := range set {
		m[k] = v
	}
	for _, k := range del {
		delete(m, k)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("building test body: %v", err)
	}
	return b
}

// wantErr checks that err is an *event.Error for field at index.
func wantErr(t *testing.T, err error, field string, index int) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want an *event.Error for field %q", field)
	}
	var e *event.Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %T %q, want *event.Error", err, err)
	}
	if e.Field != field {
		t.Errorf("Field = %q, want %q (error: %v)", e.Field, field, err)
	}
	if e.Index != index {
		t.Errorf("Index = %d, want %d (error: %v)", e.Index, index, err)
	}
	if e.Message == "" {
		t.Errorf("Message is empty (error: %v)", err)
	}
}

// compact returns the compacted form of JSON data, nil for nil.
func compact(t testing.TB, data json.RawMessage) json.RawMessage {
	t.Helper()
	if data == nil {
		return nil
	}
	var c bytes.Buffer
	if err := json.Compact(&c, data); err != nil {
		t.Fatalf("compacting data %q: %v", data, err)
	}
	return c.Bytes()
}

// diffEvents describes how got differs from want, "" when they are equal.
// Data is compared in compacted form, as MarshalJSON compacts it.
func diffEvents(t testing.TB, got, want event.Event) string {
	t.Helper()
	var d []string
	str := func(name, g, w string) {
		if g != w {
			d = append(d, name+": got "+quote(g)+", want "+quote(w))
		}
	}
	str("ID", got.ID, want.ID)
	str("Source", got.Source, want.Source)
	str("Type", got.Type, want.Type)
	str("Subject", got.Subject, want.Subject)
	str("Time", got.Time, want.Time)
	str("DataContentType", got.DataContentType, want.DataContentType)
	str("DataSchema", got.DataSchema, want.DataSchema)
	gd, wd := compact(t, got.Data), compact(t, want.Data)
	if (gd == nil) != (wd == nil) || !bytes.Equal(gd, wd) {
		d = append(d, "Data: got "+rawString(gd)+", want "+rawString(wd))
	}
	if (got.Binary == nil) != (want.Binary == nil) || !bytes.Equal(got.Binary, want.Binary) {
		d = append(d, fmt.Sprintf("Binary: got %q, want %q", got.Binary, want.Binary))
	}
	if len(got.Extensions) != len(want.Extensions) {
		d = append(d, "Extensions: got "+extString(got.Extensions)+", want "+extString(want.Extensions))
	} else {
		for k, wv := range want.Extensions {
			gv, ok := got.Extensions[k]
			if !ok || !bytes.Equal(gv, wv) {
				d = append(d, "Extensions: got "+extString(got.Extensions)+", want "+extString(want.Extensions))
				break
			}
		}
	}
	return strings.Join(d, "; ")
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

func rawString(r json.RawMessage) string {
	if r == nil {
		return "<nil>"
	}
	return "`" + string(r) + "`"
}

func extString(m map[string]json.RawMessage) string {
	var b strings.Builder
	b.WriteString("{")
	first := true
	for k, v := range m {
		if !first {
			b.WriteString(" ")
		}
		first = false
		b.WriteString(k + "=" + string(v))
	}
	b.WriteString("}")
	return b.String()
}

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name string
		body string
		want event.Event
	}{
		{
			name: "minimal",
			body: `{"specversion":"1.0","id":"evt-1","source":"/collmex/123","type":"invoice.changed","subject":"RE-4711"}`,
			want: event.Event{ID: "evt-1", Source: "/collmex/123", Type: "invoice.changed", Subject: "RE-4711"},
		},
		{
			name: "full",
			body: `{
				"specversion": "1.0",
				"id": "evt-2",
				"source": "https://erp.example.com/orgs/42",
				"type": "stock.available.changed",
				"subject": "ART-1",
				"time": "2024-05-06T07:08:09.123456789+02:00",
				"datacontenttype": "application/json",
				"dataschema": "https://schemas.example.com/stock/v1.json",
				"comment": "a b",
				"count": 42,
				"ratio": -1.5e3,
				"urgent": true,
				"archived": false,
				"data": {"amount": 12.5, "lines": [1, 2]}
			}`,
			want: event.Event{
				ID:              "evt-2",
				Source:          "https://erp.example.com/orgs/42",
				Type:            "stock.available.changed",
				Subject:         "ART-1",
				Time:            "2024-05-06T07:08:09.123456789+02:00",
				DataContentType: "application/json",
				DataSchema:      "https://schemas.example.com/stock/v1.json",
				Data:            json.RawMessage(`{"amount": 12.5, "lines": [1, 2]}`),
				Extensions: map[string]json.RawMessage{
					"comment":  json.RawMessage(`"a b"`),
					"count":    json.RawMessage(`42`),
					"ratio":    json.RawMessage(`-1.5e3`),
					"urgent":   json.RawMessage(`true`),
					"archived": json.RawMessage(`false`),
				},
			},
		},
		{
			name: "data null is no data",
			body: `{"specversion":"1.0","id":"1","source":"s","type":"a.b","subject":"d","data":null}`,
			want: event.Event{ID: "1", Source: "s", Type: "a.b", Subject: "d"},
		},
		{
			name: "data string and number",
			body: `{"specversion":"1.0","id":"1","source":"s","type":"a.b","subject":"d","data":"x","n":0}`,
			want: event.Event{ID: "1", Source: "s", Type: "a.b", Subject: "d", Data: json.RawMessage(`"x"`),
				Extensions: map[string]json.RawMessage{"n": json.RawMessage(`0`)}},
		},
		{
			name: "time UTC without fraction",
			body: `{"specversion":"1.0","id":"1","source":"s","type":"a.b","subject":"d","time":"2024-01-02T03:04:05Z"}`,
			want: event.Event{ID: "1", Source: "s", Type: "a.b", Subject: "d", Time: "2024-01-02T03:04:05Z"},
		},
		{
			name: "JSON media types",
			body: `{"specversion":"1.0","id":"1","source":"s","type":"a.b","subject":"d","datacontenttype":"application/vnd.kurier+json; charset=utf-8"}`,
			want: event.Event{ID: "1", Source: "s", Type: "a.b", Subject: "d", DataContentType: "application/vnd.kurier+json; charset=utf-8"},
		},
		{
			name: "id and subject at the length limit",
			body: `{"specversion":"1.0","id":"` + strings.Repeat("i", 256) + `","source":"s","type":"a.b","subject":"` + strings.Repeat("s", 256) + `"}`,
			want: event.Event{ID: strings.Repeat("i", 256), Source: "s", Type: "a.b", Subject: strings.Repeat("s", 256)},
		},
		{
			name: "extension name of 20 characters",
			body: `{"specversion":"1.0","id":"1","source":"s","type":"a.b","subject":"d","abcdefghij0123456789":"v"}`,
			want: event.Event{ID: "1", Source: "s", Type: "a.b", Subject: "d",
				Extensions: map[string]json.RawMessage{"abcdefghij0123456789": json.RawMessage(`"v"`)}},
		},
		{
			name: "escaped strings are decoded",
			body: `{"specversion":"1.0","id":"\u00e9v\u00e9nement","source":"s","type":"a.b","subject":"Rechnung \"5\""}`,
			want: event.Event{ID: "événement", Source: "s", Type: "a.b", Subject: `Rechnung "5"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := event.Decode([]byte(tt.body), limits)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d := diffEvents(t, got, tt.want); d != "" {
				t.Error(d)
			}
			// Decode keeps data as sent, not compacted.
			if !bytes.Equal(got.Data, tt.want.Data) {
				t.Errorf("Data = %s, want %s", rawString(got.Data), rawString(tt.want.Data))
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	tests := []struct {
		name  string
		body  []byte
		l     event.Limits // zero means limits
		field string
	}{
		// required attributes
		{name: "id missing", body: obj(t, nil, "id"), field: "id"},
		{name: "id empty", body: obj(t, map[string]any{"id": ""}), field: "id"},
		{name: "id null", body: obj(t, map[string]any{"id": nil}), field: "id"},
		{name: "source missing", body: obj(t, nil, "source"), field: "source"},
		{name: "source empty", body: obj(t, map[string]any{"source": ""}), field: "source"},
		{name: "type missing", body: obj(t, nil, "type"), field: "type"},
		{name: "type empty", body: obj(t, map[string]any{"type": ""}), field: "type"},
		{name: "subject missing", body: obj(t, nil, "subject"), field: "subject"},
		{name: "subject empty", body: obj(t, map[string]any{"subject": ""}), field: "subject"},

		// specversion
		{name: "specversion missing", body: obj(t, nil, "specversion"), field: "specversion"},
		{name: "specversion 0.3", body: obj(t, map[string]any{"specversion": "0.3"}), field: "specversion"},
		{name: "specversion 1", body: obj(t, map[string]any{"specversion": "1"}), field: "specversion"},
		{name: "specversion number", body: obj(t, map[string]any{"specversion": 1.0}), field: "specversion"},

		// attributes of the wrong JSON type
		{name: "id number", body: obj(t, map[string]any{"id": 5}), field: "id"},
		{name: "source object", body: obj(t, map[string]any{"source": raw(`{}`)}), field: "source"},
		{name: "type array", body: obj(t, map[string]any{"type": raw(`["a.b"]`)}), field: "type"},
		{name: "subject bool", body: obj(t, map[string]any{"subject": true}), field: "subject"},
		{name: "time number", body: obj(t, map[string]any{"time": 1700000000}), field: "time"},
		{name: "datacontenttype number", body: obj(t, map[string]any{"datacontenttype": 1}), field: "datacontenttype"},
		{name: "dataschema bool", body: obj(t, map[string]any{"dataschema": false}), field: "dataschema"},

		// the type rule
		{name: "type upper case", body: obj(t, map[string]any{"type": "Invoice.changed"}), field: "type"},
		{name: "type upper case second segment", body: obj(t, map[string]any{"type": "invoice.Changed"}), field: "type"},
		{name: "type single segment", body: obj(t, map[string]any{"type": "invoice"}), field: "type"},
		{name: "type wildcard *", body: obj(t, map[string]any{"type": "invoice.*"}), field: "type"},
		{name: "type wildcard >", body: obj(t, map[string]any{"type": "invoice.>"}), field: "type"},
		{name: "type space", body: obj(t, map[string]any{"type": "invoice changed.x"}), field: "type"},
		{name: "type space after dot", body: obj(t, map[string]any{"type": "invoice. changed"}), field: "type"},
		{name: "type empty segment", body: obj(t, map[string]any{"type": "invoice..changed"}), field: "type"},
		{name: "type leading dot", body: obj(t, map[string]any{"type": ".invoice.changed"}), field: "type"},
		{name: "type trailing dot", body: obj(t, map[string]any{"type": "invoice.changed."}), field: "type"},
		{name: "type leading digit segment", body: obj(t, map[string]any{"type": "invoice.1changed"}), field: "type"},
		{name: "type leading digit first segment", body: obj(t, map[string]any{"type": "1invoice.changed"}), field: "type"},
		{name: "type nine segments", body: obj(t, map[string]any{"type": "a.b.c.d.e.f.g.h.i"}), field: "type"},
		{name: "type 129 characters", body: obj(t, map[string]any{"type": "a" + strings.Repeat("b", 63) + ".c" + strings.Repeat("d", 63)}), field: "type"},
		{name: "type newline", body: obj(t, map[string]any{"type": "invoice.changed\n"}), field: "type"},

		// id, subject and source contents
		{name: "id newline", body: obj(t, map[string]any{"id": "a\nb"}), field: "id"},
		{name: "id NUL", body: obj(t, map[string]any{"id": "a\x00b"}), field: "id"},
		{name: "id DEL", body: obj(t, map[string]any{"id": "a\x7fb"}), field: "id"},
		{name: "id 257 bytes", body: obj(t, map[string]any{"id": strings.Repeat("i", 257)}), field: "id"},
		{name: "id 129 two-byte characters", body: obj(t, map[string]any{"id": strings.Repeat("é", 129)}), field: "id"},
		{name: "subject newline", body: obj(t, map[string]any{"subject": "doc\n1"}), field: "subject"},
		{name: "subject NUL", body: obj(t, map[string]any{"subject": "\x00"}), field: "subject"},
		{name: "subject tab", body: obj(t, map[string]any{"subject": "a\tb"}), field: "subject"},
		{name: "subject 257 bytes", body: obj(t, map[string]any{"subject": strings.Repeat("s", 257)}), field: "subject"},
		{name: "source newline", body: obj(t, map[string]any{"source": "/a\n"}), field: "source"},
		{name: "source 1025 bytes", body: obj(t, map[string]any{"source": "/" + strings.Repeat("s", 1024)}), field: "source"},
		{name: "source not a URI-reference", body: obj(t, map[string]any{"source": "http://[::1"}), field: "source"},

		// time, datacontenttype, dataschema
		{name: "time date only", body: obj(t, map[string]any{"time": "2024-01-02"}), field: "time"},
		{name: "time space separator", body: obj(t, map[string]any{"time": "2024-01-02 03:04:05Z"}), field: "time"},
		{name: "time no zone", body: obj(t, map[string]any{"time": "2024-01-02T03:04:05"}), field: "time"},
		{name: "time month 13", body: obj(t, map[string]any{"time": "2024-13-02T03:04:05Z"}), field: "time"},
		{name: "time word", body: obj(t, map[string]any{"time": "yesterday"}), field: "time"},
		{name: "time unix seconds as string", body: obj(t, map[string]any{"time": "1700000000"}), field: "time"},
		{name: "datacontenttype malformed", body: obj(t, map[string]any{"datacontenttype": "json"}), field: "datacontenttype"},
		{name: "datacontenttype without subtype", body: obj(t, map[string]any{"datacontenttype": "text/"}), field: "datacontenttype"},
		{name: "dataschema relative", body: obj(t, map[string]any{"dataschema": "/schemas/v1.json"}), field: "dataschema"},
		{name: "dataschema not a URI", body: obj(t, map[string]any{"dataschema": "http://[::1"}), field: "dataschema"},

		// data
		{name: "data_base64 with data", body: obj(t, map[string]any{"data_base64": "aGk=", "data": raw(`{}`)}), field: "data_base64"},
		{name: "data_base64 not base64", body: obj(t, map[string]any{"data_base64": "a*k="}), field: "data_base64"},
		{name: "data_base64 without padding", body: obj(t, map[string]any{"data_base64": "aGk"}), field: "data_base64"},
		{name: "data_base64 number", body: obj(t, map[string]any{"data_base64": 5}), field: "data_base64"},
		{name: "data_base64 not JSON as its type says", body: obj(t, map[string]any{"data_base64": "aGk=", "datacontenttype": "application/json"}), field: "data_base64"},
		{name: "data_base64 larger than MaxData", body: obj(t, map[string]any{"data_base64": "AAAAAAAAAAAAAAAAAAAAAAAA"}), l: event.Limits{MaxData: 17}, field: "data_base64"},
		{name: "data object for XML", body: obj(t, map[string]any{"data": raw(`{"a":1}`), "datacontenttype": "application/xml"}), field: "data"},
		{name: "data number for text", body: obj(t, map[string]any{"data": raw(`1`), "datacontenttype": "text/plain"}), field: "data"},
		{name: "text data larger than MaxData", body: obj(t, map[string]any{"data": "<a>0123456789</a>", "datacontenttype": "application/xml"}), l: event.Limits{MaxData: 16}, field: "data"},
		{name: "data larger than MaxData", body: obj(t, map[string]any{"data": raw(`"0123456789abcde"`)}), l: event.Limits{MaxData: 16}, field: "data"},
		{name: "one byte of data with MaxData -1", body: obj(t, map[string]any{"data": raw(`1`)}), l: event.Limits{MaxData: -1}, field: "data"},

		// extensions
		{name: "extension upper case name", body: obj(t, map[string]any{"Comment": "x"}), field: "Comment"},
		{name: "extension name 21 characters", body: obj(t, map[string]any{"abcdefghij0123456789k": "x"}), field: "abcdefghij0123456789k"},
		{name: "extension name with dash", body: obj(t, map[string]any{"my-ext": "x"}), field: "my-ext"},
		{name: "extension name with underscore", body: obj(t, map[string]any{"my_ext": "x"}), field: "my_ext"},
		{name: "extension name empty", body: obj(t, map[string]any{"": "x"}), field: ""},
		{name: "extension object value", body: obj(t, map[string]any{"comment": raw(`{"a":1}`)}), field: "comment"},
		{name: "extension empty object value", body: obj(t, map[string]any{"comment": raw(`{}`)}), field: "comment"},
		{name: "extension array value", body: obj(t, map[string]any{"tags": raw(`["a"]`)}), field: "tags"},
		{name: "extension null value", body: obj(t, map[string]any{"comment": nil}), field: "comment"},

		// the body itself
		{name: "body empty", body: []byte(``), field: "body"},
		{name: "body not JSON", body: []byte(`specversion=1.0`), field: "body"},
		{name: "body truncated", body: []byte(`{"specversion":"1.0"`), field: "body"},
		{name: "body JSON array", body: []byte(`[` + string(obj(t, nil)) + `]`), field: "body"},
		{name: "body empty JSON array", body: []byte(`[]`), field: "body"},
		{name: "body JSON null", body: []byte(`null`), field: "body"},
		{name: "body JSON string", body: []byte(`"x"`), field: "body"},
		{name: "body JSON number", body: []byte(`42`), field: "body"},
		{name: "body two objects", body: []byte(string(obj(t, nil)) + string(obj(t, nil))), field: "body"},
		{name: "body invalid UTF-8 in a value", body: []byte("{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"s\",\"type\":\"a.b\",\"subject\":\"d\"}"), field: "body"},
		{name: "body invalid UTF-8 in a key", body: []byte("{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"a.b\",\"subject\":\"d\",\"x\xc3\":1}"), field: "body"},
		{name: "body invalid UTF-8 outside JSON", body: append(obj(t, nil), 0xfe), field: "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.l
			if l == (event.Limits{}) {
				l = limits
			}
			_, err := event.Decode(tt.body, l)
			wantErr(t, err, tt.field, -1)
		})
	}
}

// TestDecodeLimitBoundary: data of exactly MaxData bytes is accepted, one
// more byte is not.
func TestDecodeLimitBoundary(t *testing.T) {
	l := event.Limits{MaxData: 16}
	ok := obj(t, map[string]any{"data": json.RawMessage(`"0123456789abcd"`)}) // 16 bytes
	if _, err := event.Decode(ok, l); err != nil {
		t.Errorf("16 bytes of data with MaxData 16: %v", err)
	}
	tooBig := obj(t, map[string]any{"data": json.RawMessage(`"0123456789abcde"`)}) // 17 bytes
	_, err := event.Decode(tooBig, l)
	wantErr(t, err, "data", -1)
}

func TestValidTypesAccepted(t *testing.T) {
	for _, typ := range []string{
		"invoice.changed",
		"a.b",
		"stock.available.changed",
		"my_org.x-y.z9",
		"a.b.c.d.e.f.g.h", // eight segments
		"a" + strings.Repeat("b", 63) + ".c" + strings.Repeat("d", 62), // 128 characters
	} {
		t.Run(typ, func(t *testing.T) {
			ev, err := event.Decode(obj(t, map[string]any{"type": typ}), limits)
			if err != nil {
				t.Fatalf("Decode with type %q (%d chars): %v", typ, len(typ), err)
			}
			if ev.Type != typ {
				t.Errorf("Type = %q, want %q", ev.Type, typ)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  event.Error
		want string
	}{
		{event.Error{Index: -1, Field: "id", Message: "is required"}, "id: is required"},
		{event.Error{Index: 0, Field: "type", Message: "bad"}, "event 0: type: bad"},
		{event.Error{Index: 2, Field: "subject", Message: "is required"}, "event 2: subject: is required"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// batch joins structured events into a JSON array.
func batch(events ...[]byte) []byte {
	return []byte("[" + string(bytes.Join(events, []byte(","))) + "]")
}

func TestDecodeBatch(t *testing.T) {
	ev := func(id string) []byte {
		return []byte(`{"specversion":"1.0","id":"` + id + `","source":"/s","type":"invoice.changed","subject":"doc-` + id + `"}`)
	}
	const max = 3
	tests := []struct {
		name    string
		body    []byte
		wantIDs []string // when the batch is accepted
		field   string   // when it is not
		index   int
	}{
		{name: "three events", body: batch(ev("a"), ev("b"), ev("c")), wantIDs: []string{"a", "b", "c"}},
		{name: "one event", body: batch(ev("a")), wantIDs: []string{"a"}},
		{name: "whitespace around", body: []byte(" \n[ " + string(ev("a")) + " ,\n" + string(ev("b")) + " ]\n"), wantIDs: []string{"a", "b"}},
		{name: "empty array", body: []byte(`[]`), field: "body", index: -1},
		{name: "more than max", body: batch(ev("a"), ev("b"), ev("c"), ev("d")), field: "body", index: -1},
		{name: "bad event at index 2", body: batch(ev("a"), ev("b"), obj(t, nil, "subject")), field: "subject", index: 2},
		{name: "bad type at index 0", body: batch(obj(t, map[string]any{"type": "Invoice"}), ev("b")), field: "type", index: 0},
		{name: "bad extension at index 1", body: batch(ev("a"), obj(t, map[string]any{"x": json.RawMessage(`[]`)})), field: "x", index: 1},
		{name: "non-object at index 1", body: batch(ev("a"), []byte(`42`)), field: "body", index: 1},
		{name: "null at index 0", body: batch([]byte(`null`)), field: "body", index: 0},
		{name: "data too big at index 2", body: batch(ev("a"), ev("b"), obj(t, map[string]any{"data": json.RawMessage(`"` + strings.Repeat("x", 5000) + `"`)})), field: "data", index: 2},
		{name: "not an array: object", body: ev("a"), field: "body", index: -1},
		{name: "not an array: string", body: []byte(`"[]"`), field: "body", index: -1},
		{name: "not an array: null", body: []byte(`null`), field: "body", index: -1},
		{name: "not JSON", body: []byte(`[{`), field: "body", index: -1},
		{name: "empty body", body: []byte(``), field: "body", index: -1},
		{name: "invalid UTF-8", body: []byte("[{\"specversion\":\"1.0\",\"id\":\"\xff\"}]"), field: "body", index: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := event.DecodeBatch(tt.body, max, limits)
			if tt.wantIDs == nil {
				wantErr(t, err, tt.field, tt.index)
				if got != nil {
					t.Errorf("events = %d, want nil with an error", len(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			if len(got) != len(tt.wantIDs) {
				t.Fatalf("got %d events, want %d", len(got), len(tt.wantIDs))
			}
			for i, id := range tt.wantIDs {
				want := event.Event{ID: id, Source: "/s", Type: "invoice.changed", Subject: "doc-" + id}
				if d := diffEvents(t, got[i], want); d != "" {
					t.Errorf("event %d: %s", i, d)
				}
			}
		})
	}
}

// TestDecodeBatchErrorString: a batch error names the event's index.
func TestDecodeBatchErrorString(t *testing.T) {
	ok := obj(t, nil)
	_, err := event.DecodeBatch(batch(ok, ok, obj(t, nil, "subject")), 10, limits)
	if err == nil {
		t.Fatal("no error")
	}
	if got := err.Error(); !strings.HasPrefix(got, "event 2: subject: ") {
		t.Errorf("Error() = %q, want it to start with %q", got, "event 2: subject: ")
	}
}

// hdr builds binary-mode headers from name, value pairs, with Set (so
// names are canonicalised as net/http does).
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// binaryBase is the header set of a minimal binary-mode event.
func binaryBase(extra ...string) http.Header {
	return hdr(append([]string{
		"ce-specversion", "1.0",
		"ce-id", "evt-1",
		"ce-source", "/collmex/123",
		"ce-type", "invoice.changed",
		"ce-subject", "RE-4711",
	}, extra...)...)
}

func TestFromBinaryAccepts(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		body string
		want event.Event
	}{
		{
			name: "minimal, no body",
			h:    binaryBase(),
			want: event.Event{ID: "evt-1", Source: "/collmex/123", Type: "invoice.changed", Subject: "RE-4711"},
		},
		{
			name: "full",
			h: binaryBase(
				"ce-time", "2024-05-06T07:08:09Z",
				"ce-dataschema", "https://schemas.example.com/invoice/v1.json",
				"ce-comment", "a%20b",
				"ce-count", "42",
				"Content-Type", "application/json",
				"Authorization", "Bearer secret", // not an attribute
			),
			body: `{"amount": 12.5}`,
			want: event.Event{
				ID:              "evt-1",
				Source:          "/collmex/123",
				Type:            "invoice.changed",
				Subject:         "RE-4711",
				Time:            "2024-05-06T07:08:09Z",
				DataContentType: "application/json",
				DataSchema:      "https://schemas.example.com/invoice/v1.json",
				Data:            json.RawMessage(`{"amount": 12.5}`),
				Extensions: map[string]json.RawMessage{
					"comment": json.RawMessage(`"a b"`),
					"count":   json.RawMessage(`"42"`), // header values are strings
				},
			},
		},
		{
			name: "percent-encoded attributes",
			h: hdr(
				"ce-specversion", "1%2E0",
				"ce-id", "id%3A1",
				"ce-source", "%2Fcollmex%2F123",
				"ce-type", "invoice%2Echanged",
				"ce-subject", "Rechnung%20%C3%A4%2F5",
				"ce-note", "%22quoted%22+plus",
			),
			want: event.Event{
				ID: "id:1", Source: "/collmex/123", Type: "invoice.changed", Subject: "Rechnung ä/5",
				Extensions: map[string]json.RawMessage{"note": json.RawMessage(`"\"quoted\"+plus"`)},
			},
		},
		{
			name: "lower-case header names as sent by some clients",
			h: http.Header{
				"ce-specversion": {"1.0"},
				"ce-id":          {"evt-1"},
				"CE-SOURCE":      {"/s"},
				"Ce-Type":        {"a.b"},
				"ce-subject":     {"d"},
			},
			want: event.Event{ID: "evt-1", Source: "/s", Type: "a.b", Subject: "d"},
		},
		{
			name: "whitespace-only body is no data",
			h:    binaryBase("Content-Type", "application/json"),
			body: " \r\n\t",
			want: event.Event{ID: "evt-1", Source: "/collmex/123", Type: "invoice.changed", Subject: "RE-4711", DataContentType: "application/json"},
		},
		{
			name: "JSON scalar body",
			h:    binaryBase("Content-Type", "application/json; charset=utf-8"),
			body: `"hello"`,
			want: event.Event{ID: "evt-1", Source: "/collmex/123", Type: "invoice.changed", Subject: "RE-4711",
				DataContentType: "application/json; charset=utf-8", Data: json.RawMessage(`"hello"`)},
		},
		{
			name: "JSON body without Content-Type",
			h:    binaryBase(),
			body: `[1,2]`,
			want: event.Event{ID: "evt-1", Source: "/collmex/123", Type: "invoice.changed", Subject: "RE-4711", Data: json.RawMessage(`[1,2]`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			got, err := event.FromBinary(tt.h, body, limits)
			if err != nil {
				t.Fatalf("FromBinary: %v", err)
			}
			if d := diffEvents(t, got, tt.want); d != "" {
				t.Error(d)
			}
			if !bytes.Equal(got.Data, tt.want.Data) {
				t.Errorf("Data = %s, want %s", rawString(got.Data), rawString(tt.want.Data))
			}
		})
	}
}

func TestFromBinaryRejects(t *testing.T) {
	without := func(name string) http.Header {
		h := binaryBase()
		h.Del(name)
		return h
	}
	tests := []struct {
		name  string
		h     http.Header
		body  string
		l     event.Limits
		field string
	}{
		{name: "specversion missing", h: without("ce-specversion"), field: "specversion"},
		{name: "specversion 0.3", h: binaryBase("ce-specversion", "0.3"), field: "specversion"},
		{name: "id missing", h: without("ce-id"), field: "id"},
		{name: "source missing", h: without("ce-source"), field: "source"},
		{name: "type missing", h: without("ce-type"), field: "type"},
		{name: "subject missing", h: without("ce-subject"), field: "subject"},
		{name: "type single segment", h: binaryBase("ce-type", "invoice"), field: "type"},
		{name: "type wildcard", h: binaryBase("ce-type", "invoice.%3E"), field: "type"},
		{name: "id with encoded newline", h: binaryBase("ce-id", "a%0Ab"), field: "id"},
		{name: "subject with encoded NUL", h: binaryBase("ce-subject", "a%00b"), field: "subject"},
		{name: "subject too long", h: binaryBase("ce-subject", strings.Repeat("s", 257)), field: "subject"},
		{name: "bad percent-encoding", h: binaryBase("ce-id", "%zz"), field: "id"},
		{name: "percent-encoded invalid UTF-8", h: binaryBase("ce-subject", "%ff"), field: "subject"},
		{name: "time not RFC 3339", h: binaryBase("ce-time", "Mon, 02 Jan 2006 15:04:05 GMT"), field: "time"},
		{name: "dataschema relative", h: binaryBase("ce-dataschema", "v1.json"), field: "dataschema"},
		{name: "ce-datacontenttype header", h: binaryBase("ce-datacontenttype", "application/json"), body: `{}`, field: "datacontenttype"},
		{name: "non-JSON body", h: binaryBase("Content-Type", "application/json"), body: `hello`, field: "data"},
		{name: "truncated JSON body", h: binaryBase("Content-Type", "application/json"), body: `{"a":`, field: "data"},
		{name: "invalid UTF-8 body", h: binaryBase("Content-Type", "application/json"), body: "\"\xff\"", field: "data"},
		{name: "body larger than MaxData", h: binaryBase(), body: `"0123456789abcde"`, l: event.Limits{MaxData: 16}, field: "data"},
		{name: "extension name with dash", h: binaryBase("ce-my-ext", "x"), field: "my-ext"},
		{name: "extension name too long", h: binaryBase("ce-abcdefghij0123456789k", "x"), field: "abcdefghij0123456789k"},
		{name: "extension name empty", h: binaryBase("ce-", "x"), field: ""},
		// "data" is a CloudEvents context name, not an extension: taking it
		// as one makes MarshalJSON write two "data" members.
		{name: "ce-data header", h: binaryBase("ce-data", "x"), body: `{"a":1}`, field: "data"},
		{name: "ce-data header without body", h: binaryBase("ce-data", "x"), field: "data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.l
			if l == (event.Limits{}) {
				l = limits
			}
			_, err := event.FromBinary(tt.h, []byte(tt.body), l)
			wantErr(t, err, tt.field, -1)
		})
	}
}

// TestFromBinaryNullBody: a body of JSON null is no data, as "data": null
// is in structured mode; otherwise the same event stored and read back
// (MarshalJSON, then Decode) differs from the one accepted.
func TestFromBinaryNullBody(t *testing.T) {
	ev, err := event.FromBinary(binaryBase("Content-Type", "application/json"), []byte("null"), limits)
	if err != nil {
		t.Fatalf("FromBinary: %v", err)
	}
	structured, err := event.Decode(obj(t, map[string]any{"data": nil, "datacontenttype": "application/json"}), limits)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if d := diffEvents(t, ev, structured); d != "" {
		t.Errorf("binary and structured mode disagree on null data: %s", d)
	}
}

func TestMarshalJSONExact(t *testing.T) {
	tests := []struct {
		name string
		ev   event.Event
		want string
	}{
		{
			name: "minimal",
			ev:   event.Event{ID: "1", Source: "/s", Type: "a.b", Subject: "d"},
			want: `{"specversion":"1.0","id":"1","source":"/s","type":"a.b","subject":"d"}`,
		},
		{
			name: "full, extensions sorted, data compacted and last",
			ev: event.Event{
				ID: "1", Source: "/s", Type: "a.b", Subject: "d",
				Time: "2024-01-02T03:04:05Z", DataContentType: "application/json", DataSchema: "https://x/y",
				Data: json.RawMessage("{ \"a\" : [ 1, 2 ] ,\n \"b\": \"c d\" }"),
				Extensions: map[string]json.RawMessage{
					"zeta":  json.RawMessage(`true`),
					"alpha": json.RawMessage(`"x"`),
					"mid":   json.RawMessage(`3`),
				},
			},
			want: `{"specversion":"1.0","id":"1","source":"/s","type":"a.b","subject":"d","time":"2024-01-02T03:04:05Z","datacontenttype":"application/json","dataschema":"https://x/y","alpha":"x","mid":3,"zeta":true,"data":{"a":[1,2],"b":"c d"}}`,
		},
		{
			name: "strings are escaped",
			ev:   event.Event{ID: "q\"\\", Source: "/s", Type: "a.b", Subject: "é"},
			want: `{"specversion":"1.0","id":"q\"\\","source":"/s","type":"a.b","subject":"é"}`,
		},
		{
			name: "empty data is kept",
			ev:   event.Event{ID: "1", Source: "/s", Type: "a.b", Subject: "d", Data: json.RawMessage(`""`)},
			want: `{"specversion":"1.0","id":"1","source":"/s","type":"a.b","subject":"d","data":""}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ev.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("MarshalJSON =\n%s\nwant\n%s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("output is not valid JSON: %s", got)
			}
			// encoding/json uses the method, for values and pointers.
			for _, v := range []any{tt.ev, &tt.ev} {
				viaPkg, err := json.Marshal(v)
				if err != nil {
					t.Fatalf("json.Marshal(%T): %v", v, err)
				}
				if string(viaPkg) != tt.want {
					t.Errorf("json.Marshal(%T) = %s, want %s", v, viaPkg, tt.want)
				}
			}
		})
	}
}

func TestMarshalJSONShape(t *testing.T) {
	ev, err := event.Decode(obj(t, map[string]any{"comment": "x", "count": 1}), limits)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(out) {
		t.Fatalf("not valid JSON: %s", out)
	}
	if !bytes.HasPrefix(out, []byte(`{"specversion":"1.0",`)) {
		t.Errorf("output does not start with specversion: %s", out)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"data", "time", "datacontenttype", "dataschema", "data_base64"} {
		if _, ok := m[absent]; ok {
			t.Errorf("output has %q though the event has none: %s", absent, out)
		}
	}
	want := map[string]string{
		"specversion": `"1.0"`, "id": `"evt-1"`, "source": `"/collmex/123"`, "type": `"invoice.changed"`,
		"subject": `"RE-4711"`, "comment": `"x"`, "count": `1`,
	}
	if len(m) != len(want) {
		t.Errorf("output has %d members, want %d: %s", len(m), len(want), out)
	}
	for k, v := range want {
		if string(m[k]) != v {
			t.Errorf("member %q = %s, want %s", k, m[k], v)
		}
	}
}

func TestMarshalJSONBadData(t *testing.T) {
	ev := event.Event{ID: "1", Source: "/s", Type: "a.b", Subject: "d", Data: json.RawMessage(`{"a":`)}
	if out, err := ev.MarshalJSON(); err == nil {
		t.Errorf("MarshalJSON with invalid data = %s, want an error", out)
	}
}

func TestMarshalUnmarshalRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		ev   event.Event
	}{
		{name: "minimal", ev: event.Event{ID: "1", Source: "/s", Type: "a.b", Subject: "d"}},
		{name: "full", ev: event.Event{
			ID: "evt-2", Source: "https://erp.example.com/orgs/42", Type: "stock.available.changed", Subject: "ART-1",
			Time: "2024-05-06T07:08:09.5+02:00", DataContentType: "application/json",
			DataSchema: "https://schemas.example.com/stock/v1.json",
			Data:       json.RawMessage("{\n  \"amount\": 12.5,\n  \"lines\": [ 1, 2 ]\n}"),
			Extensions: map[string]json.RawMessage{
				"comment": json.RawMessage(`"a b"`),
				"count":   json.RawMessage(`42`),
				"ratio":   json.RawMessage(`1.5e-3`),
				"urgent":  json.RawMessage(`true`),
				"escaped": json.RawMessage(`"\u003c\n"`),
			},
		}},
		{name: "unicode and escapes", ev: event.Event{
			ID: "ü\"\\/", Source: "urn:x:y", Type: "a.b", Subject: "Rechnung\u2028 5",
			Data: json.RawMessage(`"\u00e9"`),
		}},
		// UnmarshalJSON does not check: events read back are not re-judged.
		{name: "unchecked event", ev: event.Event{ID: "1", Type: "NOT VALID", Data: json.RawMessage(`[]`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := json.Marshal(tt.ev)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			var got event.Event
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("Unmarshal(%s): %v", out, err)
			}
			if d := diffEvents(t, got, tt.ev); d != "" {
				t.Errorf("round trip through %s: %s", out, d)
			}
			// Data comes back compacted, byte for byte.
			if want := compact(t, tt.ev.Data); !bytes.Equal(got.Data, want) {
				t.Errorf("Data = %s, want %s", rawString(got.Data), rawString(want))
			}
		})
	}
}

func TestUnmarshalJSONErrors(t *testing.T) {
	orig := event.Event{ID: "keep"}
	for _, body := range []string{`[]`, `null`, `{"id":"1"}`, `{"specversion":"1.0","id":5}`, `{"specversion":"1.0","x":{}}`} {
		t.Run(body, func(t *testing.T) {
			ev := orig
			if err := ev.UnmarshalJSON([]byte(body)); err == nil {
				t.Fatalf("UnmarshalJSON(%s): no error", body)
			}
			if ev.ID != "keep" {
				t.Errorf("UnmarshalJSON changed the event on error: ID = %q", ev.ID)
			}
		})
	}
}

func TestIsJSON(t *testing.T) {
	tests := []struct {
		ct   string
		want bool
	}{
		{"application/json", true},
		{"Application/JSON", true},
		{"application/json; charset=utf-8", true},
		{"application/cloudevents+json", true},
		{"application/vnd.api+json", true},
		{"text/plain", false},
		{"application/xml", false},
		{"application/jsonx", false},
		{"", false},
		{"json", false},
		{"application/json; charset", false},
	}
	for _, tt := range tests {
		if got := event.IsJSON(tt.ct); got != tt.want {
			t.Errorf("IsJSON(%q) = %v, want %v", tt.ct, got, tt.want)
		}
	}
}

// TestTooLarge: only a size limit sets TooLarge (HTTP answers it with 413).
func TestTooLarge(t *testing.T) {
	l := event.Limits{MaxData: 16}
	big := json.RawMessage(`"0123456789abcde"`) // 17 bytes
	tests := []struct {
		name string
		run  func() error
		want bool
	}{
		{"Decode, data too big", func() error {
			_, err := event.Decode(obj(t, map[string]any{"data": big}), l)
			return err
		}, true},
		{"DecodeBatch, data too big", func() error {
			_, err := event.DecodeBatch(batch(obj(t, nil), obj(t, map[string]any{"data": big})), 5, l)
			return err
		}, true},
		{"FromBinary, body too big", func() error {
			_, err := event.FromBinary(binaryBase(), big, l)
			return err
		}, true},
		{"Decode, bad type", func() error {
			_, err := event.Decode(obj(t, map[string]any{"type": "x"}), l)
			return err
		}, false},
		{"Decode, id too long", func() error {
			_, err := event.Decode(obj(t, map[string]any{"id": strings.Repeat("i", 257)}), l)
			return err
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			var e *event.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want an *event.Error", err)
			}
			if e.TooLarge != tt.want {
				t.Errorf("TooLarge = %v, want %v (error: %v)", e.TooLarge, tt.want, err)
			}
		})
	}
}
