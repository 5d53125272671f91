package payload

import (
	"bytes"
	"encoding/json"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"kurier.dev/services/internal/event"
)

// pairs decodes a raw query into its name/value pairs in order, as
// url.ParseQuery would but keeping the order, which ParseQuery's map loses.
func pairs(raw string) ([][2]string, bool) {
	var out [][2]string
	for seg := range strings.SplitSeq(raw, "&") {
		if seg == "" {
			continue
		}
		if strings.Contains(seg, ";") {
			return nil, false
		}
		k, v, _ := strings.Cut(seg, "=")
		k, err1 := url.QueryUnescape(k)
		v, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return nil, false
		}
		out = append(out, [2]string{k, v})
	}
	return out, true
}

// FuzzRequestURL: RequestURL and MaskedURL never panic and agree on which
// URLs they refuse. For an accepted URL the result parses with net/url,
// keeps scheme, host and path, has no fragment, holds no byte that cannot
// go into an HTTP request line, and its query is the original query's
// pairs followed by event, table, conditions and the attributes, each
// exactly once with its value (checked both in order and with
// url.ParseQuery). MaskedURL differs only in the secret values.
func FuzzRequestURL(f *testing.F) {
	f.Add("https://erp.example.com/hook?a=1&b=2#f", "Auftrag", "Status = 'offen' & x", "project.created", "mandant", "7", false, "token", "s3 cr&t=ü+", true)
	f.Add("http://[::1]:8080/a%2Fb/c d?q=a b&n=ü&", "", "", "a.b", "", "", false, "a&b=c", "100%", false)
	f.Add("HTTPS://user:pw@Example.COM?", "T", "", "a.b", "event", "dup", true, "event", "dup2", false)
	f.Add("http://x/?a=%zz;b", "T", "c", "a.b", "k", "v", false, "k", "w", true)
	f.Add("ftp://x/", "", "", "", "", "", false, "", "", false)
	f.Add("/relative?a=1", "", "", "", "", "", false, "", "", false)
	f.Fuzz(func(t *testing.T, raw, table, conditions, typ, n1, v1 string, s1 bool, n2, v2 string, s2 bool) {
		s := Spec{URL: raw, Table: table, Conditions: conditions, Attributes: []Attr{
			{Name: n1, Value: v1, Secret: s1}, {Name: n2, Value: v2, Secret: s2},
		}}
		got, err := RequestURL(s, typ)
		gotMasked, errMasked := MaskedURL(s, typ)
		if (err == nil) != (errMasked == nil) {
			t.Fatalf("RequestURL error %v, MaskedURL error %v", err, errMasked)
		}
		if err != nil {
			return
		}
		orig, perr := url.Parse(raw)
		if perr != nil {
			t.Fatalf("accepted %q, which url.Parse refuses: %v", raw, perr)
		}
		want := [][2]string{{"event", typ}, {"table", table}, {"conditions", conditions}, {n1, v1}, {n2, v2}}
		wantMasked := slices.Clone(want)
		for i, a := range s.Attributes {
			if a.Secret {
				wantMasked[3+i][1] = masked
			}
		}
		check := func(name, out string, want [][2]string) {
			if i := strings.IndexFunc(out, func(r rune) bool { return r <= ' ' || r >= 0x7f }); i >= 0 {
				t.Fatalf("%s %q holds a byte that cannot be sent at %d", name, out, i)
			}
			if strings.Contains(out, "#") {
				t.Fatalf("%s %q has a fragment", name, out)
			}
			u, err := url.Parse(out)
			if err != nil {
				t.Fatalf("%s %q does not parse: %v", name, out, err)
			}
			if u.Scheme != orig.Scheme || u.Host != orig.Host || u.Path != orig.Path {
				t.Fatalf("%s %q: scheme, host or path differ from %q", name, out, raw)
			}
			origQuery, err := url.ParseQuery(orig.RawQuery)
			if err != nil {
				// Only the appended part can be checked: it is the
				// last len(want) segments, as its names and values
				// have any "&" escaped.
				segs := strings.Split(u.RawQuery, "&")
				if len(segs) < len(want) {
					t.Fatalf("%s %q: query has %d pairs, want at least %d", name, out, len(segs), len(want))
				}
				got, ok := pairs(strings.Join(segs[len(segs)-len(want):], "&"))
				if !ok || !reflect.DeepEqual(got, want) {
					t.Fatalf("%s %q: query ends with %q, want %q", name, out, got, want)
				}
				return
			}
			origPairs, ok := pairs(orig.RawQuery)
			if !ok {
				t.Fatalf("pairs refuses %q, which url.ParseQuery accepts", orig.RawQuery)
			}
			got, ok := pairs(u.RawQuery)
			if !ok || !reflect.DeepEqual(got, append(origPairs, want...)) {
				t.Fatalf("%s %q: query pairs %q, want %q then %q", name, out, got, origPairs, want)
			}
			q, err := url.ParseQuery(u.RawQuery)
			if err != nil {
				t.Fatalf("%s %q: url.ParseQuery: %v", name, out, err)
			}
			for _, p := range want {
				wantVals := origQuery[p[0]]
				for _, w := range want {
					if w[0] == p[0] {
						wantVals = append(slices.Clone(wantVals), w[1])
					}
				}
				if !slices.Equal(q[p[0]], wantVals) {
					t.Fatalf("%s %q: %q has values %q, want %q", name, out, p[0], q[p[0]], wantVals)
				}
			}
		}
		check("RequestURL", got, want)
		check("MaskedURL", gotMasked, wantMasked)
	})
}

// FuzzBody: Body and Digest never panic; for valid JSON data they succeed
// with valid JSON that holds, member for member and number for number
// (compared as json.Number text), what the format promises; for invalid
// data they fail.
func FuzzBody(f *testing.F) {
	f.Add([]byte(`{"nr":"P-1","betrag":1.50,"pos":[1,2.0]}`), true, "betrag,nr", "mandant", "7")
	f.Add([]byte(` {"a":1,"a":{"b":[null,true]}} `), false, "", "a", "x")
	f.Add([]byte(`[1e400, "\u00fc", -0.0]`), true, "a", "data", "")
	f.Add([]byte(`"<&>"`), false, "", "", "")
	f.Add([]byte(`null`), true, "", "k", "v")
	f.Add([]byte(``), true, "", "k", "v")
	f.Add([]byte(`{"\u00fc":1,"ü":2}`), true, "ü", "\u00fc", "\xff")
	f.Add([]byte(`{"a":}`), false, "", "", "")
	f.Add([]byte("\u00a0{}"), true, "", "", "")
	f.Fuzz(func(t *testing.T, data []byte, flat bool, fields, name, value string) {
		s := Spec{Format: Standard, Attributes: []Attr{{Name: name, Value: value}}}
		if flat {
			s.Format = Flat
		}
		if fields != "" {
			s.Fields = strings.Split(fields, ",")
		}
		e := event.Event{ID: "evt-1", Type: "a.b", Subject: "d", Data: data}
		out, err := Body(s, e, testTime)
		digest, derr := Digest(s, []event.Event{e, e}, times(2))
		if (err == nil) != (derr == nil) {
			t.Fatalf("Body error %v, Digest error %v", err, derr)
		}
		trimmed := bytes.Trim(data, " \t\r\n")
		valid := len(trimmed) == 0 || json.Valid(data)
		if !valid {
			if err == nil {
				t.Fatalf("Body accepted invalid data %q: %s", data, out)
			}
			return
		}
		if err != nil {
			t.Fatalf("Body refused valid data %q: %v", data, err)
		}
		if !json.Valid(out) {
			t.Fatalf("Body %s is not valid JSON", out)
		}
		if want := "[" + string(out) + "," + string(out) + "]"; string(digest) != want {
			t.Fatalf("Digest %s, want %s", digest, want)
		}
		if !utf8.Valid(data) || !utf8.ValidString(name) || !utf8.ValidString(value) {
			return // the JSON encoder replaces invalid UTF-8, so values differ
		}

		decode := func(b []byte) any {
			d := json.NewDecoder(bytes.NewReader(b))
			d.UseNumber()
			var v any
			if err := d.Decode(&v); err != nil {
				t.Fatalf("decode %s: %v", b, err)
			}
			return v
		}
		var dataVal any
		if len(trimmed) > 0 {
			dataVal = decode(data)
		}
		if obj, ok := dataVal.(map[string]any); ok && len(s.Fields) > 0 {
			for k := range obj {
				if !slices.Contains(s.Fields, k) {
					delete(obj, k)
				}
			}
		}
		var want map[string]any
		if s.Format == Flat {
			want, _ = dataVal.(map[string]any)
			if want == nil {
				want = map[string]any{"data": dataVal}
			}
			want[name] = value
		} else {
			want = map[string]any{"id": "evt-1", "type": "a.b", "subject": "d", "timestamp": "2024-05-06T05:08:09.5Z", "data": dataVal}
		}
		if got := decode(out); !reflect.DeepEqual(got, any(want)) {
			t.Fatalf("Body of %q is %s, which decodes to %#v; want %#v", data, out, got, want)
		}
	})
}
