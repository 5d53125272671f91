package payload

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"kurier.dev/services/internal/event"
)

// testTime is in CEST so that the tests see the timestamp turned into UTC.
var testTime = time.Date(2024, 5, 6, 7, 8, 9, 500_000_000, time.FixedZone("CEST", 2*3600))

const testStamp = `"2024-05-06T05:08:09.5Z"`

func testEvent(data string) event.Event {
	e := event.Event{ID: "evt-1", Source: "/erp", Type: "project.created", Subject: "P-1001"}
	if data != "" {
		e.Data = json.RawMessage(data)
	}
	return e
}

// record is written with spaces and newlines, numbers in several spellings
// and characters json.Marshal would escape for HTML.
const record = `{
	"nr": "P-1001",
	"betrag": 1.50,
	"kunde": {"name": "Müller & Söhne <GmbH>", "plz": "01234"},
	"pos": [1, 2.0, 3e2, -0.0, 12345678901234567890],
	"text": "Zeile\nzwei \u00fc \"q\""
}`

const compactRecord = `{"nr":"P-1001","betrag":1.50,"kunde":{"name":"Müller & Söhne <GmbH>","plz":"01234"},"pos":[1,2.0,3e2,-0.0,12345678901234567890],"text":"Zeile\nzwei \u00fc \"q\""}`

func TestBody(t *testing.T) {
	attrs := []Attr{{Name: "mandant", Value: "7"}, {Name: "token", Value: "a<b>&c", Secret: true}}
	for _, tc := range []struct {
		name string
		spec Spec
		data string
		want string
	}{
		{
			name: "standard",
			spec: Spec{Format: Standard, Attributes: attrs},
			data: record,
			want: `{"id":"evt-1","type":"project.created","subject":"P-1001","timestamp":` + testStamp + `,"data":` + compactRecord + `}`,
		},
		{
			name: "empty format is standard",
			spec: Spec{},
			data: `{"a":1}`,
			want: `{"id":"evt-1","type":"project.created","subject":"P-1001","timestamp":` + testStamp + `,"data":{"a":1}}`,
		},
		{
			name: "flat",
			spec: Spec{Format: Flat, Attributes: attrs},
			data: record,
			want: `{"nr":"P-1001","betrag":1.50,"kunde":{"name":"Müller & Söhne <GmbH>","plz":"01234"},"pos":[1,2.0,3e2,-0.0,12345678901234567890],"text":"Zeile\nzwei \u00fc \"q\"","mandant":"7","token":"a<b>&c"}`,
		},
		{
			name: "flat without attributes",
			spec: Spec{Format: Flat},
			data: `{"b":2,"a":1}`,
			want: `{"b":2,"a":1}`,
		},
		{
			name: "flat, attribute wins a name clash",
			spec: Spec{Format: Flat, Attributes: []Attr{{Name: "nr", Value: "X-1"}, {Name: "mandant", Value: "7"}}},
			data: `{"nr":"P-1001","betrag":1.50,"NR":3}`,
			want: `{"betrag":1.50,"NR":3,"nr":"X-1","mandant":"7"}`,
		},
		{
			name: "standard, fields",
			spec: Spec{Format: Standard, Fields: []string{"pos", "nr", "missing"}},
			data: record,
			want: `{"id":"evt-1","type":"project.created","subject":"P-1001","timestamp":` + testStamp + `,"data":{"nr":"P-1001","pos":[1,2.0,3e2,-0.0,12345678901234567890]}}`,
		},
		{
			name: "flat, fields then attributes",
			spec: Spec{Format: Flat, Fields: []string{"betrag", "nr"}, Attributes: attrs},
			data: record,
			want: `{"nr":"P-1001","betrag":1.50,"mandant":"7","token":"a<b>&c"}`,
		},
		{
			name: "flat, fields and clash",
			spec: Spec{Format: Flat, Fields: []string{"betrag", "nr"}, Attributes: []Attr{{Name: "betrag", Value: "0"}}},
			data: record,
			want: `{"nr":"P-1001","betrag":"0"}`,
		},
		{
			name: "fields match no member",
			spec: Spec{Format: Standard, Fields: []string{"x"}},
			data: record,
			want: `{"id":"evt-1","type":"project.created","subject":"P-1001","timestamp":` + testStamp + `,"data":{}}`,
		},
		{
			name: "fields match names exactly, after unescaping",
			spec: Spec{Format: Flat, Fields: []string{"ü", "A"}},
			data: `{"\u00fc":1,"a":2,"A":3}`,
			want: `{"ü":1,"A":3}`,
		},
		{
			name: "standard, empty object",
			spec: Spec{Format: Standard},
			data: `{}`,
			want: `{"id":"evt-1","type":"project.created","subject":"P-1001","timestamp":` + testStamp + `,"data":{}}`,
		},
		{
			name: "flat, empty object",
			spec: Spec{Format: Flat},
			data: ` { } `,
			want: `{}`,
		},
		{
			name: "numbers are never re-encoded",
			spec: Spec{Format: Flat},
			data: `{"a":1.50,"b":1e400,"c":0.1000000000000000055511151231257827,"d":-1E-7,"e":[100,1.0]}`,
			want: `{"a":1.50,"b":1e400,"c":0.1000000000000000055511151231257827,"d":-1E-7,"e":[100,1.0]}`,
		},
		{
			name: "duplicate data members are kept as written",
			spec: Spec{Format: Flat},
			data: `{"a":1,"a":2}`,
			want: `{"a":1,"a":2}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Body(tc.spec, testEvent(tc.data), testTime)
			if err != nil {
				t.Fatalf("Body: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("Body\n got %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("Body is not valid JSON: %s", got)
			}
		})
	}
}

// Data that is not an object becomes the member "data" in a flat body, and
// Fields does not apply to it.
func TestBodyNonObjectData(t *testing.T) {
	attrs := []Attr{{Name: "mandant", Value: "7"}}
	fields := []string{"a"}
	for _, tc := range []struct {
		name, data, want string
	}{
		{"array", ` [ 1, 1.50, {"a": 2} ] `, `[1,1.50,{"a":2}]`},
		{"string", `"x <y>"`, `"x <y>"`},
		{"number", `1.50`, `1.50`},
		{"boolean", `false`, `false`},
		{"null", `null`, `null`},
		{"absent", ``, `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			std, err := Body(Spec{Format: Standard, Attributes: attrs, Fields: fields}, testEvent(tc.data), testTime)
			if err != nil {
				t.Fatalf("Body standard: %v", err)
			}
			want := `{"id":"evt-1","type":"project.created","subject":"P-1001","timestamp":` + testStamp + `,"data":` + tc.want + `}`
			if string(std) != want {
				t.Errorf("standard\n got %s\nwant %s", std, want)
			}
			flat, err := Body(Spec{Format: Flat, Attributes: attrs, Fields: fields}, testEvent(tc.data), testTime)
			if err != nil {
				t.Fatalf("Body flat: %v", err)
			}
			want = `{"data":` + tc.want + `,"mandant":"7"}`
			if string(flat) != want {
				t.Errorf("flat\n got %s\nwant %s", flat, want)
			}
			flat, err = Body(Spec{Format: Flat, Attributes: []Attr{{Name: "data", Value: "d"}}}, testEvent(tc.data), testTime)
			if err != nil {
				t.Fatalf("Body flat: %v", err)
			}
			if want := `{"data":"d"}`; string(flat) != want {
				t.Errorf("flat with an attribute named data\n got %s\nwant %s", flat, want)
			}
		})
	}
}

func TestBodyStrings(t *testing.T) {
	e := event.Event{ID: `id "1" <&>`, Type: "a.b", Subject: "Müller\n\u2028", Data: json.RawMessage(`{}`)}
	got, err := Body(Spec{Format: Standard}, e, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"id \"1\" <&>","type":"a.b","subject":"Müller\n\u2028","timestamp":"2024-01-02T03:04:05Z","data":{}}`
	if string(got) != want {
		t.Errorf("Body\n got %s\nwant %s", got, want)
	}
	got, err = Body(Spec{Format: Flat, Attributes: []Attr{{Name: "a\"b", Value: "\t\x01é"}}}, e, testTime)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a\"b":"\t\u0001é"}`; string(got) != want {
		t.Errorf("Body\n got %s\nwant %s", got, want)
	}
}

func TestBodyErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		data string
		want string
	}{
		{"invalid data", Spec{Format: Standard}, `{"a":}`, "event evt-1: data: is not valid JSON"},
		{"invalid flat data", Spec{Format: Flat}, `[1,`, "event evt-1: data: is not valid JSON"},
		{"trailing data", Spec{Format: Flat}, `{} {}`, "is not valid JSON"},
		{"unknown format", Spec{Format: "xml"}, `{}`, `unknown body format "xml"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Body(tc.spec, testEvent(tc.data), testTime)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %s, %v; want an error saying %q", got, err, tc.want)
			}
		})
	}
}

func TestDigest(t *testing.T) {
	e1 := testEvent(`{"nr":"P-1","betrag":1.50}`)
	e2 := testEvent(`[1]`)
	e2.ID, e2.Subject = "evt-2", "P-2"
	attrs := []Attr{{Name: "mandant", Value: "7"}}
	for _, tc := range []struct {
		name   string
		spec   Spec
		events []event.Event
		want   string
	}{
		{"none", Spec{Format: Standard}, nil, `[]`},
		{"none, flat", Spec{Format: Flat}, []event.Event{}, `[]`},
		{
			"standard", Spec{Format: Standard, Fields: []string{"betrag"}}, []event.Event{e1, e2},
			`[{"id":"evt-1","type":"project.created","subject":"P-1001","timestamp":` + testStamp + `,"data":{"betrag":1.50}},` +
				`{"id":"evt-2","type":"project.created","subject":"P-2","timestamp":` + testStamp + `,"data":[1]}]`,
		},
		{
			"flat", Spec{Format: Flat, Attributes: attrs}, []event.Event{e2, e1},
			`[{"data":[1],"mandant":"7"},{"nr":"P-1","betrag":1.50,"mandant":"7"}]`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Digest(tc.spec, tc.events, times(len(tc.events)))
			if err != nil {
				t.Fatalf("Digest: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("Digest\n got %s\nwant %s", got, tc.want)
			}
			// Each element is exactly what Body gives for that event.
			var elems []json.RawMessage
			if err := json.Unmarshal(got, &elems); err != nil {
				t.Fatalf("Digest is not a JSON array: %v", err)
			}
			for i, e := range tc.events {
				b, _ := Body(tc.spec, e, testTime)
				if string(elems[i]) != string(b) {
					t.Errorf("element %d is %s, Body gives %s", i, elems[i], b)
				}
			}
		})
	}

	if got, err := Digest(Spec{Format: "xml"}, nil, nil); err == nil {
		t.Errorf("Digest with an unknown format and no events: got %s, want an error", got)
	}
	bad := testEvent(`{`)
	bad.ID = "evt-bad"
	if got, err := Digest(Spec{}, []event.Event{e1, bad}, times(2)); err == nil || !strings.Contains(err.Error(), "evt-bad") {
		t.Errorf("Digest with bad data: got %s, %v; want an error naming evt-bad", got, err)
	}
}

// times is n times testTime, the stored times of a digest's events.
func times(n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = testTime
	}
	return out
}

// Data that is not JSON goes with its content type: text as the string
// "data", anything else base64-encoded as "data_base64", in both formats;
// Fields does not apply to it, and an attribute still wins a name clash.
func TestBodyNonJSONData(t *testing.T) {
	xml := testEvent(`"<rechnung nr=\"1\">Müller & Söhne</rechnung>"`)
	xml.DataContentType = "application/xml"
	pdf := testEvent("")
	pdf.DataContentType, pdf.Binary = "application/pdf", []byte("%PDF-1.4\n")
	untyped := testEvent("")
	untyped.Binary = []byte{0, 0xff}
	fields := []string{"data"}
	for _, tc := range []struct {
		name           string
		ev             event.Event
		standard, flat string
	}{
		{"text", xml,
			`,"datacontenttype":"application/xml","data":"<rechnung nr=\"1\">Müller & Söhne</rechnung>"}`,
			`{"datacontenttype":"application/xml","data":"<rechnung nr=\"1\">Müller & Söhne</rechnung>","mandant":"7"}`},
		{"bytes", pdf,
			`,"datacontenttype":"application/pdf","data_base64":"JVBERi0xLjQK"}`,
			`{"datacontenttype":"application/pdf","data_base64":"JVBERi0xLjQK","mandant":"7"}`},
		{"bytes of no type", untyped, `,"data_base64":"AP8="}`, `{"data_base64":"AP8=","mandant":"7"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			std, err := Body(Spec{Format: Standard, Fields: fields}, tc.ev, testTime)
			want := `{"id":"evt-1","type":"project.created","subject":"P-1001","timestamp":` + testStamp + tc.standard
			if err != nil || string(std) != want || !json.Valid(std) {
				t.Errorf("standard\n got %s (%v)\nwant %s", std, err, want)
			}
			flat, err := Body(Spec{Format: Flat, Fields: fields, Attributes: []Attr{{Name: "mandant", Value: "7"}}}, tc.ev, testTime)
			if err != nil || string(flat) != tc.flat || !json.Valid(flat) {
				t.Errorf("flat\n got %s (%v)\nwant %s", flat, err, tc.flat)
			}
		})
	}
	flat, err := Body(Spec{Format: Flat, Attributes: []Attr{{Name: "datacontenttype", Value: "x"}}}, pdf, testTime)
	if want := `{"data_base64":"JVBERi0xLjQK","datacontenttype":"x"}`; err != nil || string(flat) != want {
		t.Errorf("flat with an attribute named datacontenttype\n got %s (%v)\nwant %s", flat, err, want)
	}
}

// The standard body's timestamp is the event's time, in UTC, and the time
// given (when it was stored) only for an event without one.
func TestBodyTimestamp(t *testing.T) {
	e := testEvent(`{}`)
	e.Time = "2023-12-24T18:00:00.25+01:00"
	got, err := Body(Spec{Format: Standard}, e, testTime)
	want := `{"id":"evt-1","type":"project.created","subject":"P-1001","timestamp":"2023-12-24T17:00:00.25Z","data":{}}`
	if err != nil || string(got) != want {
		t.Errorf("with the event's time\n got %s (%v)\nwant %s", got, err, want)
	}
	digest, err := Digest(Spec{Format: Standard}, []event.Event{e, testEvent(`{}`)}, times(2))
	want = `[` + want + `,{"id":"evt-1","type":"project.created","subject":"P-1001","timestamp":` + testStamp + `,"data":{}}]`
	if err != nil || string(digest) != want {
		t.Errorf("digest\n got %s (%v)\nwant %s", digest, err, want)
	}
}
