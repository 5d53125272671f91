package filter

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// jsonValue is JSON text as a filter reads it. An object is read lazily:
// a field a filter names is found by scanning the text, so that a filter
// reading data.total does not decode the whole document; decoding it all
// took most of a filter's time. Whatever else is asked of an object
// (iterating it, comparing it, its size) decodes it once.
func jsonValue(raw []byte) any {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return types.NullValue
	}
	switch c := raw[0]; {
	case c == '{':
		return &jsonObject{raw: raw}
	case c == '"' && bytes.IndexByte(raw, '\\') < 0:
		return types.String(raw[1 : len(raw)-1])
	case c == 't':
		return types.True
	case c == 'f':
		return types.False
	case c == 'n':
		return types.NullValue
	case c == '-' || c >= '0' && c <= '9':
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return types.NullValue
		}
		return types.Double(f)
	}
	// Arrays, and strings with escapes.
	var v any
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return types.NullValue
	}
	return v
}

// jsonObject is a JSON object read lazily; not safe for concurrent use,
// like the Input it belongs to.
type jsonObject struct {
	raw []byte
	// seen holds the fields looked up so far: a filter's cost counts a
	// lookup as one step whatever the object's size, so a lookup repeated
	// in a comprehension must not scan or decode again.
	seen []field
	full traits.Mapper // the whole object, once something needed it
}

type field struct {
	name  string
	value any
	found bool
}

// scansBeforeDecode bounds the scans of one object: an expression looking
// up many names (data[x] over a list) gets the object decoded once instead.
const scansBeforeDecode = 8

var _ traits.Mapper = (*jsonObject)(nil)

// FindStringKey is what cel-go's field selection asks first. Of repeated
// keys the last counts, as when the object is decoded.
func (o *jsonObject) FindStringKey(key string) (any, bool) {
	if o.full != nil {
		return o.full.Find(types.String(key))
	}
	for _, f := range o.seen {
		if f.name == key {
			return f.value, f.found
		}
	}
	if len(o.seen) >= scansBeforeDecode {
		return o.mapper().Find(types.String(key))
	}
	var raw []byte
	members(o.raw, func(name []byte, escaped bool, value []byte) {
		if sameKey(name, escaped, key) {
			raw = value
		}
	})
	f := field{name: key, found: raw != nil}
	if f.found {
		f.value = jsonValue(raw)
	}
	o.seen = append(o.seen, f)
	return f.value, f.found
}

// members calls fn with each member of the JSON object b, in order, and
// tells whether b was read to its end.
func members(b []byte, fn func(name []byte, escaped bool, value []byte)) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		end, escaped := stringEnd(b, i)
		if end < 0 {
			return false
		}
		name := b[i+1 : end-1]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		start := skipSpace(b, i+1)
		if i = valueEnd(b, start); i < 0 {
			return false
		}
		fn(name, escaped, b[start:i])
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return i < len(b) && b[i] == '}'
}

func sameKey(name []byte, escaped bool, key string) bool {
	if !escaped {
		return string(name) == key
	}
	var s string
	q := make([]byte, 0, len(name)+2)
	q = append(append(append(q, '"'), name...), '"')
	return json.Unmarshal(q, &s) == nil && s == key
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd answers the index after the string starting at b[i] ('"'),
// or -1, and whether it holds escapes.
func stringEnd(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return -1, escaped
}

// valueEnd answers the index after the value starting at b[i], or -1.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := stringEnd(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}

func (o *jsonObject) mapper() traits.Mapper {
	if o.full == nil {
		var m map[string]any
		if err := json.Unmarshal(o.raw, &m); err != nil {
			m = map[string]any{}
		}
		o.full = types.DefaultTypeAdapter.NativeToValue(m).(traits.Mapper)
	}
	return o.full
}

func (o *jsonObject) Find(key ref.Val) (ref.Val, bool) {
	if k, ok := key.(types.String); ok {
		v, found := o.FindStringKey(string(k))
		if !found {
			return nil, false
		}
		return types.DefaultTypeAdapter.NativeToValue(v), true
	}
	return o.mapper().Find(key)
}

func (o *jsonObject) Get(key ref.Val) ref.Val {
	v, found := o.Find(key)
	if !found {
		return types.ValOrErr(v, "no such key: %v", key)
	}
	return v
}

func (o *jsonObject) Contains(key ref.Val) ref.Val {
	_, found := o.Find(key)
	return types.Bool(found)
}

func (o *jsonObject) Iterator() traits.Iterator { return o.mapper().Iterator() }
func (o *jsonObject) Size() ref.Val             { return o.mapper().Size() }
func (o *jsonObject) Equal(other ref.Val) ref.Val {
	if p, ok := other.(*jsonObject); ok {
		other = p.mapper()
	}
	return o.mapper().Equal(other)
}
func (o *jsonObject) ConvertToNative(t reflect.Type) (any, error) {
	return o.mapper().ConvertToNative(t)
}
func (o *jsonObject) ConvertToType(t ref.Type) ref.Val { return o.mapper().ConvertToType(t) }
func (o *jsonObject) Type() ref.Type                   { return types.MapType }
func (o *jsonObject) Value() any                       { return o.mapper().Value() }
