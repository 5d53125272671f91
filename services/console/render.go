package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// parsePages parses each page with the layout, into a set of its own: a
// page file defines "title" and "content", and its set is named after it.
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"path": path,
		"when": when,
	}
	files, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, f := range files {
		name := strings.TrimSuffix(f[len("templates/"):], ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", f)
		if err != nil {
			return nil, fmt.Errorf("console: page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// view is what every page is given: its data and the session, for the
// layout's sign-out form and every form's CSRF token.
type view struct {
	Session session
	Data    any
}

// render answers a page. It is executed into a buffer first, so a failing
// template answers an error rather than half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, s session, data any) {
	var b bytes.Buffer
	page, ok := c.pages[name]
	if !ok {
		c.log.Error("console page missing", "page", name)
		http.Error(w, "the page could not be made", http.StatusInternalServerError)
		return
	}
	if err := page.ExecuteTemplate(&b, "page", view{Session: s, Data: data}); err != nil {
		c.log.Error("console page", "page", name, "err", err)
		http.Error(w, "the page could not be made", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Nothing but the console's own files: no inline script runs, so
	// hostile data that escaped escaping still could not.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// failData is the error page's.
type failData struct {
	Status  int
	Message string
	Field   string
}

// fail answers an error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s session, code int, message string) {
	c.render(w, r, code, "error", s, failData{Status: code, Message: message})
}

// apiFail answers an admin API error as a page with the status it stands
// for and the API's message, naming the field at fault when it does. An
// ended sign-in (the token changed) sends the user to sign in again.
func (c *Console) apiFail(w http.ResponseWriter, r *http.Request, s session, err error) {
	st := status.Convert(err)
	code := http.StatusBadGateway
	switch st.Code() {
	case codes.Unauthenticated:
		c.setCookie(w, r, "", time.Time{})
		http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
		return
	case codes.InvalidArgument:
		code = http.StatusBadRequest
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
		code = http.StatusConflict
	case codes.ResourceExhausted:
		code = http.StatusServiceUnavailable
	}
	d := failData{Status: code, Message: st.Message()}
	for _, det := range st.Details() {
		if br, ok := det.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			d.Field = br.GetFieldViolations()[0].GetField()
		}
	}
	c.render(w, r, code, "error", s, d)
}

// static serves the embedded CSS and script.
func (c *Console) static() http.Handler {
	sub, _ := fs.Sub(staticFiles, "static")
	return http.StripPrefix(Prefix+"/static/", http.FileServerFS(sub))
}

// when shows a time in UTC to the second; "" for none.
func when(t *timestamppb.Timestamp) string {
	if t == nil || !t.IsValid() || t.AsTime().IsZero() {
		return ""
	}
	return t.AsTime().UTC().Format("2006-01-02 15:04:05Z")
}

func urlSegment(s string) string { return url.PathEscape(s) }
