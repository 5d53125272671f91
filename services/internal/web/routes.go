package web

import (
	"net/http"
	"path"
	"slices"
)

var (
	errNoRoute   = &Error{Status: http.StatusNotFound, Code: "not_found", Field: "path", Message: "no such API path"}
	errNoMethod  = &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Field: "method", Message: "the path does not take this method; Allow names those it takes"}
	errNotRouted = &Error{Status: http.StatusNotFound, Code: "not_found", Field: "path", Message: "the path has empty, . or .. segments; send it in its plain form"}
)

// Router is where an API adds its routes: an http.ServeMux, or a Mux
// that keeps them.
type Router interface {
	Handle(pattern string, h http.Handler)
	HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request))
}

// Mux is an http.ServeMux that keeps the patterns registered on it, so
// that a process can tell which routes it serves: ServeMux cannot.
type Mux struct {
	*http.ServeMux
	patterns []string
}

// NewMux makes an empty Mux.
func NewMux() *Mux { return &Mux{ServeMux: http.NewServeMux()} }

// Handle registers h for pattern, as http.ServeMux does.
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

// HandleFunc registers h for pattern, as http.ServeMux does.
func (m *Mux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.ServeMux.HandleFunc(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

// Patterns answers the patterns registered through m, in their order.
func (m *Mux) Patterns() []string { return slices.Clone(m.patterns) }

// Routes answers in the error form what mux would answer in plain text:
// 404 for a path it has no route for, 405 (with Allow) for a method a path
// does not take. A path with empty, "." or ".." segments, which mux would
// redirect to its clean form, is 404 as well: API clients do not follow
// the redirect of a DELETE, and an id taken from such a path (a%2F..%2Fb
// decodes to a/../b) is nothing a caller was given.
func Routes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect && cleanPath(r.URL.Path) != r.URL.Path {
			WriteError(w, r, errNotRouted)
			return
		}
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // sets the path values, which Handler does not
			return
		}
		// Without a pattern, h is mux's 404 or 405 answer: run it only to
		// learn which, and the methods it allows.
		c := &capture{header: http.Header{}}
		h.ServeHTTP(c, r)
		if c.status != http.StatusMethodNotAllowed {
			WriteError(w, r, errNoRoute)
			return
		}
		w.Header().Set("Allow", c.header.Get("Allow"))
		WriteError(w, r, errNoMethod)
	})
}

// cleanPath is the form mux redirects a path to.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// capture keeps the status and headers of an answer, dropping its body.
type capture struct {
	header http.Header
	status int
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *capture) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return len(b), nil
}
