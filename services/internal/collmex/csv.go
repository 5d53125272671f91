package collmex

import (
	"fmt"
	"strings"
)

// SplitRecords splits text in Collmex CSV format into records of fields and
// the 1-based line each record starts on. It knows nothing of record types,
// so every Collmex import can share it.
//
// The format differs from encoding/csv in ways that matter here: the
// separator is a semicolon, a UTF-8 byte order mark is dropped, blank
// lines are skipped rather than being records, and a quoted field keeps its
// line breaks byte for byte (encoding/csv turns \r\n into \n). A quote
// inside an unquoted field, text after a closing quote and an unterminated
// quote are rejected as *LineError on field "record" rather than guessed
// at, since a guess would quietly shift later fields.
//
// On error no records are returned.
func SplitRecords(text string) ([][]string, []int, error) {
	s := newScanner(text, 0)
	var recs [][]string
	var lines []int
	for s.more() {
		fields, line, err := s.next()
		if err != nil {
			return nil, nil, err
		}
		recs = append(recs, fields)
		lines = append(lines, line)
	}
	return recs, lines, nil
}

// scanner hands out one record at a time, so a caller that stops at the
// first bad record does not split the rest of the file.
type scanner struct {
	text string
	pos  int
	line int
	// maxFields, when above zero, stops a record as soon as it grows past
	// it, so a line of a million semicolons costs nothing.
	maxFields int
}

func newScanner(text string, maxFields int) *scanner {
	return &scanner{
		text:      strings.TrimPrefix(text, "\uFEFF"),
		line:      1,
		maxFields: maxFields,
	}
}

// more skips blank lines and reports whether a record follows; afterwards
// s.line is the line that record starts on.
func (s *scanner) more() bool {
	for s.pos < len(s.text) {
		switch {
		case s.text[s.pos] == '\n':
			s.pos++
			s.line++
		case s.text[s.pos] == '\r' && (s.pos+1 == len(s.text) || s.text[s.pos+1] == '\n'):
			s.pos++
		default:
			return true
		}
	}
	return false
}

// next splits the record at s.pos; call it only after more reported true.
func (s *scanner) next() ([]string, int, error) {
	start := s.line
	reject := func(line int, msg string) ([]string, int, error) {
		return nil, 0, &LineError{Line: line, Field: "record", Message: msg}
	}
	var fields []string
	for {
		if s.maxFields > 0 && len(fields) == s.maxFields {
			return reject(start, fmt.Sprintf("more than %d fields", s.maxFields))
		}
		if s.pos < len(s.text) && s.text[s.pos] == '"' {
			quoteLine := s.line
			s.pos++
			var b strings.Builder
			for {
				i := strings.IndexByte(s.text[s.pos:], '"')
				if i < 0 {
					return reject(quoteLine, "quote opened here is never closed")
				}
				chunk := s.text[s.pos : s.pos+i]
				s.line += strings.Count(chunk, "\n")
				b.WriteString(chunk)
				s.pos += i + 1
				if s.pos < len(s.text) && s.text[s.pos] == '"' {
					b.WriteByte('"')
					s.pos++
					continue
				}
				break
			}
			fields = append(fields, b.String())
		} else {
			end := strings.IndexAny(s.text[s.pos:], ";\n")
			if end < 0 {
				end = len(s.text)
			} else {
				end += s.pos
			}
			raw := s.text[s.pos:end]
			if strings.IndexByte(raw, '"') >= 0 {
				return reject(start, "a field containing a double quote must be enclosed in double quotes")
			}
			s.pos = end
			// The \r of a \r\n line end belongs to the line end, not
			// the field.
			if end == len(s.text) || s.text[end] == '\n' {
				raw = strings.TrimSuffix(raw, "\r")
			}
			fields = append(fields, raw)
		}

		if s.pos == len(s.text) {
			return fields, start, nil
		}
		switch c := s.text[s.pos]; {
		case c == ';':
			s.pos++
		case c == '\n':
			s.pos++
			s.line++
			return fields, start, nil
		case c == '\r' && s.pos+1 == len(s.text):
			s.pos++
			return fields, start, nil
		case c == '\r' && s.text[s.pos+1] == '\n':
			s.pos += 2
			s.line++
			return fields, start, nil
		default:
			// Only a quoted field can stop anywhere but a separator.
			return reject(start, "closing quote must be followed by ';' or the end of the line")
		}
	}
}
