package filter

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"kurier.dev/services/internal/event"
)

var stored = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func invoice(data string) event.Event {
	return event.Event{ID: "e-1", Source: "/erp/acme", Type: "invoice.changed", Subject: "INV-2026-0042",
		Time: "2026-03-01T11:59:58.5Z", DataContentType: "application/json", Data: json.RawMessage(data)}
}

func match(t *testing.T, expr string, e event.Event) (bool, error) {
	t.Helper()
	p, err := Compile(expr)
	if err != nil {
		t.Fatalf("Compile(%q): %v", expr, err)
	}
	return p.Match(NewInput(e, stored))
}

func TestMatch(t *testing.T) {
	e := invoice(`{"total": 1250.5, "count": 3, "customer": {"id": "C-7", "country": "DE"}, "lines": [{"sku": "A"}, {"sku": "B"}], "paid": false}`)
	for _, c := range []struct {
		expr string
		want bool
	}{
		{`type == "invoice.changed" && data.total > 1000.0 && subject.startsWith("INV-")`, true},
		{`data.total > 1000`, true}, // an int beside a JSON number
		{`data.count == 3`, true},
		{`data.total < 1000.0`, false},
		{`data.customer.country in ["DE", "AT"]`, true},
		{`data.lines.exists(l, l.sku == "B")`, true},
		{`data.lines.all(l, l.sku == "B")`, false},
		{`size(data.lines) == 2`, true},
		{`data.paid == false`, true},
		{`has(data.discount)`, false},
		{`!has(data.discount) || data.discount > 0.0`, true},
		{`data.?discount.orValue(0.0) == 0.0`, true},
		{`source == "/erp/acme" && id == "e-1"`, true},
		{`subject.matches("^INV-[0-9]{4}-")`, true},
		{`time > timestamp("2026-03-01T11:00:00Z")`, true},
		{`time == timestamp("2026-03-01T11:59:58.5Z")`, true},
		{`time.getHours() == 11`, true},
	} {
		got, err := match(t, c.expr, e)
		if err != nil || got != c.want {
			t.Errorf("%s: got %v, %v; want %v", c.expr, got, err, c.want)
		}
	}
}

// TestErrorsAreNoMatch: a field the data lacks is an error, and the
// answer is false, so that a filter never lets through what it could not
// judge.
func TestErrorsAreNoMatch(t *testing.T) {
	for _, c := range []struct {
		expr string
		e    event.Event
	}{
		{`data.discount > 0.0`, invoice(`{"total": 1}`)},
		{`data.total > 0.0`, invoice(`"a string"`)},
		{`data.total.size() > 0`, invoice(`{"total": 1}`)},
		{`data.total > 0.0`, event.Event{ID: "b", Source: "s", Type: "file.added", Subject: "F", Binary: []byte{1, 2}}},
	} {
		got, err := match(t, c.expr, c.e)
		if got || err == nil {
			t.Errorf("%s: got %v, %v; want false and an error", c.expr, got, err)
		}
	}
}

// TestDataOfOtherKinds: text data is one string, binary data and none
// are null.
func TestDataOfOtherKinds(t *testing.T) {
	xml := event.Event{ID: "x", Source: "s", Type: "order.changed", Subject: "O-1", DataContentType: "application/xml",
		Data: json.RawMessage(`"<order><total>5</total></order>"`)}
	bin := event.Event{ID: "b", Source: "s", Type: "file.added", Subject: "F", DataContentType: "image/png", Binary: []byte{1, 2}}
	none := event.Event{ID: "n", Source: "s", Type: "file.added", Subject: "F"}
	for _, c := range []struct {
		expr string
		e    event.Event
	}{
		{`data.contains("<total>5</total>")`, xml},
		{`data == null`, bin},
		{`data == null`, none},
	} {
		if got, err := match(t, c.expr, c.e); !got || err != nil {
			t.Errorf("%s: got %v, %v; want true", c.expr, got, err)
		}
	}
}

// TestTimeWithoutAttribute: an event whose producer gave no time is
// filtered by when it was stored.
func TestTimeWithoutAttribute(t *testing.T) {
	e := invoice(`{}`)
	e.Time = ""
	if got, err := match(t, `time == timestamp("2026-03-01T12:00:00Z")`, e); !got || err != nil {
		t.Fatalf("got %v, %v; want the stored time", got, err)
	}
}

func TestRefused(t *testing.T) {
	for _, c := range []struct {
		expr         string
		line, column int
		says         string
	}{
		{`type == "invoice.changed" &&`, 1, 29, "mismatched input"},
		{"type == \"a.b\"\n  && totl > 5", 2, 6, "undeclared reference to 'totl'"},
		{`subject.startsWith(1)`, 1, 19, "no matching overload"},
		{`data.total`, 1, 1, "must be true or false"},
		{`size(subject)`, 1, 1, "must be true or false"},
		{`"a" + 1 == "a1"`, 1, 5, "no matching overload"},
	} {
		_, err := Compile(c.expr)
		var fe *Error
		if !errors.As(err, &fe) || fe.Line != c.line || fe.Column != c.column || !strings.Contains(fe.Message, c.says) {
			t.Errorf("%q: got %v; want line %d, column %d, saying %q", c.expr, err, c.line, c.column, c.says)
		}
	}
	for _, expr := range []string{"", "  ", strings.Repeat("a", MaxLen) + " == 1", `subject.matches("(")`} {
		if _, err := Compile(expr); err == nil {
			t.Errorf("%.40q: compiled", expr)
		}
	}
}

// TestHostileExpressionStops: an expression whose work grows with the
// data stops at the cost limit, soon, instead of stalling its dispatcher;
// a lookup repeated in a comprehension is not scanned or decoded again.
func TestHostileExpressionStops(t *testing.T) {
	items := make([]int, 5000)
	b, _ := json.Marshal(map[string]any{"items": items, "pad": strings.Repeat("x", 100_000)})
	e := invoice(string(b))
	for _, expr := range []string{
		`data.items.all(a, data.items.all(b, data.items.all(c, a == b)))`,
		`data.items.all(a, size(data.items) > 0 && data.nope == 1)`,
		`data.items.all(a, data[string(a)] == 1)`,
	} {
		p, err := Compile(expr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		got, err := p.Match(NewInput(e, stored))
		took := time.Since(start)
		if got || err == nil {
			t.Fatalf("%s: got %v, %v; want an error", expr, got, err)
		}
		// Unbounded, the first would be 10^11 steps, the others would
		// scan or decode 100 KB 5,000 times; stopped, each takes a few
		// milliseconds (the bound is generous for a loaded machine).
		if took > 200*time.Millisecond {
			t.Errorf("%s: stopped after %v", expr, took)
		}
		t.Logf("%s: %v after %v", expr, err, took)
	}
}

// TestDataDecodedOnce: several filters of one event share its decoded
// data, and a filter that does not read data never decodes it.
func TestDataDecodedOnce(t *testing.T) {
	in := NewInput(invoice(`{"total": 5}`), stored)
	p, _ := Compile(`subject == "x"`)
	if _, err := p.Match(in); err != nil || in.decoded {
		t.Fatalf("decoded: %v, err %v; a filter not reading data decoded it", in.decoded, err)
	}
	q, _ := Compile(`data.total == 5.0`)
	for range 2 {
		if ok, err := q.Match(in); !ok || err != nil {
			t.Fatalf("got %v, %v", ok, err)
		}
	}
	if !in.decoded {
		t.Fatal("data not decoded")
	}
}

// BenchmarkTypical is the cost per event of a typical filter on a
// realistic invoice event, decoding the stored event included.
func BenchmarkTypical(b *testing.B) {
	p, err := Compile(`type == "invoice.changed" && data.total > 1000.0 && subject.startsWith("INV-")`)
	if err != nil {
		b.Fatal(err)
	}
	stored, _ := invoice(realisticData).MarshalJSON()
	at := time.Now()
	b.Run("decode+match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			in, err := ParseInput(stored, at)
			if err != nil {
				b.Fatal(err)
			}
			if ok, err := p.Match(in); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	e := invoice(realisticData)
	b.Run("match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := p.Match(NewInput(e, at)); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	q, _ := Compile(`type == "invoice.changed" && subject.startsWith("INV-")`)
	b.Run("match-no-data", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := q.Match(NewInput(e, at)); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}

// realisticData is an invoice as an ERP sends it: 596 bytes, three lines.
const realisticData = `{"id":"INV-2026-0042","number":"2026-0042","status":"open","currency":"EUR",` +
	`"total":1785.00,"net":1500.00,"tax":285.00,"issued":"2026-03-01","due":"2026-03-31",` +
	`"customer":{"id":"C-1007","name":"Muster GmbH","country":"DE","vat_id":"DE123456789"},` +
	`"lines":[{"pos":1,"sku":"SKU-100","text":"Beratung","qty":10,"unit":"h","price":120.00,"amount":1200.00},` +
	`{"pos":2,"sku":"SKU-200","text":"Reisekosten","qty":1,"unit":"pausch","price":200.00,"amount":200.00},` +
	`{"pos":3,"sku":"SKU-300","text":"Material","qty":4,"unit":"Stk","price":25.00,"amount":100.00}],` +
	`"tags":["q1","consulting"],"updated_by":"jdoe"}`

// TestObjectsReadLazily: fields found by scanning the JSON text read as
// the decoded document does, escapes, repeated keys and spacing included.
func TestObjectsReadLazily(t *testing.T) {
	e := invoice(` { "a\u0062c" : "x\"y" , "n" : { "deep" : [1, {"k": "v"}], "s": "t" }, "dup": 1, "dup": 2,
		"neg": -1.5e2, "t": true, "nil": null, "str\\": "q" } `)
	for _, expr := range []string{
		`data.abc == "x\"y"`,
		`data.n.s == "t"`,
		`data.n.deep[1].k == "v"`,
		`data.dup == 2`,
		`data.neg == -150.0`,
		`data.t == true`,
		`data.nil == null`,
		`data["str\\"] == "q"`,
		`"abc" in data && !("zzz" in data)`,
		`size(data) == 7`,
		`data.n == {"deep": [1, {"k": "v"}], "s": "t"}`,
		`{"deep": [1, {"k": "v"}], "s": "t"} == data.n`,
		`data.n.exists(k, k == "s")`,
		`has(data.n.s) && !has(data.n.x)`,
		`data.?n.?s.orValue("") == "t"`,
	} {
		if got, err := match(t, expr, e); !got || err != nil {
			t.Errorf("%s: got %v, %v; want true", expr, got, err)
		}
	}
}

// TestParseInput: the attributes read from the stored form are the
// event's, escapes included, and a stored form that is no event is an
// error.
func TestParseInput(t *testing.T) {
	e := invoice(`{"total": 5}`)
	e.Subject, e.Source = `INV-"ä"\1`, "/erp/\u00e4"
	e.Extensions = map[string]json.RawMessage{"tenant": json.RawMessage(`"x"`)}
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	in, err := ParseInput(b, stored)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := Compile(`subject == "INV-\"ä\"\\1" && source == "/erp/ä" && id == "e-1" && type == "invoice.changed" && time == timestamp("2026-03-01T11:59:58.5Z") && data.total == 5.0`)
	if ok, err := p.Match(in); !ok || err != nil {
		t.Fatalf("got %v, %v", ok, err)
	}
	if _, err := ParseInput([]byte(`{"id": "x", "data": {`), stored); err == nil {
		t.Fatal("a truncated event was read")
	}
}
