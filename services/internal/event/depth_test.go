package event

import (
	"strings"
	"testing"
)

func TestDepth(t *testing.T) {
	for _, c := range []struct {
		json string
		want int
	}{
		{`1`, 0},
		{`"[{["`, 0},
		{`{"a":1}`, 1},
		{`{"a":[1,{"b":[]}],"c":{}}`, 4},
		{`["\"[", "\\", [[]]]`, 3},
		{`{"a":"}}}"}`, 1},
	} {
		if got := Depth([]byte(c.json)); got != c.want {
			t.Errorf("Depth(%s) = %d, want %d", c.json, got, c.want)
		}
	}
}

func TestDataNestedTooDeep(t *testing.T) {
	nested := func(n int) string { return strings.Repeat(`{"a":`, n) + `1` + strings.Repeat(`}`, n) }
	event := func(data string) []byte {
		return []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"a.b","subject":"d","data":` + data + `}`)
	}
	if _, err := Decode(event(nested(MaxDepth)), Limits{MaxData: 1 << 20}); err != nil {
		t.Fatalf("data %d levels deep: %v", MaxDepth, err)
	}
	_, err := Decode(event(nested(MaxDepth+1)), Limits{MaxData: 1 << 20})
	if e, ok := err.(*Error); !ok || e.Field != "data" {
		t.Fatalf("data %d levels deep: %v, want refused naming data", MaxDepth+1, err)
	}
}
