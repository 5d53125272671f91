package catalog_test

import (
	"strings"
	"testing"

	"kurier.dev/services/internal/catalog"
)

func TestByCode(t *testing.T) {
	tests := []struct {
		code   string
		want   string
		wantOK bool
	}{
		{"1", "booking.executed", true},
		{"2", "stock.available.changed", true},
		{"3", "salesorder.changed", true},
		{"4", "delivery.changed", true},
		{"5", "invoice.changed", true},
		{"6", "quote.changed", true},
		{"7", "stock.changed", true},
		{"8", "product.changed", true},
		{"9", "address.changed", true},
		{"0", "", false},
		{"10", "", false},
		{"", "", false},
		{"01", "", false},
		{" 1", "", false},
		{"1 ", "", false},
		{"-1", "", false},
		{"a", "", false},
		{"invoice.changed", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			got, ok := catalog.ByCode(tt.code)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ByCode(%q) = %q, %v; want %q, %v", tt.code, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestAll(t *testing.T) {
	all := catalog.All()
	if len(all) == 0 {
		t.Fatal("All() is empty")
	}
	names := map[string]bool{}
	codes := map[string]string{}
	for i, typ := range all {
		if !catalog.ValidType(typ.Name) {
			t.Errorf("All()[%d].Name = %q does not pass ValidType", i, typ.Name)
		}
		if names[typ.Name] {
			t.Errorf("All()[%d].Name = %q is listed twice", i, typ.Name)
		}
		names[typ.Name] = true
		switch typ.System {
		case "collmex":
			if typ.Code == "" {
				t.Errorf("%s: a Collmex type without a code", typ.Name)
			}
		case "profacto", "scopevisio", "fe2":
			if typ.Code != "" {
				t.Errorf("%s: a %s type with Collmex code %q", typ.Name, typ.System, typ.Code)
			}
		default:
			t.Errorf("%s: unknown system %q", typ.Name, typ.System)
		}
		if typ.Code != "" {
			if prev, dup := codes[typ.Code]; dup {
				t.Errorf("code %q is used by %s and %s", typ.Code, prev, typ.Name)
			}
			codes[typ.Code] = typ.Name
			// ByCode agrees with the list.
			if got, ok := catalog.ByCode(typ.Code); !ok || got != typ.Name {
				t.Errorf("ByCode(%q) = %q, %v; want %q, true", typ.Code, got, ok, typ.Name)
			}
		}
		if typ.Title == "" || typ.Source == "" {
			t.Errorf("%s: Title %q, Source %q: both are required", typ.Name, typ.Title, typ.Source)
		}
	}
	if len(codes) != 9 {
		t.Errorf("%d Collmex codes, want 9 (1..9): %v", len(codes), codes)
	}
	for _, want := range []string{"invoice.changed", "project.created", "recurringinvoice.created"} {
		if !names[want] {
			t.Errorf("All() lacks %q", want)
		}
	}
}

// TestAllReturnsCopy: callers cannot change the catalog.
func TestAllReturnsCopy(t *testing.T) {
	a := catalog.All()
	orig := a[0]
	a[0].Name = "changed.by.caller"
	a[0].Code = "5"
	b := catalog.All()
	if b[0] != orig {
		t.Errorf("All()[0] = %+v after a caller changed its copy, want %+v", b[0], orig)
	}
	if got, _ := catalog.ByCode("5"); got != "invoice.changed" {
		t.Errorf("ByCode(\"5\") = %q after a caller changed its copy, want invoice.changed", got)
	}
}

func TestValidType(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"invoice.changed", true},
		{"a.b", true},
		{"stock.available.changed", true},
		{"my_org.x-y.z9", true},
		{"a1.b2", true},
		{"a.b.c.d.e.f.g.h", true}, // eight segments
		{"a" + strings.Repeat("b", 63) + ".c" + strings.Repeat("d", 62), true},  // 128 characters
		{"a" + strings.Repeat("b", 63) + ".c" + strings.Repeat("d", 63), false}, // 129 characters
		{"a.b.c.d.e.f.g.h.i", false}, // nine segments
		{"", false},
		{"invoice", false},
		{"Invoice.changed", false},
		{"invoice.Changed", false},
		{"INVOICE.CHANGED", false},
		{"invoice.*", false},
		{"*.changed", false},
		{"invoice.>", false},
		{"invoice.changed.>", false},
		{">", false},
		{"invoice changed", false},
		{"invoice. changed", false},
		{" invoice.changed", false},
		{"invoice.changed ", false},
		{"invoice.changed\n", false},
		{"invoice\t.changed", false},
		{"invoice..changed", false},
		{".invoice.changed", false},
		{"invoice.changed.", false},
		{".", false},
		{"1invoice.changed", false},
		{"invoice.1changed", false},
		{"_invoice.changed", false},
		{"invoice.-changed", false},
		{"invoice/changed", false},
		{"invoice:changed", false},
		{"invoice.chänged", false},
		{"invoice.changed\x00", false},
	}
	for _, tt := range tests {
		if got := catalog.ValidType(tt.name); got != tt.want {
			t.Errorf("ValidType(%q) (%d chars) = %v, want %v", tt.name, len(tt.name), got, tt.want)
		}
	}
}
