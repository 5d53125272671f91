package console

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/admin"
	"kurier.dev/services/admin/admintest"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

const testToken = "console-test-token-0123456789"

// env is a console before the real admin API, and a browser-like client
// that keeps cookies and follows no redirects.
type env struct {
	url    string
	api    adminv1.AdminServiceClient
	client *http.Client
	// conn is the bus the API reads, for records that only the dispatcher
	// writes (delivery log, dead letters, statistics).
	conn    *jet.Conn
	console *Console
}

func start(t *testing.T) *env {
	t.Helper()
	return startTTL(t, DefaultConfig().SessionTTL)
}

// startTTL is start with a session lifetime of ttl.
func startTTL(t *testing.T, ttl time.Duration) *env {
	t.Helper()
	addr, conn := admintest.Serve(t, admin.Config{Token: testToken, Limits: bus.DefaultLimits()})
	cfg := DefaultConfig()
	cfg.Admin, cfg.SessionTTL = addr, ttl
	c, err := New(cfg, natstest.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	mux := http.NewServeMux()
	c.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return &env{url: srv.URL, api: c.api, conn: conn, console: c, client: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (e *env) get(t *testing.T, p string) (int, string, http.Header) {
	t.Helper()
	resp, err := e.client.Get(e.url + p)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (e *env) post(t *testing.T, p string, form url.Values) (int, string, http.Header) {
	t.Helper()
	resp, err := e.client.PostForm(e.url+p, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// signIn signs in and answers the session's CSRF token, read from a page.
func (e *env) signIn(t *testing.T) string {
	t.Helper()
	if code, body, h := e.post(t, "/console/login", url.Values{"token": {testToken}}); code != http.StatusSeeOther || h.Get("Location") != "/console/" {
		t.Fatalf("sign in: %d %s %v", code, body, h)
	}
	_, body, _ := e.get(t, "/console/")
	_, rest, ok := strings.Cut(body, `name="csrf" value="`)
	if !ok {
		t.Fatalf("no CSRF token on the page: %s", body)
	}
	return rest[:strings.IndexByte(rest, '"')]
}

func TestSignInOut(t *testing.T) {
	e := start(t)
	// Without a session every page sends to the sign-in.
	if code, _, h := e.get(t, "/console/"); code != http.StatusSeeOther || h.Get("Location") != "/console/login" {
		t.Fatalf("no session: %d %v", code, h)
	}
	if code, body, _ := e.post(t, "/console/login", url.Values{"token": {"wrong-token-wrong-token"}}); code != http.StatusUnauthorized || !strings.Contains(body, "not the admin token") {
		t.Fatalf("wrong token: %d %s", code, body)
	}
	resp, err := e.client.PostForm(e.url+"/console/login", url.Values{"token": {testToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ck := resp.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "/console/" || strings.Contains(ck[0].Value, testToken) {
		t.Fatalf("session cookie %+v", ck)
	}
	csrf := e.signIn(t)
	if code, _, _ := e.get(t, "/console/"); code != http.StatusOK {
		t.Fatalf("signed in: %d", code)
	}
	// Signing out without the form's token is refused and changes nothing.
	if code, _, _ := e.post(t, "/console/logout", nil); code != http.StatusForbidden {
		t.Fatalf("sign-out without CSRF token: %d", code)
	}
	if code, _, _ := e.get(t, "/console/"); code != http.StatusOK {
		t.Fatalf("after a refused sign-out: %d", code)
	}
	if code, _, _ := e.post(t, "/console/logout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", code)
	}
	if code, _, _ := e.get(t, "/console/"); code != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", code)
	}
}

func TestHostileNamesAreText(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	md := callToken(ctx)
	if _, err := e.api.CreateOrg(md, &adminv1.CreateOrgRequest{OrgId: "acme", DisplayName: `<script>alert(1)</script>`}); err != nil {
		t.Fatal(err)
	}
	e.signIn(t)
	_, body, h := e.get(t, "/console/")
	if strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatalf("org name not escaped: %s", body)
	}
	if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("no content security policy: %v", h)
	}
}

// callToken is ctx with the admin token, for calls the test makes itself.
func callToken(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+testToken)
}
