package ingest

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/web"
)

// FuzzFeedQuery: any change-feed query is taken or refused with a 400
// naming a parameter, a cursor is read back as the sequence it was made
// from, and a feed key never gains a subject token from the system name.
func FuzzFeedQuery(f *testing.F) {
	for _, s := range []string{
		"system=erp&type=invoice.changed",
		"system=erp&type=3&cursor=c42&limit=10",
		"system=erp&type=invoice.changed&cursor=",
		"system=a.b*>&type=invoice.changed&cursor=c18446744073709551615",
		"system=%00&type=x&cursor=c99999999999999999999",
		"system=erp&type=invoice.changed&cursor=c-1&limit=0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/v1/changes", nil)
		r.URL.RawQuery = raw
		fq, err := parseFeedQuery(r, "acme")
		if err != nil {
			we, ok := err.(*web.Error)
			if !ok || we.Status != 400 || we.Field == "" {
				t.Fatalf("%q: %v is not a 400 naming a parameter", raw, err)
			}
			return
		}
		if fq.limit < 1 || fq.limit > defaultChanges {
			t.Fatalf("%q: limit %d", raw, fq.limit)
		}
		if fq.withCursor && fq.cursor != 0 {
			if got, ok := decodeCursor(encodeCursor(fq.cursor)); !ok || got != fq.cursor {
				t.Fatalf("cursor %d reads back as %d %v", fq.cursor, got, ok)
			}
		}
		if k := bus.FeedKey(fq.org, fq.system, fq.typ); strings.ContainsAny(k, "*> \t\r\n\x00") || strings.Count(k, ".") != 2+strings.Count(fq.typ, ".") {
			t.Fatalf("%q: feed key %q is not org.system.type", raw, k)
		}
		if q, _ := url.ParseQuery(raw); q.Get("system") != fq.system {
			t.Fatalf("%q: system %q", raw, fq.system)
		}
	})
}
