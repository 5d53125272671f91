package queues

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCheckContent: a message is taken exactly when it is a JSON object
// of at most MaxContent characters, and a refusal says which rule it broke.
func FuzzCheckContent(f *testing.F) {
	for _, s := range []string{
		`{}`, ` {"a":1} `, `[]`, `"x"`, `1`, `null`, `{"a":`, "{\"a\":\"\xff\"}",
		`{"k":"` + strings.Repeat("ä", MaxContent-8) + `"}`,
		`{"k":"` + strings.Repeat("ä", MaxContent-7) + `"}`,
		`{"k":"` + strings.Repeat("€", MaxContent) + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := CheckContent(b)
		var obj map[string]json.RawMessage
		isObject := utf8.Valid(b) && json.Unmarshal(b, &obj) == nil && obj != nil
		tooLong := utf8.RuneCount(b) > MaxContent
		if err == nil {
			if !isObject || tooLong {
				t.Fatalf("took %q (object %v, %d characters)", b, isObject, utf8.RuneCount(b))
			}
			return
		}
		var ce *ContentError
		if !errors.As(err, &ce) {
			t.Fatalf("%q: %v is not a ContentError", b, err)
		}
		if ce.TooLong != tooLong || (!tooLong && isObject) {
			t.Fatalf("%q refused as %+v (object %v, %d characters)", b, ce, isObject, utf8.RuneCount(b))
		}
	})
}
