package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"kurier.dev/services/openapi"
)

// apiDoc is the OpenAPI document every exchange of Do is checked
// against: the one this build serves at GET /openapi.json.
type apiDoc struct {
	doc    *openapi3.T
	router routers.Router
}

// loadOpenAPI loads and validates the OpenAPI document, once.
var loadOpenAPI = sync.OnceValues(func() (*apiDoc, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openapi.Document)
	if err != nil {
		return nil, fmt.Errorf("load openapi.json: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi.json is not valid: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route openapi.json: %w", err)
	}
	return &apiDoc{doc: doc, router: router}, nil
})

var filterOptions = &openapi3filter.Options{
	// Every answer's status must be one the operation documents.
	IncludeResponseStatus: true,
	// The request is rebuilt for the check: its defaults go nowhere.
	SkipSettingDefaults: true,
	MultiError:          true,
	AuthenticationFunc:  credentialSent,
}

// credentialSent checks that a request carries the credential a security
// scheme names, in the form it names; whether Kurier knows it is for the
// answer to tell.
func credentialSent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	v := in.RequestValidationInput.Request.Header
	switch {
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"):
		if key, ok := strings.CutPrefix(v.Get("Authorization"), "Bearer "); !ok || key == "" {
			return errors.New("no Authorization: Bearer <key>")
		}
	case s.Type == "apiKey" && s.In == "header":
		if v.Get(s.Name) == "" {
			return fmt.Errorf("no %s header", s.Name)
		}
	default:
		return fmt.Errorf("security scheme %s %s is not checked", s.Type, s.In)
	}
	return nil
}

// check validates one exchange against the document. The answer always:
// an operation's answers against those it documents, a method a
// documented path does not take against the error form. The request only
// where Kurier did not refuse it: the suites send requests broken on
// purpose, which the document need not describe, but a request the
// document rules out must not be taken. Paths the document does not name,
// and headers too large for Go's HTTP server, are not checked.
func (d *apiDoc) check(r Request, a Answer) error {
	req, err := http.NewRequest(r.Method, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return err
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	route, params, err := d.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return nil
	case a.Status == http.StatusRequestHeaderFieldsTooLarge:
		// Go's HTTP server answers it, in plain text, before any route:
		// the document's description says so once for all.
		return nil
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return d.checkNotAllowed(a)
	case err != nil:
		return fmt.Errorf("route: %w", err)
	}
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: filterOptions}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && a.Status < 400 {
		return fmt.Errorf("the request, answered %d, breaks the document: %w", a.Status, err)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 a.Status,
		Header:                 a.Header,
		Body:                   io.NopCloser(bytes.NewReader(a.Body)),
		Options:                filterOptions,
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("the answer %d %.300q breaks the document: %w", a.Status, a.Body, err)
	}
	return nil
}

// checkNotAllowed checks the answer to a method a documented path does
// not take: 405 in the error form, with Allow.
func (d *apiDoc) checkNotAllowed(a Answer) error {
	if a.Status != http.StatusMethodNotAllowed || a.Header.Get("Allow") == "" {
		return fmt.Errorf("a method the document does not name for the path was answered %d (Allow %q), not 405", a.Status, a.Header.Get("Allow"))
	}
	var v any
	if err := json.Unmarshal(a.Body, &v); err != nil {
		return fmt.Errorf("the answer 405 %.300q is not JSON: %w", a.Body, err)
	}
	if err := d.doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		return fmt.Errorf("the answer 405 %.300q is not in the error form: %w", a.Body, err)
	}
	return nil
}
