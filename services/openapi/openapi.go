// Package openapi holds the OpenAPI 3.1 description of Kurier's HTTP APIs
// (openapi.json, written by hand from the handlers), which every process
// serves at GET /openapi.json. The contract suites validate every request
// they send and every answer they get against it, and a process checks on
// start that the routes it serves are the ones it describes, so the
// description cannot drift from the code.
package openapi

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"kurier.dev/services/internal/web"
)

// Document is the OpenAPI document, as served.
//
//go:embed openapi.json
var Document []byte

// Process is the tag of the operations every process serves: health,
// metrics and the document itself. The others are tagged with the role
// that serves them.
const Process = "process"

// Routes adds GET /openapi.json to mux.
func Routes(mux web.Router) {
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(Document)
	})
}

// operation is a documented route: a method and a path template.
type operation struct {
	method, path string
	tags         []string
}

// pattern is the operation as a ServeMux pattern, "POST /v1/events".
func (o operation) pattern() string { return o.method + " " + o.path }

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// operations answers the documented operations.
func operations() ([]operation, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(Document, &doc); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	var ops []operation
	for path, item := range doc.Paths {
		for key, raw := range item {
			if !slices.Contains(methods, key) {
				continue // parameters, summary and the like
			}
			var op struct {
				Tags []string `json:"tags"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, fmt.Errorf("openapi: %s %s: %w", key, path, err)
			}
			ops = append(ops, operation{method: strings.ToUpper(key), path: path, tags: op.Tags})
		}
	}
	slices.SortFunc(ops, func(a, b operation) int { return strings.Compare(a.pattern(), b.pattern()) })
	return ops, nil
}

// Check compares the patterns a process serves with the document: every
// pattern must be a documented operation, and every operation with a tag
// serves says it serves must be among the patterns. The process and the
// document are of one build, so a mismatch is a mistake in the code or
// the document, found on the first start of either.
func Check(patterns []string, serves func(tag string) bool) error {
	ops, err := operations()
	if err != nil {
		return err
	}
	documented := map[string]bool{}
	var errs []error
	for _, o := range ops {
		documented[o.pattern()] = true
		if slices.ContainsFunc(o.tags, serves) && !slices.Contains(patterns, o.pattern()) {
			errs = append(errs, fmt.Errorf("%s is documented but not served", o.pattern()))
		}
	}
	for _, p := range patterns {
		if !documented[p] {
			errs = append(errs, fmt.Errorf("%s is served but not documented", p))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("openapi.json and the routes disagree: %w", errors.Join(errs...))
	}
	return nil
}
