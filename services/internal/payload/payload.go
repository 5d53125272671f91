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
	Name   string `json:"name"`
	Value  string `json:"value"`
	Secret bool   `json:"secret,omitempty"`
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
	// Format is Standard when empty: a subscription that never chose a
	// format still gets a body, the one that names the event.
	Format Format
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
	// url.UserPassword would escape the mask to %2A%2A%2A, so the user info
	// is put back into the finished URL by hand.
	var maskedUser string
	if _, ok := u.User.Password(); ok && mask {
		maskedUser = url.User(u.User.Username()).String() + ":" + masked + "@"
		u.User = nil
	}
	// A raw path holding bytes that may not appear in a URL (a space, say)
	// makes url.URL drop it and escape the decoded path instead, turning
	// %2F into a slash: escape those bytes so that the raw path is used.
	if u.RawPath != "" {
		u.RawPath = escapeBytes(u.RawPath, pathEscaped)
	}
	var q strings.Builder
	q.WriteString(escapeBytes(u.RawQuery, queryEscaped))
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
	out := u.String()
	if maskedUser != "" {
		scheme, rest, _ := strings.Cut(out, "://")
		out = scheme + "://" + maskedUser + rest
	}
	return out, nil
}

// parseURL accepts absolute http and https URLs with a host: anything else
// could not be delivered to. Its errors leave the URL out, since it may hold
// a password or a token in its query and errors end up in logs.
func parseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("payload: the subscription has no URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("payload: the subscription URL does not parse: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("payload: the subscription URL's scheme %q is not http or https", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("payload: the subscription URL has no host")
	}
	return u, nil
}

// escapeBytes percent-encodes the bytes of a raw URL part that escaped
// tells to. url.Parse has already refused controls and malformed escapes.
func escapeBytes(raw string, escaped func(c byte) bool) string {
	i := 0
	for i < len(raw) && !escaped(raw[i]) {
		i++
	}
	if i == len(raw) {
		return raw
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.WriteString(raw[:i])
	for ; i < len(raw); i++ {
		if c := raw[i]; escaped(c) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// queryEscaped is the WHATWG URL standard's special-query percent-encode
// set: what browsers escape in a query. "#" cannot occur, as it starts the
// fragment.
func queryEscaped(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\''
}

// pathEscaped is every byte url.URL does not accept in a raw path, so that
// it keeps the raw path rather than re-escaping the decoded one.
func pathEscaped(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return false
	}
	return strings.IndexByte("-._~$&+,/:;=@!'()*[]%", c) < 0
}
