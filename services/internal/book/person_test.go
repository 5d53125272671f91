package book

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	valid := func() Fields {
		return Fields{ExternalDbID: "123456", FirstName: "Max", LastName: "Mustermann", Note: "Zeile 1\nZeile 2",
			OSFunctions: []string{"AGT", "MA"}, OSGroups: []string{"Löschgruppe 1"}, AlarmGroups: []string{"Alarm Gruppe"},
			APagerPro: "max.mustermann@example.com", Email: "max.mustermann@example.com", Mobil: "0049151123456",
			APagerProFieldMode: "LEGACY"}
	}
	tests := []struct {
		name   string
		change func(*Fields)
		field  string // "" for valid
	}{
		{"the FE2 example", func(*Fields) {}, ""},
		{"aPagerPro a mobile number", func(f *Fields) { f.APagerPro = "004917012345678" }, ""},
		{"token mode, aPagerPro empty", func(f *Fields) { f.APagerProFieldMode, f.APagerPro = "TOKEN", "" }, ""},
		{"everything optional left out", func(f *Fields) { *f = Fields{ExternalDbID: "x"} }, ""},
		{"no externalDbId", func(f *Fields) { f.ExternalDbID = "" }, "externalDbId"},
		{"externalDbId too long", func(f *Fields) { f.ExternalDbID = strings.Repeat("x", MaxIDLen+1) }, "externalDbId"},
		{"externalDbId with a control character", func(f *Fields) { f.ExternalDbID = "a\tb" }, "externalDbId"},
		{"firstName too long", func(f *Fields) { f.FirstName = strings.Repeat("ä", maxText+1) }, "firstName"},
		{"lastName with a newline", func(f *Fields) { f.LastName = "a\nb" }, "lastName"},
		{"note too long", func(f *Fields) { f.Note = strings.Repeat("n", maxNote+1) }, "note"},
		{"an empty osFunctions entry", func(f *Fields) { f.OSFunctions = []string{"AGT", ""} }, "osFunctions[1]"},
		{"too many osGroups", func(f *Fields) { f.OSGroups = make([]string, maxEntries+1) }, "osGroups"},
		{"alarmGroups entry with DEL", func(f *Fields) { f.AlarmGroups = []string{"a\x7f"} }, "alarmGroups[0]"},
		{"email not an address", func(f *Fields) { f.Email = "max at example.com" }, "email"},
		{"email with a name", func(f *Fields) { f.Email = "Max <max@example.com>" }, "email"},
		{"mobil with a plus", func(f *Fields) { f.Mobil = "+49151123456" }, "mobil"},
		{"mobil with spaces", func(f *Fields) { f.Mobil = "0049 151 123456" }, "mobil"},
		{"mobil national", func(f *Fields) { f.Mobil = "0151123456" }, "mobil"},
		{"aPagerPro neither address nor number", func(f *Fields) { f.APagerPro = "max" }, "aPagerPro"},
		{"aPagerPro set in token mode", func(f *Fields) { f.APagerProFieldMode = "TOKEN" }, "aPagerPro"},
		{"an unknown mode", func(f *Fields) { f.APagerProFieldMode = "legacy" }, "aPagerProFieldMode"},
		{"issi too long", func(f *Fields) { f.ISSI = strings.Repeat("1", maxText+1) }, "issi"},
		{"xmpp with a control character", func(f *Fields) { f.XMPP = "a\x00" }, "xmpp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := valid()
			tt.change(&f)
			err := f.Check()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.field != "" && (err == nil || err.Field != tt.field):
				t.Fatalf("got %v, want an error naming %s", err, tt.field)
			}
			if err == nil && (f.OSFunctions == nil || f.OSGroups == nil || f.AlarmGroups == nil || f.APagerProFieldMode == "") {
				t.Fatalf("left-out fields not filled in: %+v", f)
			}
		})
	}
}

func TestTokenKeptOnceMade(t *testing.T) {
	f := Fields{ExternalDbID: "1", APagerProFieldMode: ModeToken}
	first := NewPerson(f, OriginSync, nil)
	if len(first.Token) != 32 {
		t.Fatalf("token %q", first.Token)
	}
	again := NewPerson(f, OriginSync, &first)
	f.APagerProFieldMode, f.APagerPro = ModeLegacy, "a@example.com"
	legacy := NewPerson(f, OriginSync, &again)
	if again.Token != first.Token || legacy.Token != first.Token {
		t.Fatalf("token changed: %q, %q, %q", first.Token, again.Token, legacy.Token)
	}
	if p := NewPerson(f, OriginSync, nil); p.Token != "" {
		t.Fatalf("legacy person got a token %q", p.Token)
	}
	if other := NewPerson(Fields{ExternalDbID: "2", APagerProFieldMode: ModeToken}, OriginSync, nil); other.Token == first.Token {
		t.Fatal("two persons got the same token")
	}
}
