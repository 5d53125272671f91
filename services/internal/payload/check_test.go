package payload

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// wantFieldErr checks that err is a *FieldError at index i and field f whose
// message contains msg.
func wantFieldErr(t *testing.T, err error, i int, f, msg string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %T %v is not a *FieldError", err, err)
	}
	if fe.Index != i || fe.Field != f || !strings.Contains(fe.Message, msg) {
		t.Errorf("got %+v; want index %d, field %q, message containing %q", *fe, i, f, msg)
	}
	if !strings.HasPrefix(fe.Error(), fmt.Sprintf("entry %d: %s ", i, f)) {
		t.Errorf("Error() = %q", fe.Error())
	}
}

func headers(n int) []Header {
	h := make([]Header, n)
	for i := range h {
		h[i] = Header{Name: fmt.Sprintf("X-H%d", i), Value: "v"}
	}
	return h
}

func TestCheckHeadersAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    []Header
	}{
		{"none", nil},
		{"the most", headers(MaxHeaders)},
		{"all tchars", []Header{{Name: "!#$%&'*+-.^_`|~09azAZ", Value: "v"}}},
		{"longest name", []Header{{Name: strings.Repeat("n", MaxHeaderName), Value: "v"}}},
		{"longest value", []Header{{Name: "X-A", Value: strings.Repeat("v", MaxHeaderValue)}}},
		{"empty value", []Header{{Name: "X-A"}}},
		{"tab, spaces and non-ASCII in value", []Header{{Name: "Authorization", Value: "Bearer\t a b ü"}}},
		{"names that only start like reserved ones", []Header{{Name: "Content-Type-X", Value: "v"}, {Name: "X-Webhook-Id", Value: "v"}, {Name: "TEX", Value: "v"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckHeaders(tc.h); err != nil {
				t.Errorf("CheckHeaders: %v", err)
			}
		})
	}
}

func TestCheckHeadersRefuses(t *testing.T) {
	type tcase struct {
		name  string
		h     []Header
		index int
		field string
		msg   string
	}
	ok := Header{Name: "X-Ok", Value: "v"}
	cases := []tcase{
		{"too many", headers(MaxHeaders + 1), MaxHeaders, "name", "at most 20"},
		{"far too many", headers(100), MaxHeaders, "name", "at most 20"},
		{"empty name", []Header{ok, {Value: "v"}}, 1, "name", "is empty"},
		{"name too long", []Header{{Name: strings.Repeat("n", MaxHeaderName+1)}}, 0, "name", "at most 64"},
		{"space in name", []Header{{Name: "X Api"}}, 0, "name", "not a valid HTTP header name"},
		{"colon in name", []Header{{Name: "X-Api:"}}, 0, "name", "not a valid HTTP header name"},
		{"separator in name", []Header{{Name: "X(Api)"}}, 0, "name", "not a valid HTTP header name"},
		{"non-ASCII name", []Header{{Name: "X-Schlüssel"}}, 0, "name", "not a valid HTTP header name"},
		{"CR in name", []Header{{Name: "X-A\r"}}, 0, "name", "not a valid HTTP header name"},
		{"duplicate", []Header{{Name: "X-Api-Key", Value: "a"}, ok, {Name: "x-api-KEY", Value: "b"}}, 2, "name", "given twice"},
		{"value too long", []Header{ok, {Name: "X-A", Value: strings.Repeat("v", MaxHeaderValue+1)}}, 1, "value", "at most 1024"},
		{"CR in value", []Header{{Name: "X-A", Value: "a\rb"}}, 0, "value", "control character U+000D"},
		{"LF in value", []Header{{Name: "X-A", Value: "a\nX-Evil: 1"}}, 0, "value", "control character U+000A"},
		{"CRLF in value", []Header{{Name: "X-A", Value: "a\r\n"}}, 0, "value", "control character U+000D"},
		{"NUL in value", []Header{{Name: "X-A", Value: "a\x00"}}, 0, "value", "control character U+0000"},
		{"other control in value", []Header{{Name: "X-A", Value: "\x1b[31m"}}, 0, "value", "control character U+001B"},
		{"DEL in value", []Header{{Name: "X-A", Value: "a\x7f"}}, 0, "value", "control character U+007F"},
	}
	for _, name := range []string{"Content-Type", "content-length", "USER-AGENT", "Host", "webhook-id", "Webhook-Timestamp", "WEBHOOK-SIGNATURE"} {
		cases = append(cases, tcase{"set by Kurier " + name, []Header{ok, {Name: name, Value: "v"}}, 1, "name", "is set by Kurier"})
	}
	for _, name := range []string{"Connection", "keep-alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer", "transfer-encoding", "Upgrade"} {
		cases = append(cases, tcase{"hop-by-hop " + name, []Header{ok, {Name: name, Value: "v"}}, 1, "name", "hop-by-hop"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantFieldErr(t, CheckHeaders(tc.h), tc.index, tc.field, tc.msg)
		})
	}
}

func attrs(n int) []Attr {
	a := make([]Attr, n)
	for i := range a {
		a[i] = Attr{Name: fmt.Sprintf("a%d", i), Value: "v"}
	}
	return a
}

func TestCheckAttributesAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    []Attr
	}{
		{"none", nil},
		{"the most", attrs(MaxAttributes)},
		{"longest name in characters", []Attr{{Name: strings.Repeat("ü", MaxAttributeName), Value: "v"}}},
		{"longest value", []Attr{{Name: "a", Value: strings.Repeat("v", MaxAttributeValue)}}},
		{"empty value", []Attr{{Name: "a"}}},
		{"query characters", []Attr{{Name: "a b&c=d", Value: "x y&z=1+2%ü#", Secret: true}}},
		{"names containing reserved ones", []Attr{{Name: "events"}, {Name: "x_table"}, {Name: "conditions2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckAttributes(tc.a); err != nil {
				t.Errorf("CheckAttributes: %v", err)
			}
		})
	}
}

func TestCheckAttributesRefuses(t *testing.T) {
	ok := Attr{Name: "ok", Value: "v"}
	for _, tc := range []struct {
		name  string
		a     []Attr
		index int
		field string
		msg   string
	}{
		{"too many", attrs(MaxAttributes + 1), MaxAttributes, "name", "at most 50"},
		{"empty name", []Attr{ok, {Value: "v"}}, 1, "name", "is empty"},
		{"name too long", []Attr{{Name: strings.Repeat("ü", MaxAttributeName+1)}}, 0, "name", "65 characters long, at most 64"},
		{"name not UTF-8", []Attr{{Name: "a\xff"}}, 0, "name", "not valid UTF-8"},
		{"LF in name", []Attr{{Name: "a\nb"}}, 0, "name", "control character"},
		{"tab in name", []Attr{{Name: "a\tb"}}, 0, "name", "control character"},
		{"DEL in name", []Attr{{Name: "a\x7f"}}, 0, "name", "control character"},
		{"C1 control in name", []Attr{{Name: "a\u0085"}}, 0, "name", "control character"},
		{"event", []Attr{ok, {Name: "event", Value: "x"}}, 1, "name", "reserved"},
		{"table", []Attr{{Name: "table"}}, 0, "name", "reserved"},
		{"conditions", []Attr{{Name: "conditions"}}, 0, "name", "reserved"},
		{"Event in another case", []Attr{{Name: "Event"}}, 0, "name", "reserved"},
		{"duplicate", []Attr{{Name: "mandant"}, ok, {Name: "mandant"}}, 2, "name", "given twice"},
		{"duplicate in another case", []Attr{{Name: "Mandant"}, {Name: "mandant"}}, 1, "name", "given twice"},
		{"value too long", []Attr{ok, {Name: "a", Value: strings.Repeat("v", MaxAttributeValue+1)}}, 1, "value", "at most 1024"},
		{"value too long in bytes", []Attr{{Name: "a", Value: strings.Repeat("ü", MaxAttributeValue/2+1)}}, 0, "value", "1026 bytes"},
		{"value not UTF-8", []Attr{{Name: "a", Value: "\xc3"}}, 0, "value", "not valid UTF-8"},
		{"NUL in value", []Attr{{Name: "a", Value: "\x00"}}, 0, "value", "control character"},
		{"CR in value", []Attr{{Name: "a", Value: "a\r"}}, 0, "value", "control character"},
		{"tab in value", []Attr{{Name: "a", Value: "a\tb"}}, 0, "value", "control character"},
		{"C1 control in value", []Attr{{Name: "a", Value: "\u009b"}}, 0, "value", "control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantFieldErr(t, CheckAttributes(tc.a), tc.index, tc.field, tc.msg)
		})
	}
}
