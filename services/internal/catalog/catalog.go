// Package catalog names the event types Kurier knows from the systems it is
// compatible with, and the rule every type name follows.
package catalog

import "regexp"

// Type is a known event type.
type Type struct {
	Name   string // the CloudEvents type, e.g. invoice.changed
	System string // collmex, profacto, scopevisio or fe2
	// Code is Collmex's event number in API_NOTIFICATION ("1".."9").
	Code   string
	Title  string // English
	Source string // the original system's own wording
}

var types = []Type{
	{"booking.executed", "collmex", "1", "Booking executed", "Buchung ausgeführt"},
	{"stock.available.changed", "collmex", "2", "Available stock changed", "Verfügbarer Bestand geändert"},
	{"salesorder.changed", "collmex", "3", "Customer order changed", "Kundenauftrag geändert"},
	{"delivery.changed", "collmex", "4", "Delivery changed", "Lieferung geändert"},
	{"invoice.changed", "collmex", "5", "Invoice changed", "Rechnung geändert"},
	{"quote.changed", "collmex", "6", "Quote changed", "Angebot geändert"},
	{"stock.changed", "collmex", "7", "Stock changed", "Bestand geändert"},
	{"product.changed", "collmex", "8", "Product changed", "Produkt geändert"},
	{"address.changed", "collmex", "9", "Customer, supplier, address or member changed", "Kunde oder Lieferant oder Adresse oder Mitglied geändert"},
	{"project.created", "profacto", "", "New project", "Neues Projekt"},
	{"project.granted", "profacto", "", "Project granted", "Projekt erteilt"},
	{"project.billed", "profacto", "", "Project billed", "Projekt abgerechnet"},
	{"customer.created", "profacto", "", "New customer", "Neuer Kunde"},
	{"employee.created", "profacto", "", "New employee", "Neuer Mitarbeiter"},
	{"projecttime.created", "profacto", "", "New project time", "Neue Projektzeit"},
	{"supplier.created", "profacto", "", "New supplier", "Neuer Lieferant"},
	{"purchaseorder.created", "profacto", "", "New order", "Neue Bestellung"},
	{"project.credited", "profacto", "", "Project credited", "Projekt gutgeschrieben"},
	{"project.delivered", "profacto", "", "Project delivered", "Projekt geliefert"},
	{"process.status.changed", "profacto", "", "Process status changed", "Prozessstatus geändert"},
	{"openitem.dunned", "profacto", "", "Open item dunned", "OP gemahnt"},
	{"recurringinvoice.created", "scopevisio", "", "Recurring invoice created", "Wiederkehrende Rechnung erstellt"},
	// Kurier's address-book sync emits these for the persons it changes.
	{"person.created", "fe2", "", "Person created by an address-book sync", "Person angelegt"},
	{"person.updated", "fe2", "", "Person changed, or restored, by an address-book sync", "Person geändert"},
	{"person.deleted", "fe2", "", "Person deleted, or marked deleted, by an address-book sync", "Person gelöscht bzw. als gelöscht markiert"},
}

// All lists the known types in catalog order.
func All() []Type { return append([]Type(nil), types...) }

// covers: a subscription to one of these types is also one to the others,
// since they are kinds of the same change. Collmex's event 9 ("address or
// member changed") is what the address-book sync's person changes are.
var covers = map[string][]string{
	"address.changed": {"person.created", "person.updated", "person.deleted"},
}

// Expand lists the types a subscription to types receives: each of them,
// and those it covers, once.
func Expand(types []string) []string {
	out := make([]string, 0, len(types))
	seen := map[string]bool{}
	for _, t := range types {
		for _, x := range append([]string{t}, covers[t]...) {
			if !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		}
	}
	return out
}

// ByCode maps a Collmex event number to its type name.
func ByCode(code string) (string, bool) {
	for _, t := range types {
		if t.Code != "" && t.Code == code {
			return t.Name, true
		}
	}
	return "", false
}

// MaxTypeLen bounds a type name.
const MaxTypeLen = 128

// typePattern: two to eight dot-separated lower-case segments. Each segment
// becomes a NATS subject token, so no wildcard, space or empty token can
// get through.
var typePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*){1,7}$`)

// ValidType tells whether name can be an event type: the known ones and an
// org's own, as long as they follow the rule.
func ValidType(name string) bool {
	return len(name) <= MaxTypeLen && typePattern.MatchString(name)
}
