package event_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"kurier.dev/services/internal/event"
)

// The fuzz targets check one property: parsing never panics, and whatever
// is accepted can be stored (MarshalJSON) and read back by Decode as the
// same event. Seed corpora are in testdata/fuzz/<FuzzName>/.

var fuzzLimits = event.Limits{MaxData: 1024}

const fuzzMaxBatch = 4

// checkRoundTrip stores ev with MarshalJSON and decodes it again.
func checkRoundTrip(t *testing.T, ev event.Event) {
	t.Helper()
	out, err := ev.MarshalJSON()
	if err != nil {
		t.Fatalf("accepted event does not marshal: %v (event %+v)", err, ev)
	}
	if !json.Valid(out) {
		t.Fatalf("MarshalJSON output is not valid JSON: %q", out)
	}
	back, err := event.Decode(out, fuzzLimits)
	if err != nil {
		t.Fatalf("Decode of MarshalJSON output %q: %v", out, err)
	}
	if d := diffEvents(t, back, ev); d != "" {
		t.Fatalf("round trip through %q changed the event: %s", out, d)
	}
}

// checkErr: a rejection is always an *event.Error.
func checkErr(t *testing.T, err error, wantIndex bool) {
	t.Helper()
	var e *event.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %q is not an *event.Error", err, err)
	}
	if !wantIndex && e.Index != -1 {
		t.Fatalf("Index = %d outside a batch: %v", e.Index, err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"specversion":"1.0","id":"1","source":"/s","type":"invoice.changed","subject":"d"}`,
		`{"specversion":"1.0","id":"evt-2","source":"https://erp.example.com/orgs/42","type":"stock.available.changed","subject":"ART-1","time":"2024-05-06T07:08:09.5+02:00","datacontenttype":"application/json","dataschema":"https://schemas.example.com/v1.json","comment":"a b","count":42,"urgent":true,"data":{"amount":12.5,"lines":[1,2]}}`,
		`{"specversion":"1.0","id":"1","source":"/s","type":"a.b","subject":"d","data":null}`,
		`{"specversion":"1.0","id":"\u00e9","source":"/s","type":"a.b","subject":"x\u2028y","ext":"\u003c","data":"\ud800"}`,
		`{"specversion":"1.0","id":"1","source":"/s","type":"a.b","subject":"d","data": [ 1 , {"a" : null} ] }`,
		`{"specversion":"0.3","id":"1"}`,
		`{"specversion":"1.0","id":"1","source":"/s","type":"a.b","subject":"d","data_base64":"aGk="}`,
		`[]`,
		`null`,
		"{\"id\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := event.Decode(b, fuzzLimits)
		if err != nil {
			checkErr(t, err, false)
			return
		}
		checkRoundTrip(t, ev)
	})
}

func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{
		`[{"specversion":"1.0","id":"1","source":"/s","type":"invoice.changed","subject":"d"}]`,
		`[{"specversion":"1.0","id":"1","source":"/s","type":"a.b","subject":"d","data":{"x":1}},{"specversion":"1.0","id":"2","source":"/s","type":"a.b.c","subject":"e","n":1.5,"data":[]}]`,
		`[{"specversion":"1.0","id":"1","source":"/s","type":"a.b","subject":"d"},{"specversion":"1.0","id":"2","source":"/s","type":"a.b","subject":"d"},{"specversion":"1.0","id":"3","source":"/s","type":"a.b"}]`,
		`[]`,
		`[null]`,
		`{}`,
		`[1,2,3,4,5]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := event.DecodeBatch(b, fuzzMaxBatch, fuzzLimits)
		if err != nil {
			checkErr(t, err, true)
			return
		}
		if len(events) == 0 || len(events) > fuzzMaxBatch {
			t.Fatalf("accepted a batch of %d events, max %d", len(events), fuzzMaxBatch)
		}
		for _, ev := range events {
			checkRoundTrip(t, ev)
		}
	})
}

// parseHeaders reads "Name: value" lines into a header, the way net/http
// would receive them (names canonicalised, repeated names kept in order).
func parseHeaders(s string) http.Header {
	h := http.Header{}
	for _, line := range strings.Split(s, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		h.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	return h
}

func FuzzFromBinary(f *testing.F) {
	base := "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: invoice.changed\nce-subject: d\n"
	for _, s := range []struct{ headers, body string }{
		{base, ""},
		{base + "Content-Type: application/json\nce-time: 2024-05-06T07:08:09Z\nce-dataschema: https://x/y.json\nce-comment: a%20b", `{"amount": 12.5}`},
		{base + "ce-count: 42\nce-note: %22q%22%3C", `[1, 2]`},
		{base + "Content-Type: application/cloudevents+json; charset=utf-8", "  \n"},
		{base + "ce-datacontenttype: application/json", `{}`},
		{"ce-id: 1\nce-source: /s\nce-type: a.b\nce-subject: d", ``},
		{base, `not json`},
		{base + "Content-Type: application/xml", `<rechnung nr="1">Müller &amp; Söhne</rechnung>`},
		{base + "Content-Type: text/csv; charset=iso-8859-1", "M\xfcller;1"},
		{base + "Content-Type: application/octet-stream", "\x00\x01"},
	} {
		f.Add(s.headers, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, headers string, body []byte) {
		ev, err := event.FromBinary(parseHeaders(headers), body, fuzzLimits)
		if err != nil {
			checkErr(t, err, false)
			return
		}
		checkRoundTrip(t, ev)
	})
}
