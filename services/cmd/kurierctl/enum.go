package main

import (
	"fmt"
	"iter"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// enumWords maps a proto enum to the lower-case words the command line
// uses, such as "ingest" for KEY_SCOPE_INGEST. The words come from the
// generated descriptor, so a value added to the API needs no change here.
type enumWords struct {
	kind   string // what a value is called in messages: "scope"
	desc   protoreflect.EnumDescriptor
	prefix string // stripped from value names: "KEY_SCOPE_"
}

// values lists the enum's values but the unspecified zero, in
// declaration order.
func (e enumWords) values() []protoreflect.EnumValueDescriptor {
	vals := e.desc.Values()
	var out []protoreflect.EnumValueDescriptor
	for i := range vals.Len() {
		if v := vals.Get(i); v.Number() != 0 {
			out = append(out, v)
		}
	}
	return out
}

func (e enumWords) allowed() []string {
	var words []string
	for _, v := range e.values() {
		words = append(words, e.word(v.Number()))
	}
	return words
}

func (e enumWords) parse(word string) (protoreflect.EnumNumber, error) {
	for _, v := range e.values() {
		if strings.EqualFold(string(v.Name()), e.prefix+word) {
			return v.Number(), nil
		}
	}
	return 0, fmt.Errorf("unknown %s %q; allowed: %s", e.kind, word, strings.Join(e.allowed(), ", "))
}

// word is the command-line word of n; a value newer than this binary
// shows as its number.
func (e enumWords) word(n protoreflect.EnumNumber) string {
	v := e.desc.Values().ByNumber(n)
	if v == nil {
		return strconv.Itoa(int(n))
	}
	return strings.ToLower(strings.TrimPrefix(string(v.Name()), e.prefix))
}

// listItems yields the trimmed, non-empty items of a comma-separated flag
// value.
func listItems(v string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" && !yield(item) {
				return
			}
		}
	}
}
