// Package schema holds the JSON Schemas orgs give their event types' data:
// compiling one (with github.com/santhosh-tekuri/jsonschema, draft 2020-12
// unless the schema names another), checking data against it, and storing
// them per org and type in the schemas bucket, where ingest follows them.
package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// MaxBytes bounds a schema's text. Ingest holds every org's compiled
// schemas in memory, and compiling one must stay quick.
const MaxBytes = 64 << 10

// location is the URL a schema is compiled under: what its relative $refs
// resolve against (to URLs that noLoader refuses: a URN would resolve them
// to the schema itself), and what the library's messages name it by. The
// .invalid domain is never looked up.
const location = "https://kurier.invalid/schema.json"

// Schema is a compiled schema.
type Schema struct{ s *jsonschema.Schema }

// noLoader answers every $ref outside the schema itself: a schema must not
// make the admin or ingest service read a URL or a local file (the
// library's default loader reads files).
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s is not loaded: a schema may refer only to itself and the JSON Schema meta-schemas", url)
}

// Compile checks and compiles a schema's text. Its errors are the
// library's, fit to show the one who wrote the schema.
func Compile(text string) (*Schema, error) {
	if len(text) > MaxBytes {
		return nil, fmt.Errorf("is %d bytes, at most %d are allowed", len(text), MaxBytes)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("is not JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	if err := c.AddResource(location, doc); err != nil {
		return nil, fmt.Errorf("add schema: %w", err)
	}
	s, err := c.Compile(location)
	if err != nil {
		return nil, err
	}
	return &Schema{s}, nil
}

// Violation is data a schema refuses: where, as a path from the data's
// root ("" for the root, ".total", ".items[0].price", `["unit price"]`),
// and why, in the library's words.
type Violation struct {
	Path    string
	Message string
}

var printer = message.NewPrinter(language.English)

// Check checks JSON data against the schema; nil data is JSON null, as
// Kurier keeps no difference between the two. It answers nil when the
// data matches.
func (s *Schema) Check(data json.RawMessage) *Violation {
	var v any
	if data != nil {
		var err error
		if v, err = jsonschema.UnmarshalJSON(bytes.NewReader(data)); err != nil {
			return &Violation{Message: "is not JSON: " + err.Error()}
		}
	}
	err := s.s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &Violation{Message: err.Error()}
	}
	e := leaf(ve)
	loc := e.InstanceLocation
	if r, ok := e.ErrorKind.(*kind.Required); ok && len(r.Missing) > 0 {
		// Named at the missing member rather than at its object.
		loc = append(slices.Clip(loc), r.Missing[0])
	}
	return &Violation{Path: path(v, loc), Message: e.ErrorKind.LocalizedString(printer)}
}

// leaf picks the error to report: the library nests them by schema and
// $ref, and a subschema whose keywords failed groups their errors. Within
// those it follows the first place in the data, so the same data is
// always reported alike; an anyOf or oneOf is reported as itself, since
// which of its branches was meant is not known.
func leaf(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(e.Causes) > 0 {
		switch e.ErrorKind.(type) {
		case *kind.Schema, *kind.Reference, *kind.Group, *kind.AllOf:
		default:
			return e
		}
		e = slices.MinFunc(e.Causes, func(a, b *jsonschema.ValidationError) int {
			return slices.Compare(a.InstanceLocation, b.InstanceLocation)
		})
	}
	return e
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// path writes a location in the data v, given as the library's tokens,
// the way a JavaScript expression reads: .name for a member whose name is
// an identifier, ["name"] (a JSON string) for any other, [n] for an item.
func path(v any, tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		switch c := v.(type) {
		case []any:
			b.WriteString("[" + t + "]")
			if i, err := strconv.Atoi(t); err == nil && i >= 0 && i < len(c) {
				v = c[i]
			}
			continue
		case map[string]any:
			v = c[t]
		default:
			v = nil
		}
		if identifier.MatchString(t) {
			b.WriteString("." + t)
		} else {
			q, _ := json.Marshal(t) // a string always encodes
			b.WriteString("[" + string(q) + "]")
		}
	}
	return b.String()
}
