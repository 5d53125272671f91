package collmex

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestParseNotificationsValid(t *testing.T) {
	long := "https://a.example/" + strings.Repeat("x", 255-len("https://a.example/"))
	tests := []struct {
		name string
		text string
		want []Notification
	}{
		{
			name: "empty file",
			text: "",
		},
		{
			name: "only blank lines and BOM",
			text: "\uFEFF\n\r\n\n",
		},
		{
			name: "simple",
			text: "API_NOTIFICATION;shop;5;https://shop.example/hook;0\n",
			want: []Notification{{Line: 1, System: "shop", Event: "5", URL: "https://shop.example/hook"}},
		},
		{
			name: "no final line break",
			text: "API_NOTIFICATION;shop;5;http://shop.example/hook;1",
			want: []Notification{{Line: 1, System: "shop", Event: "5", URL: "http://shop.example/hook", Inactive: 1}},
		},
		{
			name: "several records",
			text: "API_NOTIFICATION;shop;1;https://a.example/;0\nAPI_NOTIFICATION;shop;9;https://b.example/;2\n",
			want: []Notification{
				{Line: 1, System: "shop", Event: "1", URL: "https://a.example/"},
				{Line: 2, System: "shop", Event: "9", URL: "https://b.example/", Inactive: 2},
			},
		},
		{
			name: "quoted URL with semicolons",
			text: "API_NOTIFICATION;shop;3;\"https://shop.example/hook?a=1;b=2;c\";0\n",
			want: []Notification{{Line: 1, System: "shop", Event: "3", URL: "https://shop.example/hook?a=1;b=2;c"}},
		},
		{
			name: "every field quoted",
			text: "\"API_NOTIFICATION\";\"shop\";\"4\";\"https://shop.example/\";\"1\"\n",
			want: []Notification{{Line: 1, System: "shop", Event: "4", URL: "https://shop.example/", Inactive: 1}},
		},
		{
			name: "doubled quotes",
			text: "API_NOTIFICATION;\"the \"\"shop\"\"\";5;https://shop.example/\n",
			want: []Notification{{Line: 1, System: `the "shop"`, Event: "5", URL: "https://shop.example/"}},
		},
		{
			name: "only doubled quotes",
			text: "API_NOTIFICATION;\"\"\"\"\"\";5;https://shop.example/\n",
			want: []Notification{{Line: 1, System: `""`, Event: "5", URL: "https://shop.example/"}},
		},
		{
			name: "CRLF",
			text: "API_NOTIFICATION;shop;5;https://a.example/;1\r\nAPI_NOTIFICATION;shop;6;\"https://b.example/\"\r\n",
			want: []Notification{
				{Line: 1, System: "shop", Event: "5", URL: "https://a.example/", Inactive: 1},
				{Line: 2, System: "shop", Event: "6", URL: "https://b.example/"},
			},
		},
		{
			name: "CR before end of file",
			text: "API_NOTIFICATION;shop;5;https://a.example/;1\r",
			want: []Notification{{Line: 1, System: "shop", Event: "5", URL: "https://a.example/", Inactive: 1}},
		},
		{
			name: "BOM",
			text: "\uFEFFAPI_NOTIFICATION;shop;5;https://a.example/\n",
			want: []Notification{{Line: 1, System: "shop", Event: "5", URL: "https://a.example/"}},
		},
		{
			name: "blank lines",
			text: "\n\r\nAPI_NOTIFICATION;shop;5;https://a.example/\n\n\nAPI_NOTIFICATION;shop;7;https://b.example/\n\n",
			want: []Notification{
				{Line: 3, System: "shop", Event: "5", URL: "https://a.example/"},
				{Line: 6, System: "shop", Event: "7", URL: "https://b.example/"},
			},
		},
		{
			name: "omitted, empty and blank Inaktiv",
			text: "API_NOTIFICATION;shop;5;https://a.example/\nAPI_NOTIFICATION;shop;6;https://a.example/;\nAPI_NOTIFICATION;shop;7;https://a.example/;  \n",
			want: []Notification{
				{Line: 1, System: "shop", Event: "5", URL: "https://a.example/"},
				{Line: 2, System: "shop", Event: "6", URL: "https://a.example/"},
				{Line: 3, System: "shop", Event: "7", URL: "https://a.example/"},
			},
		},
		{
			name: "multi-line quoted field",
			text: "API_NOTIFICATION;shop;\"\n5\n\";https://b.example/;\"0\r\n\"\n" +
				"API_NOTIFICATION;shop;8;https://c.example/\n",
			want: []Notification{
				{Line: 1, System: "shop", Event: "5", URL: "https://b.example/"},
				{Line: 5, System: "shop", Event: "8", URL: "https://c.example/"},
			},
		},
		{
			name: "Ereignis and Inaktiv with spaces and leading zeros",
			text: "API_NOTIFICATION;shop; 05 ;https://a.example/; 001\n",
			want: []Notification{{Line: 1, System: "shop", Event: "5", URL: "https://a.example/", Inactive: 1}},
		},
		{
			name: "System and URL at their length limits",
			text: "API_NOTIFICATION;" + strings.Repeat("ä", 20) + ";9;" + long + ";2\n",
			want: []Notification{{Line: 1, System: strings.Repeat("ä", 20), Event: "9", URL: long, Inactive: 2}},
		},
		{
			name: "upper-case scheme, port, user info, fragment",
			text: "API_NOTIFICATION;shop;1;HTTPS://user@a.example:8443/x?y=z#f\n",
			want: []Notification{{Line: 1, System: "shop", Event: "1", URL: "HTTPS://user@a.example:8443/x?y=z#f"}},
		},
		{
			name: "System with spaces and umlauts",
			text: "API_NOTIFICATION;Lager Süd;2;http://10.0.0.1/x\n",
			want: []Notification{{Line: 1, System: "Lager Süd", Event: "2", URL: "http://10.0.0.1/x"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNotifications(tt.text)
			if err != nil {
				t.Fatalf("ParseNotifications: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseNotificationsRejects(t *testing.T) {
	const ok = "API_NOTIFICATION;shop;5;https://a.example/;0\n"
	tooLongURL := "https://a.example/" + strings.Repeat("x", 256-len("https://a.example/"))
	tests := []struct {
		name  string
		text  string
		line  int
		field string
	}{
		{"other record type", "CMXINV;shop;5;https://a.example/\n", 1, "Satzart"},
		{"Satzart lower case", "api_notification;shop;5;https://a.example/\n", 1, "Satzart"},
		{"Satzart with space", " API_NOTIFICATION;shop;5;https://a.example/\n", 1, "Satzart"},
		{"Satzart with trailing space", "API_NOTIFICATION ;shop;5;https://a.example/\n", 1, "Satzart"},
		{"BOM not at start", ok + "\uFEFFAPI_NOTIFICATION;shop;5;https://a.example/\n", 2, "Satzart"},
		{"lone CR is not a line end", "API_NOTIFICATION;shop;5;https://a.example/\r1\n", 1, "URL"},
		{"line of spaces is not blank", ok + "  \n", 2, "Satzart"},
		{"line of only a separator", ok + ";\n", 2, "Satzart"},

		{"System missing", "API_NOTIFICATION\n", 1, "System"},
		{"System empty", "API_NOTIFICATION;;5;https://a.example/\n", 1, "System"},
		{"System 21 characters", "API_NOTIFICATION;" + strings.Repeat("ä", 21) + ";5;https://a.example/\n", 1, "System"},
		{"System with tab", "API_NOTIFICATION;a\tb;5;https://a.example/\n", 1, "System"},
		{"System with line break", "API_NOTIFICATION;\"a\nb\";5;https://a.example/\n", 1, "System"},
		{"System with DEL", "API_NOTIFICATION;a\x7fb;5;https://a.example/\n", 1, "System"},
		{"System with C1 control", "API_NOTIFICATION;a\u0085b;5;https://a.example/\n", 1, "System"},
		{"System not UTF-8", "API_NOTIFICATION;s\xfcd;5;https://a.example/\n", 1, "System"},

		{"Ereignis missing", "API_NOTIFICATION;shop\n", 1, "Ereignis"},
		{"Ereignis empty", "API_NOTIFICATION;shop;;https://a.example/\n", 1, "Ereignis"},
		{"Ereignis blank", "API_NOTIFICATION;shop;  ;https://a.example/\n", 1, "Ereignis"},
		{"Ereignis 0", "API_NOTIFICATION;shop;0;https://a.example/\n", 1, "Ereignis"},
		{"Ereignis 00", "API_NOTIFICATION;shop;00;https://a.example/\n", 1, "Ereignis"},
		{"Ereignis 10", "API_NOTIFICATION;shop;10;https://a.example/\n", 1, "Ereignis"},
		{"Ereignis negative", "API_NOTIFICATION;shop;-1;https://a.example/\n", 1, "Ereignis"},
		{"Ereignis plus sign", "API_NOTIFICATION;shop;+5;https://a.example/\n", 1, "Ereignis"},
		{"Ereignis decimal", "API_NOTIFICATION;shop;5.0;https://a.example/\n", 1, "Ereignis"},
		{"Ereignis two numbers", "API_NOTIFICATION;shop;1 2;https://a.example/\n", 1, "Ereignis"},
		{"Ereignis text", "API_NOTIFICATION;shop;Rechnung;https://a.example/\n", 1, "Ereignis"},
		{"Ereignis huge", "API_NOTIFICATION;shop;99999999999999999999999;https://a.example/\n", 1, "Ereignis"},

		{"URL missing", "API_NOTIFICATION;shop;5\n", 1, "URL"},
		{"URL empty", "API_NOTIFICATION;shop;5;;0\n", 1, "URL"},
		{"URL ftp", "API_NOTIFICATION;shop;5;ftp://a.example/\n", 1, "URL"},
		{"URL mailto", "API_NOTIFICATION;shop;5;mailto:a@a.example\n", 1, "URL"},
		{"URL relative", "API_NOTIFICATION;shop;5;/hook\n", 1, "URL"},
		{"URL without scheme", "API_NOTIFICATION;shop;5;a.example/hook\n", 1, "URL"},
		{"URL without host", "API_NOTIFICATION;shop;5;http:///hook\n", 1, "URL"},
		{"URL with only a port", "API_NOTIFICATION;shop;5;http://:80/hook\n", 1, "URL"},
		{"URL opaque", "API_NOTIFICATION;shop;5;http:a.example\n", 1, "URL"},
		{"URL with space", "API_NOTIFICATION;shop;5;https://a.example/a b\n", 1, "URL"},
		{"URL with leading space", "API_NOTIFICATION;shop;5; https://a.example/\n", 1, "URL"},
		{"URL with tab", "API_NOTIFICATION;shop;5;https://a.example/\t\n", 1, "URL"},
		{"URL with line break", "API_NOTIFICATION;shop;5;\"https://a.example/\n\"\n", 1, "URL"},
		{"URL bad escape", "API_NOTIFICATION;shop;5;https://a.example/%zz\n", 1, "URL"},
		{"URL not UTF-8", "API_NOTIFICATION;shop;5;https://a.example/\xff\n", 1, "URL"},
		{"URL 256 characters", "API_NOTIFICATION;shop;5;" + tooLongURL + "\n", 1, "URL"},

		{"Inaktiv 3", "API_NOTIFICATION;shop;5;https://a.example/;3\n", 1, "Inaktiv"},
		{"Inaktiv negative", "API_NOTIFICATION;shop;5;https://a.example/;-1\n", 1, "Inaktiv"},
		{"Inaktiv text", "API_NOTIFICATION;shop;5;https://a.example/;ja\n", 1, "Inaktiv"},
		{"Inaktiv 10", "API_NOTIFICATION;shop;5;https://a.example/;10\n", 1, "Inaktiv"},

		{"six fields", "API_NOTIFICATION;shop;5;https://a.example/;0;x\n", 1, "record"},
		{"six fields, last empty", "API_NOTIFICATION;shop;5;https://a.example/;0;\n", 1, "record"},
		{"many fields with bad Satzart", "X;;;;;;;;;\n", 1, "record"},
		{"unterminated quote", "API_NOTIFICATION;\"shop;5;https://a.example/\n", 1, "record"},
		{"unterminated quote at end", ok + "API_NOTIFICATION;shop;5;\"", 2, "record"},
		{"quote inside unquoted field", "API_NOTIFICATION;sh\"op;5;https://a.example/\n", 1, "record"},
		{"text after closing quote", "API_NOTIFICATION;\"shop\"x;5;https://a.example/\n", 1, "record"},
		{"space after closing quote", "API_NOTIFICATION;\"shop\" ;5;https://a.example/\n", 1, "record"},
		{"lone CR after closing quote", "API_NOTIFICATION;\"shop\"\r;5;https://a.example/\n", 1, "record"},

		// Line numbers across blank lines and multi-line fields.
		{"after blank lines", "\n\n" + ok + "\r\n\n" + "API_NOTIFICATION;shop;5;ftp://a.example/\n", 6, "URL"},
		{"after multi-line field", "API_NOTIFICATION;shop;\"\n\n5\";https://a.example/\n" + "API_NOTIFICATION;shop;5;https://a.example/;7\n", 4, "Inaktiv"},
		{"record starting in a multi-line field", ok + "\"API_\nNOTIFICATION\";shop;5;https://a.example/\n", 2, "Satzart"},
		{"field error reported at record start", ok + "API_NOTIFICATION;\"sh\nop\";5;\"https://a.example/\n\"\n", 2, "System"},
		{"unterminated quote names its own line", ok + "API_NOTIFICATION;\"a\nb\";\"5\n\n;https://a.example/\n", 3, "record"},
		{"unterminated quote after CRLF lines", "\r\n" + ok + "\r\n" + "API_NOTIFICATION;shop;5;https://a.example/;\"0\r\n", 4, "record"},
		{"bad quote reported at record start", ok + "API_NOTIFICATION;\"a\n\nb\";5;htt\"p\n", 2, "record"},

		// Only the first error counts.
		{"first of several errors", ok + "API_NOTIFICATION;shop;5;ftp://a.example/\n" + "API_NOTIFICATION;\"\n", 2, "URL"},
		{"first of several fields", "X;;0;ftp:x;9\n", 1, "Satzart"},
		{"quoting before later field", ok + ok + "API_NOTIFICATION;;0;ftp:x;\"9\n", 3, "record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNotifications(tt.text)
			if got != nil {
				t.Errorf("got records %+v alongside an error", got)
			}
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("error = %v, want *LineError", err)
			}
			if le.Line != tt.line || le.Field != tt.field {
				t.Errorf("error at line %d field %s (%v), want line %d field %s", le.Line, le.Field, err, tt.line, tt.field)
			}
			if le.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestLineErrorString(t *testing.T) {
	_, err := ParseNotifications("API_NOTIFICATION;shop;5;https://a.example/\n\n" +
		"API_NOTIFICATION;shop;5;ftp://a.example/\n")
	const want = "line 3: URL: must be an http or https URL of at most 255 characters"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestParseNotificationsRecordLimit(t *testing.T) {
	const rec = "API_NOTIFICATION;shop;5;https://a.example/\n"
	tests := []struct {
		name    string
		text    string
		records int
		line    int // of the error; 0 for success
	}{
		{"at the limit", strings.Repeat(rec, MaxRecords), MaxRecords, 0},
		{"at the limit, trailing blank lines", strings.Repeat(rec, MaxRecords) + "\n\n", MaxRecords, 0},
		{"one over", strings.Repeat(rec, MaxRecords+1), 0, MaxRecords + 1},
		{"one over with blank lines", strings.Repeat(rec+"\n", MaxRecords+1), 0, 2*MaxRecords + 1},
		// The limit is met before the excess record is read, so its own
		// faults do not hide it.
		{"one over, excess record broken", strings.Repeat(rec, MaxRecords) + "\"", 0, MaxRecords + 1},
		{"far over", strings.Repeat(rec, 3*MaxRecords), 0, MaxRecords + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNotifications(tt.text)
			if tt.line == 0 {
				if err != nil || len(got) != tt.records {
					t.Fatalf("got %d records, error %v; want %d records", len(got), err, tt.records)
				}
				return
			}
			var le *LineError
			if !errors.As(err, &le) || le.Line != tt.line || le.Field != "record" || got != nil {
				t.Fatalf("got %d records, error %v; want record error on line %d", len(got), err, tt.line)
			}
		})
	}
}

func TestSplitRecords(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		recs  [][]string
		lines []int
	}{
		{"empty", "", nil, nil},
		{"BOM only", "\uFEFF", nil, nil},
		{"one field", "a", [][]string{{"a"}}, []int{1}},
		{"empty fields", "a;;b;\n;\n", [][]string{{"a", "", "b", ""}, {"", ""}}, []int{1, 2}},
		{"empty quoted field is a record", "\"\"\n\n\"\"", [][]string{{""}, {""}}, []int{1, 3}},
		{"quoted separators and quotes", "\"a;b\";\"c\"\"d\";\"\"\"\"", [][]string{{"a;b", `c"d`, `"`}}, []int{1}},
		{"quoted line breaks kept byte for byte", "\"a\r\nb\nc\";d\r\ne", [][]string{{"a\r\nb\nc", "d"}, {"e"}}, []int{1, 4}},
		{"CR inside unquoted field kept", "a\rb;c\r\n", [][]string{{"a\rb", "c"}}, []int{1}},
		{"CR before end kept only in quotes", "\"a\r\";b\r", [][]string{{"a\r", "b"}}, []int{1}},
		{"blank lines", "\n\r\n\na\n\r\n\nb\r\n", [][]string{{"a"}, {"b"}}, []int{4, 7}},
		{"many fields", strings.Repeat(";", 99), [][]string{make([]string, 100)}, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, lines, err := SplitRecords(tt.text)
			if err != nil {
				t.Fatalf("SplitRecords: %v", err)
			}
			if !reflect.DeepEqual(recs, tt.recs) || !reflect.DeepEqual(lines, tt.lines) {
				t.Errorf("got %q at %v\nwant %q at %v", recs, lines, tt.recs, tt.lines)
			}
		})
	}
}

func TestSplitRecordsRejects(t *testing.T) {
	tests := []struct {
		name string
		text string
		line int
	}{
		{"unterminated", "a\n\"b", 2},
		{"unterminated after multi-line field", "a\n\"b\n\nc\";\"d\n", 4},
		{"unterminated doubled quote", "\"a\"\"", 1},
		{"bare quote", "a\nb\"c", 2},
		{"bare quote after multi-line field", "\"a\n\";b\"", 1},
		{"text after quote", "\"a\"b", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, lines, err := SplitRecords(tt.text)
			if recs != nil || lines != nil {
				t.Errorf("got %q at %v alongside an error", recs, lines)
			}
			var le *LineError
			if !errors.As(err, &le) || le.Line != tt.line || le.Field != "record" {
				t.Errorf("error = %v, want record error on line %d", err, tt.line)
			}
		})
	}
}

// encode writes records the plainest way Collmex accepts: every field
// quoted, inner quotes doubled. It is deliberately not the package's code,
// so a round trip tests the reader against an independent writer.
func encode(recs [][]string, eol string) string {
	var b strings.Builder
	for _, rec := range recs {
		for i, f := range rec {
			if i > 0 {
				b.WriteByte(';')
			}
			b.WriteString(`"` + strings.ReplaceAll(f, `"`, `""`) + `"`)
		}
		b.WriteString(eol)
	}
	return b.String()
}

func encodeNotifications(ns []Notification, eol string) string {
	recs := make([][]string, len(ns))
	for i, n := range ns {
		recs[i] = []string{RecordType, n.System, n.Event, n.URL, fmt.Sprint(n.Inactive)}
	}
	return encode(recs, eol)
}

// checkRules restates the API_NOTIFICATION rules independently of the
// parser, so the fuzzer can catch a rule the parser forgot.
func checkRules(n Notification) error {
	if c := utf8.RuneCountInString(n.System); c < 1 || c > 20 || !utf8.ValidString(n.System) {
		return fmt.Errorf("System %q", n.System)
	}
	for _, r := range n.System {
		if unicode.IsControl(r) {
			return fmt.Errorf("System %q", n.System)
		}
	}
	if len(n.Event) != 1 || n.Event[0] < '1' || n.Event[0] > '9' {
		return fmt.Errorf("Event %q", n.Event)
	}
	if utf8.RuneCountInString(n.URL) > 255 || !utf8.ValidString(n.URL) {
		return fmt.Errorf("URL %q", n.URL)
	}
	for _, r := range n.URL {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("URL %q", n.URL)
		}
	}
	u, err := url.Parse(n.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("URL %q", n.URL)
	}
	if n.Inactive < 0 || n.Inactive > 2 {
		return fmt.Errorf("Inactive %d", n.Inactive)
	}
	return nil
}

func withoutLines(ns []Notification) []Notification {
	out := make([]Notification, len(ns))
	for i, n := range ns {
		n.Line = 0
		out[i] = n
	}
	return out
}

var fieldNames = map[string]bool{"Satzart": true, "System": true, "Ereignis": true, "URL": true, "Inaktiv": true, "record": true}

func FuzzParseNotifications(f *testing.F) {
	for _, s := range []string{
		"",
		"API_NOTIFICATION;shop;5;https://a.example/;0\n",
		"\uFEFFAPI_NOTIFICATION;\"a;\"\"b\"\"\";05;\"https://a.example/?x=1;y\";1\r\n\r\n",
		"API_NOTIFICATION;shop;\"\n5\n\";http://b.example/;\"2\r\n\"\nAPI_NOTIFICATION;x;1;http://c/\r",
		"API_NOTIFICATION;shop;5;https://a.example/;0;\n",
		"API_NOTIFICATION;\"shop;5;https://a.example/\n",
		"API_NOTIFICATION;sh\"op;5;http://:80/\n",
		"API_NOTIFICATION;\"\"\"\";9;HTTP://u@h:1/%41#\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ns, err := ParseNotifications(text)
		recs, lines, splitErr := SplitRecords(text)
		nLines := strings.Count(text, "\n") + 1

		if splitErr != nil {
			var le *LineError
			if !errors.As(splitErr, &le) || le.Field != "record" || le.Line < 1 || le.Line > nLines {
				t.Fatalf("SplitRecords error %v", splitErr)
			}
			if recs != nil || lines != nil {
				t.Fatal("SplitRecords returned records with an error")
			}
			if err == nil {
				t.Fatalf("ParseNotifications accepted what SplitRecords rejected: %v", splitErr)
			}
		} else {
			if len(recs) != len(lines) {
				t.Fatalf("%d records, %d lines", len(recs), len(lines))
			}
			for i, l := range lines {
				if l < 1 || l > nLines || (i > 0 && l <= lines[i-1]) {
					t.Fatalf("record lines %v out of order or range", lines)
				}
			}
			for _, eol := range []string{"\n", "\r\n"} {
				again, _, err := SplitRecords(encode(recs, eol))
				if err != nil || !reflect.DeepEqual(again, recs) {
					t.Fatalf("split round trip: %q became %q (%v)", recs, again, err)
				}
			}
		}

		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || !fieldNames[le.Field] || le.Line < 1 || le.Line > nLines || le.Message == "" {
				t.Fatalf("ParseNotifications error %#v", err)
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("line %d: %s: ", le.Line, le.Field)) {
				t.Fatalf("error text %q", err.Error())
			}
			if ns != nil {
				t.Fatal("ParseNotifications returned records with an error")
			}
			return
		}

		if splitErr != nil || len(ns) != len(recs) || len(ns) > MaxRecords {
			t.Fatalf("%d notifications from %d records (%v)", len(ns), len(recs), splitErr)
		}
		for i, n := range ns {
			if n.Line != lines[i] {
				t.Fatalf("notification %d on line %d, record on line %d", i, n.Line, lines[i])
			}
			if err := checkRules(n); err != nil {
				t.Fatalf("accepted bad notification: %v", err)
			}
		}
		for _, eol := range []string{"\n", "\r\n"} {
			again, err := ParseNotifications(encodeNotifications(ns, eol))
			if err != nil {
				t.Fatalf("re-encoded notifications rejected: %v", err)
			}
			if !reflect.DeepEqual(withoutLines(again), withoutLines(ns)) {
				t.Fatalf("round trip: %+v became %+v", ns, again)
			}
		}
	})
}
