package schema

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

const invoice = `{
  "type": "object",
  "required": ["number", "total"],
  "properties": {
    "number": {"type": "string", "pattern": "^INV-[0-9]+$"},
    "total": {"type": "number", "minimum": 0},
    "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
  },
  "$defs": {"item": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}, "unit price": {"type": "number"}}}}
}`

func TestCheckNamesThePath(t *testing.T) {
	sch, err := Compile(invoice)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ data, path, msg string }{
		{`{"number":"INV-1","total":12.5,"items":[{"sku":"A","unit price":1}]}`, "", ""},
		{`{"number":"INV-1"}`, ".total", "missing property 'total'"},
		{`{"number":"INV-1","total":"12"}`, ".total", "got string, want number"},
		{`{"number":"INV-1","total":-1}`, ".total", "minimum"},
		{`{"number":"X","total":1}`, ".number", "does not match pattern"},
		{`{"number":"INV-1","total":1,"items":[{"sku":"A"},{"sku":"B","unit price":"1"}]}`, `.items[1]["unit price"]`, "got string, want number"},
		{`{"number":"INV-1","total":1,"items":[{"sku":"A"},{}]}`, ".items[1].sku", "missing property 'sku'"},
		{`[1]`, "", "got array, want object"},
		{``, "", "got null, want object"}, // no data is JSON null
	} {
		var data json.RawMessage
		if c.data != "" {
			data = json.RawMessage(c.data)
		}
		v := sch.Check(data)
		switch {
		case c.msg == "" && v != nil:
			t.Errorf("%s: refused: %+v", c.data, v)
		case c.msg != "" && v == nil:
			t.Errorf("%s: taken, want refused at %q", c.data, c.path)
		case c.msg != "" && (v.Path != c.path || !strings.Contains(v.Message, c.msg)):
			t.Errorf("%s: refused at %q with %q, want at %q with %q", c.data, v.Path, v.Message, c.path, c.msg)
		}
	}
}

// TestCheckIsStable: of several violations, the same one is named each
// time, though the library finds an object's members in map order.
func TestCheckIsStable(t *testing.T) {
	sch, err := Compile(`{"properties":{"a":{"type":"number"},"b":{"type":"number"},"c":{"type":"number"},"d":{"type":"number"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if v := sch.Check(json.RawMessage(`{"d":"x","c":"x","b":"x","a":"x"}`)); v == nil || v.Path != ".a" {
			t.Fatalf("violation %+v, want at .a", v)
		}
	}
}

// TestCompileRefuses: what is not a schema, or too large, is refused with
// the library's reason.
func TestCompileRefuses(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{`{"type":"objekt"}`, "/type"},
		{`"string"`, "want boolean or object"},
		{`{"type":`, "is not JSON"},
		{`{} {}`, "is not JSON"},
		{`{"pattern":"("}`, "not valid regex"},
		{`{"$ref":"#/$defs/missing"}`, "not found"},
		{`{"description":"` + strings.Repeat("x", MaxBytes) + `"}`, "at most 65536"},
	} {
		if _, err := Compile(c.text); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.40s: %v, want an error with %q", c.text, err, c.want)
		}
	}
	// Other drafts are taken when the schema names them.
	sch, err := Compile(`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","required":["a"]}`)
	if err != nil {
		t.Fatal(err)
	}
	if sch.Check(json.RawMessage(`{}`)) == nil {
		t.Error("a draft-07 schema took what it refuses")
	}
}

// TestCompileLoadsNothing: a $ref or $schema naming a URL or a file is
// refused without fetching or reading it.
func TestCompileLoadsNothing(t *testing.T) {
	var hits atomic.Int32
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, `{"type":"string"}`)
	})}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	file := filepath.Join(t.TempDir(), "s.json")
	if err := os.WriteFile(file, []byte(`{"type":"string"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	url := "http://" + lis.Addr().String() + "/s.json"
	for _, text := range []string{
		`{"$ref":"` + url + `"}`,
		`{"$schema":"` + url + `"}`,
		`{"$ref":"file://` + file + `"}`,
		`{"$ref":"s.json"}`,
		`{"$id":"file://` + filepath.Dir(file) + `/x.json","$ref":"s.json"}`,
	} {
		if _, err := Compile(text); err == nil || !strings.Contains(err.Error(), "is not loaded") {
			t.Errorf("%s: %v, want refused as not loaded", text, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the schema server was asked %d times", n)
	}
}

// BenchmarkCheck is what a schema costs ingest per event: the data decoded
// once more and checked, here an invoice of 10 items (about 600 bytes).
func BenchmarkCheck(b *testing.B) {
	sch, err := Compile(invoice)
	if err != nil {
		b.Fatal(err)
	}
	items := make([]string, 10)
	for i := range items {
		items[i] = fmt.Sprintf(`{"sku":"SKU-%d","unit price":%d.5,"note":"item %d of the order"}`, i, i, i)
	}
	data := json.RawMessage(`{"number":"INV-1001","total":1234.5,"customer":"ACME GmbH","items":[` + strings.Join(items, ",") + `]}`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if v := sch.Check(data); v != nil {
			b.Fatal(v)
		}
	}
}
