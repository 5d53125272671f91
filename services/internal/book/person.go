// Package book is the address book: persons with the fields of the FE2
// sync API, kept per org in the persons bucket, and the one way they
// change: under the org's lock, journalled so that a change is made whole
// or not at all, with an event for every person it changes.
package book

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"unicode/utf8"
)

// Origin says how a person came into the book.
type Origin string

const (
	OriginSync   Origin = "sync"   // an address-book sync: later syncs change it
	OriginManual Origin = "manual" // by hand (admin CreatePerson): no sync touches it
)

// The aPagerProFieldMode values.
const (
	ModeLegacy = "LEGACY" // aPagerPro holds the address
	ModeToken  = "TOKEN"  // aPager PRO registers with a token Kurier makes
)

// Fields are a person's fields as the FE2 sync API names them.
type Fields struct {
	ExternalDbID       string   `json:"externalDbId"`
	FirstName          string   `json:"firstName"`
	LastName           string   `json:"lastName"`
	Note               string   `json:"note"`
	OSFunctions        []string `json:"osFunctions"`
	OSGroups           []string `json:"osGroups"`
	AlarmGroups        []string `json:"alarmGroups"`
	ISSI               string   `json:"issi"`
	XMPP               string   `json:"xmpp"`
	APagerPro          string   `json:"aPagerPro"`
	Email              string   `json:"email"`
	Mobil              string   `json:"mobil"`
	APagerProFieldMode string   `json:"aPagerProFieldMode"`
}

// Person is a person in the book: its fields and what Kurier keeps
// beside them. It is stored and sent in events in this JSON form.
type Person struct {
	Fields
	Origin  Origin `json:"origin"`
	Deleted bool   `json:"deleted"` // a sync no longer lists it and deleting is not allowed
	Token   string `json:"token,omitempty"`
}

// Equal tells whether two persons are the same in every field.
func (p *Person) Equal(q *Person) bool {
	a, b := p.Fields, q.Fields
	return a.ExternalDbID == b.ExternalDbID && a.FirstName == b.FirstName && a.LastName == b.LastName &&
		a.Note == b.Note && slices.Equal(a.OSFunctions, b.OSFunctions) && slices.Equal(a.OSGroups, b.OSGroups) &&
		slices.Equal(a.AlarmGroups, b.AlarmGroups) && a.ISSI == b.ISSI && a.XMPP == b.XMPP &&
		a.APagerPro == b.APagerPro && a.Email == b.Email && a.Mobil == b.Mobil &&
		a.APagerProFieldMode == b.APagerProFieldMode &&
		p.Origin == q.Origin && p.Deleted == q.Deleted && p.Token == q.Token
}

// NewPerson makes the person f describes with the given origin, keeping
// the token a previous version had: once made, a token never changes. A
// person in token mode without one gets one.
func NewPerson(f Fields, origin Origin, prev *Person) Person {
	p := Person{Fields: f, Origin: origin}
	if prev != nil {
		p.Token = prev.Token
	}
	if p.Token == "" && p.APagerProFieldMode == ModeToken {
		var b [16]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		p.Token = hex.EncodeToString(b[:])
	}
	return p
}

// FieldError names the field (by its FE2 name) that breaks a rule.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Bounds on the fields, which FE2 leaves open: generous for names and
// lists, and small enough that a person fits a message many times over.
const (
	MaxIDLen   = 256
	maxText    = 255
	maxNote    = 4096
	maxEntries = 100
)

// mobile is the only form FE2 takes phone numbers in: 0049 and digits.
var mobile = regexp.MustCompile(`^0049[1-9][0-9]{3,15}$`)

// Check checks the fields by the FE2 rules, and fills in what may be left
// out: empty lists and the legacy mode.
func (f *Fields) Check() *FieldError {
	if f.ExternalDbID == "" {
		return fieldErr("externalDbId", "is required")
	}
	if err := text("externalDbId", f.ExternalDbID, MaxIDLen, false); err != nil {
		return err
	}
	for _, t := range []struct {
		name, v string
	}{{"firstName", f.FirstName}, {"lastName", f.LastName}, {"issi", f.ISSI}, {"xmpp", f.XMPP},
		{"aPagerPro", f.APagerPro}, {"email", f.Email}, {"mobil", f.Mobil}} {
		if err := text(t.name, t.v, maxText, false); err != nil {
			return err
		}
	}
	if err := text("note", f.Note, maxNote, true); err != nil {
		return err
	}
	for _, l := range []struct {
		name string
		v    *[]string
	}{{"osFunctions", &f.OSFunctions}, {"osGroups", &f.OSGroups}, {"alarmGroups", &f.AlarmGroups}} {
		if len(*l.v) > maxEntries {
			return fieldErr(l.name, "has %d entries, at most %d are allowed", len(*l.v), maxEntries)
		}
		for i, v := range *l.v {
			name := fmt.Sprintf("%s[%d]", l.name, i)
			if v == "" {
				return fieldErr(name, "must not be empty")
			}
			if err := text(name, v, maxText, false); err != nil {
				return err
			}
		}
		if *l.v == nil {
			*l.v = []string{}
		}
	}
	if f.Email != "" && !isAddress(f.Email) {
		return fieldErr("email", "must be an e-mail address")
	}
	if f.Mobil != "" && !mobile.MatchString(f.Mobil) {
		return fieldErr("mobil", "must be a mobile number in the form 0049… (digits only)")
	}
	switch f.APagerProFieldMode {
	case "":
		f.APagerProFieldMode = ModeLegacy
	case ModeLegacy, ModeToken:
	default:
		return fieldErr("aPagerProFieldMode", "must be %s or %s", ModeLegacy, ModeToken)
	}
	switch {
	case f.APagerProFieldMode == ModeToken && f.APagerPro != "":
		return fieldErr("aPagerPro", "must be empty in %s mode", ModeToken)
	case f.APagerPro != "" && !isAddress(f.APagerPro) && !mobile.MatchString(f.APagerPro):
		return fieldErr("aPagerPro", "must be an e-mail address or a mobile number in the form 0049… (digits only)")
	}
	return nil
}

func text(field, v string, limit int, multiline bool) *FieldError {
	if n := utf8.RuneCountInString(v); n > limit {
		return fieldErr(field, "has %d characters, at most %d are allowed", n, limit)
	}
	for _, r := range v {
		if (r < 0x20 && !(multiline && (r == '\n' || r == '\r' || r == '\t'))) || r == 0x7f {
			return fieldErr(field, "must not contain control characters")
		}
	}
	return nil
}

// isAddress tells whether v is a bare e-mail address, without a name or
// angle brackets.
func isAddress(v string) bool {
	a, err := mail.ParseAddress(v)
	return err == nil && a.Address == v
}
