// Package payload builds the requests of payload webhooks in the style of
// profacto and Scopevisio: a POST whose URL carries a "GET part" (event,
// table, conditions and the subscription's attributes) and whose JSON body
// carries the changed record.
//
// Receivers of this style are usually configured by hand from a preview of
// the URL (profacto's "Muster-URL"), so the URL and body must be exactly
// predictable: every function here is deterministic.
package payload

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Attr is a name/value pair passed in the query ("GET part"); Secret ones are
// masked in logs.
type Attr struct {
	Name, Value string
	Secret      bool
}

// Format is the shape of a delivery's JSON body.
type Format string

const (
	// Standard wraps the data with the event's id, type, subject and time.
	Standard Format = "standard"
	// Flat is profacto's shape: the record's fields and the attributes side
	// by side in one object.
	Flat Format = "flat"
)

// Spec is what a payload subscription says about its requests.
type Spec struct {
	URL, Table, Conditions string
	Attributes             []Attr
	Fields                 []string
	Format                 Format
}

// masked replaces secrets in URLs meant for logs.
const masked = "***"

// RequestURL is the exact URL a delivery of an event of type typ POSTs to
// (profacto's "Muster-URL"): the subscription URL with the GET part
//
//	event=<typ>&table=<table>&conditions=<conditions>&<name>=<value>…
//
// appended to the query it already has. Names and values are escaped as by
// url.QueryEscape. Table and conditions are sent even when empty because
// profacto always sends them and receivers written against profacto may
// expect them. The fragment is dropped: it is never sent over HTTP.
//
// The existing query keeps its pairs and their order, but bytes that may not
// appear raw in a URL (spaces, quotes, angle brackets, apostrophes and
// non-ASCII bytes, the set a browser escapes) are percent-encoded: Go's HTTP
// client would otherwise write them into the request line as they are, and
// a space there makes the request malformed. Percent-encoding them does not
// change what a query parser reads.
func RequestURL(s Spec, typ string) (string, error) {
	return requestURL(s, typ, false)
}

// MaskedURL is RequestURL with the values of Secret attributes, and the
// password of any user info in the subscription URL, replaced by "***", so
// that the URL can be logged.
func MaskedURL(s Spec, typ string) (string, error) {
	return requestURL(s, typ, true)
}

func requestURL(s Spec, typ string, mask bool) (string, error) {
	u, err := parseURL(s.URL)
	if err != nil {
		return "", err
	}
	if mask {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), masked)
		}
	}
	var q strings.Builder
	q.WriteString(escapeQuery(u.RawQuery))
	add := func(name, value string, raw bool) {
		// A query that already ends in "&" (or is empty) needs no separator;
		// adding one would leave an empty pair.
		if q.Len() > 0 && !strings.HasSuffix(q.String(), "&") {
			q.WriteByte('&')
		}
		q.WriteString(url.QueryEscape(name))
		q.WriteByte('=')
		if raw {
			q.WriteString(value)
		} else {
			q.WriteString(url.QueryEscape(value))
		}
	}
	add("event", typ, false)
	add("table", s.Table, false)
	add("conditions", s.Conditions, false)
	for _, a := range s.Attributes {
		if mask && a.Secret {
			// Unescaped so that logs show *** rather than %2A%2A%2A.
			add(a.Name, masked, true)
			continue
		}
		add(a.Name, a.Value, false)
	}
	u.RawQuery = q.String()
	u.ForceQuery = false
	u.Fragment, u.RawFragment = "", ""
	return u.String(), nil
}

// parseURL accepts absolute http and https URLs with a host: anything else
// could not be delivered to.
func parseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("payload: the subscription has no URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("payload: the subscription URL does not parse: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("payload: the subscription URL %q is not http or https", raw)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("payload: the subscription URL %q has no host", raw)
	}
	return u, nil
}

// escapeQuery percent-encodes the bytes of an existing raw query that the
// WHATWG URL standard's special-query percent-encode set covers. Controls
// are not among them because url.Parse has already refused them, and "#"
// cannot occur because it starts the fragment.
func escapeQuery(raw string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == ' ' || c == '"' || c == '#' || c == '<' || c == '>' || c == '\'' || c < 0x20 || c >= 0x7f:
			if b.Len() == 0 && i > 0 {
				b.WriteString(raw[:i])
			} else if b.Len() == 0 {
				b.Grow(len(raw) + 8)
			}
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		case b.Len() > 0:
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return raw
	}
	return b.String()
}
