// Package collmex reads Collmex API files, so that settings kept in Collmex
// import format can be brought over to Kurier unchanged. It understands the
// API_NOTIFICATION record type, Collmex's way of telling an external system
// by HTTP GET that data changed.
package collmex

import (
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Notification is one API_NOTIFICATION record.
type Notification struct {
	// Line is where the record starts, for messages that point back into
	// the file.
	Line   int
	System string
	// Event is the normalised event code "1".."9": kept as text because
	// Collmex names events by code, and normalised so "05" and "5" are the
	// same notification.
	Event string
	URL   string
	// Inactive is 0 (active), 1 (inactive) or 2 (delete).
	Inactive int
}

// LineError is a rejected record: its 1-based line number (the line the
// record starts on; for an unterminated quote, the line the quote opens on)
// and the field, one of "Satzart", "System", "Ereignis", "URL", "Inaktiv",
// or "record" for quoting and field-count problems. Field names are
// Collmex's own so that the message matches the Collmex documentation the
// file's author works from.
type LineError struct {
	Line    int
	Field   string
	Message string
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Message)
}

const (
	// RecordType is the Satzart of a notification record.
	RecordType = "API_NOTIFICATION"

	// MaxRecords bounds one file, so a mistaken or hostile upload cannot
	// make us hold an unbounded number of notifications.
	MaxRecords = 10000

	notificationFields = 5
	maxSystemLen       = 20
	maxURLLen          = 255
)

// ParseNotifications reads a file of API_NOTIFICATION records. It returns
// either every record or the first rejected one as a *LineError, never part
// of a file: applying half a file would leave settings nobody wrote.
func ParseNotifications(text string) ([]Notification, error) {
	s := newScanner(text, notificationFields)
	var out []Notification
	for s.more() {
		// Checked before splitting, so an oversized file is turned away
		// without reading the rest of it.
		if len(out) == MaxRecords {
			return nil, &LineError{Line: s.line, Field: "record",
				Message: fmt.Sprintf("more than %d records", MaxRecords)}
		}
		fields, line, err := s.next()
		if err != nil {
			return nil, err
		}
		n, err := notification(fields, line)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func notification(f []string, line int) (Notification, error) {
	// Omitted trailing fields read as empty, as Collmex allows.
	for len(f) < notificationFields {
		f = append(f, "")
	}
	reject := func(field, msg string) (Notification, error) {
		return Notification{}, &LineError{Line: line, Field: field, Message: msg}
	}
	if f[0] != RecordType {
		return reject("Satzart", fmt.Sprintf("must be %s, not %s", RecordType, short(f[0])))
	}
	system := f[1]
	if n := utf8.RuneCountInString(system); n < 1 || n > maxSystemLen {
		return reject("System", fmt.Sprintf("must be 1 to %d characters", maxSystemLen))
	}
	if !utf8.ValidString(system) || strings.IndexFunc(system, unicode.IsControl) >= 0 {
		return reject("System", "must be valid UTF-8 without control characters")
	}
	event, ok, empty := smallInt(f[2])
	if empty {
		return reject("Ereignis", "is required")
	}
	if !ok || event < 1 || event > 9 {
		return reject("Ereignis", "must be an integer from 1 to 9")
	}
	if f[3] == "" {
		return reject("URL", "is required")
	}
	if !validURL(f[3]) {
		return reject("URL", fmt.Sprintf("must be an http or https URL of at most %d characters", maxURLLen))
	}
	inactive, ok, empty := smallInt(f[4])
	if empty {
		inactive, ok = 0, true
	}
	if !ok || inactive > 2 {
		return reject("Inaktiv", "must be empty, 0 (active), 1 (inactive) or 2 (delete)")
	}
	return Notification{
		Line:     line,
		System:   system,
		Event:    string(rune('0' + event)),
		URL:      f[3],
		Inactive: inactive,
	}, nil
}

// smallInt reads a Collmex integer field that must hold a single digit once
// leading zeros are gone. Surrounding white space, line breaks included, is
// dropped because it cannot change which number is meant, and a quoted
// field may well span lines. Parsing digit by digit rather than with
// strconv keeps "+5" and "-0" out and cannot overflow on a long run of
// digits.
func smallInt(s string) (v int, ok, empty bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false, true
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false, false
		}
	}
	s = strings.TrimLeft(s, "0")
	switch len(s) {
	case 0:
		return 0, true, false
	case 1:
		return int(s[0] - '0'), true, false
	}
	return 0, false, false
}

func validURL(s string) bool {
	if utf8.RuneCountInString(s) > maxURLLen || !utf8.ValidString(s) {
		return false
	}
	// Collmex puts the URL into a GET request line as it stands, so
	// anything that would have to be escaped there is a mistake in the file.
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return false
	}
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	// Hostname, not Host: "http://:80" has a port but nowhere to send to.
	return (u.Scheme == "http" || u.Scheme == "https") && u.Hostname() != ""
}

// short quotes a value for a message, cut so one bad field cannot blow up
// the error text.
func short(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		return fmt.Sprintf("%q...", string(r[:max]))
	}
	return fmt.Sprintf("%q", s)
}
