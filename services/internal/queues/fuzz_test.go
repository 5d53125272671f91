package queues

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"kurier.dev/services/internal/event"
)

// FuzzCheckContent: a message is taken exactly when it is a JSON object
// of at most MaxContent characters nested at most event.MaxDepth deep, and
// a refusal says which rule it broke.
func FuzzCheckContent(f *testing.F) {
	for _, s := range []string{
		`{}`, ` {"a":1} `, `[]`, `"x"`, `1`, `null`, `{"a":`, "{\"a\":\"\xff\"}",
		`{"k":"` + strings.Repeat("ä", MaxContent-8) + `"}`,
		`{"k":"` + strings.Repeat("ä", MaxContent-7) + `"}`,
		`{"k":"` + strings.Repeat("€", MaxContent) + `"}`,
		`{"k":` + strings.Repeat("[", event.MaxDepth-1) + strings.Repeat("]", event.MaxDepth-1) + `}`,
		`{"k":` + strings.Repeat("[", event.MaxDepth) + strings.Repeat("]", event.MaxDepth) + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := CheckContent(b)
		var obj map[string]json.RawMessage
		isObject := utf8.Valid(b) && json.Unmarshal(b, &obj) == nil && obj != nil
		tooLong := utf8.RuneCount(b) > MaxContent
		tooDeep := isObject && depth(obj) > event.MaxDepth
		if err == nil {
			if !isObject || tooLong || tooDeep {
				t.Fatalf("took %q (object %v, %d characters)", b, isObject, utf8.RuneCount(b))
			}
			return
		}
		var ce *ContentError
		if !errors.As(err, &ce) {
			t.Fatalf("%q: %v is not a ContentError", b, err)
		}
		if ce.TooLong != tooLong || (!tooLong && isObject && !tooDeep) {
			t.Fatalf("%q refused as %+v (object %v, %d characters)", b, ce, isObject, utf8.RuneCount(b))
		}
	})
}

// depth is how deeply a decoded JSON value nests, found by walking it
// rather than by scanning text as event.Depth does.
func depth(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]json.RawMessage:
		for _, raw := range v {
			var e any
			_ = json.Unmarshal(raw, &e)
			d = max(d, depth(e))
		}
	case map[string]any:
		for _, e := range v {
			d = max(d, depth(e))
		}
	case []any:
		for _, e := range v {
			d = max(d, depth(e))
		}
	default:
		return 0
	}
	return d + 1
}
