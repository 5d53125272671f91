package payload

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Header is a custom HTTP header a subscription sends with each request, in
// the Scopevisio style; receivers typically want an API key this way.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// FieldError is a refused header or attribute: its index in the list, the
// part at fault ("name" or "value") and why.
type FieldError struct {
	Index   int
	Field   string
	Message string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("entry %d: %s %s", e.Index, e.Field, e.Message)
}

// Limits on custom headers and attributes. They bound what one subscription
// stores and what each request carries. They do not guarantee that every
// URL fits every server: 50 long attributes exceed nginx's default 8 KiB
// request line.
const (
	MaxHeaders        = 20
	MaxHeaderName     = 64
	MaxHeaderValue    = 1024 // bytes
	MaxAttributes     = 50
	MaxAttributeName  = 64   // characters
	MaxAttributeValue = 1024 // bytes
)

// reservedHeaders are set by Kurier itself (a second value would confuse
// the receiver or break the signature) or are hop-by-hop headers, which
// describe one connection and are not the sender's to choose.
var reservedHeaders = map[string]string{
	"content-type":        "is set by Kurier",
	"content-length":      "is set by Kurier",
	"user-agent":          "is set by Kurier",
	"host":                "is set by Kurier",
	"webhook-id":          "is set by Kurier",
	"webhook-timestamp":   "is set by Kurier",
	"webhook-signature":   "is set by Kurier",
	"connection":          "is a hop-by-hop header",
	"keep-alive":          "is a hop-by-hop header",
	"proxy-authenticate":  "is a hop-by-hop header",
	"proxy-authorization": "is a hop-by-hop header",
	"proxy-connection":    "is a hop-by-hop header",
	"te":                  "is a hop-by-hop header",
	"trailer":             "is a hop-by-hop header",
	"transfer-encoding":   "is a hop-by-hop header",
	"upgrade":             "is a hop-by-hop header",
}

// CheckHeaders validates a subscription's custom headers. The error is a
// *FieldError naming the first header at fault.
func CheckHeaders(h []Header) error {
	if len(h) > MaxHeaders {
		return &FieldError{Index: MaxHeaders, Field: "name", Message: fmt.Sprintf("is one header too many: at most %d are allowed", MaxHeaders)}
	}
	seen := make(map[string]bool, len(h))
	for i, hd := range h {
		fail := func(field, format string, args ...any) error {
			return &FieldError{Index: i, Field: field, Message: fmt.Sprintf(format, args...)}
		}
		switch {
		case hd.Name == "":
			return fail("name", "is empty")
		case len(hd.Name) > MaxHeaderName:
			return fail("name", "is %d characters long, at most %d are allowed", len(hd.Name), MaxHeaderName)
		case !isToken(hd.Name):
			return fail("name", "%q is not a valid HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)", hd.Name)
		}
		lower := strings.ToLower(hd.Name)
		if why, ok := reservedHeaders[lower]; ok {
			return fail("name", "%s %s", hd.Name, why)
		}
		if seen[lower] {
			return fail("name", "%s is given twice", hd.Name)
		}
		seen[lower] = true
		if len(hd.Value) > MaxHeaderValue {
			return fail("value", "is %d bytes long, at most %d are allowed", len(hd.Value), MaxHeaderValue)
		}
		// CR and LF would let a value start a header of its own (header
		// injection); other controls are refused by servers or mangled by
		// proxies. HTAB is ordinary whitespace in field values.
		if i := strings.IndexFunc(hd.Value, func(r rune) bool { return r != '\t' && (r < 0x20 || r == 0x7f) }); i >= 0 {
			return fail("value", "holds the control character %U at byte %d", hd.Value[i], i)
		}
	}
	return nil
}

// isToken tells whether s is an RFC 9110 token (one or more tchar).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// CheckAttributes validates a subscription's attributes. The error is a
// *FieldError naming the first attribute at fault.
//
// Beyond the limits, it refuses names that would collide with the GET part
// Kurier writes (event, table, conditions) and names given twice. Both
// comparisons ignore case because some receivers (ASP.NET, for one) read
// query names case-insensitively, and a flat body holding one name twice
// leaves it to the receiver's JSON parser which value counts.
func CheckAttributes(a []Attr) error {
	if len(a) > MaxAttributes {
		return &FieldError{Index: MaxAttributes, Field: "name", Message: fmt.Sprintf("is one attribute too many: at most %d are allowed", MaxAttributes)}
	}
	seen := make(map[string]bool, len(a))
	for i, at := range a {
		fail := func(field, format string, args ...any) error {
			return &FieldError{Index: i, Field: field, Message: fmt.Sprintf(format, args...)}
		}
		switch n := utf8.RuneCountInString(at.Name); {
		case at.Name == "":
			return fail("name", "is empty")
		case !utf8.ValidString(at.Name):
			return fail("name", "is not valid UTF-8")
		case n > MaxAttributeName:
			return fail("name", "is %d characters long, at most %d are allowed", n, MaxAttributeName)
		case hasControl(at.Name):
			return fail("name", "holds a control character")
		}
		lower := strings.ToLower(at.Name)
		switch {
		case lower == "event" || lower == "table" || lower == "conditions":
			return fail("name", "%s is reserved: Kurier sends it in the GET part itself", at.Name)
		case seen[lower]:
			return fail("name", "%s is given twice", at.Name)
		}
		seen[lower] = true
		switch {
		case len(at.Value) > MaxAttributeValue:
			return fail("value", "is %d bytes long, at most %d are allowed", len(at.Value), MaxAttributeValue)
		case !utf8.ValidString(at.Value):
			return fail("value", "is not valid UTF-8")
		case hasControl(at.Value):
			return fail("value", "holds a control character")
		}
	}
	return nil
}

// hasControl reports C0 and C1 controls and DEL: in a URL they are escaped,
// but in logs and the "Muster-URL" preview they would hide or rewrite text.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}
