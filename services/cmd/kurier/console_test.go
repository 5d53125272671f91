package main

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"kurier.dev/services/tlstest"
)

// TestConsole: `kurier all` serves the console at /console/ from its own
// admin API, over TLS too, trusting the certificate it serves; `kurier
// console` reaches an admin API elsewhere, checking its certificate
// against KURIER_CONSOLE_ADMIN_CA, and replicas that share a key share
// sessions.
func TestConsole(t *testing.T) {
	const token = "console-admin-token-0123456789"
	ca, cert, key := tlstest.Server(t)
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	all := start(t, "all", httpAddr,
		"--data-dir", t.TempDir(), "--nats-listen", "off", "--log-level", "error",
		"--http-listen", httpAddr, "--grpc-listen", grpcAddr, "--admin-token", token,
		"--grpc-tls-cert", cert, "--grpc-tls-key", key,
	)
	signIn(t, all, token, http.StatusSeeOther)

	consoleAt := func(args ...string) string {
		addr := freeAddr(t)
		return start(t, "console", addr, append([]string{"--http-listen", addr, "--log-level", "error", "--console-admin", grpcAddr}, args...)...)
	}
	const sessionKey = "console-session-key-for-the-test"
	one := consoleAt("--console-admin-ca", ca, "--console-key", sessionKey)
	two := consoleAt("--console-admin-ca", ca, "--console-key", sessionKey)
	cookie := signIn(t, one, token, http.StatusSeeOther)
	for _, base := range []string{one, two} {
		if code := get(t, base+"/console/", cookie); code != http.StatusOK {
			t.Errorf("%s with the session of %s: %d", base, one, code)
		}
	}
	if code := get(t, all+"/console/", cookie); code != http.StatusSeeOther {
		t.Errorf("a session of another key opened: %d", code)
	}
	// Without the CA, the console speaks plaintext to an API that speaks
	// TLS only: nobody signs in, and the page says why.
	signIn(t, consoleAt(), token, http.StatusBadGateway)
}

// TestTrustOwn: the console of `kurier all` trusts its own certificate,
// and no other, whatever CA signed it.
func TestTrustOwn(t *testing.T) {
	load := func() *tls.Config {
		_, cert, key := tlstest.Server(t)
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{Certificates: []tls.Certificate{pair}}
	}
	own, other := load(), load()
	for _, tc := range []struct {
		name   string
		server *tls.Config
		ok     bool
	}{{"its own", own, true}, {"another", other, false}} {
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.TLS = tc.server
		srv.StartTLS()
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: trustOwn(own)}}
		resp, err := client.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		srv.Close()
		if (err == nil) != tc.ok {
			t.Errorf("%s certificate: %v", tc.name, err)
		}
	}
}

// signIn posts the sign-in form and answers the session cookie, if the
// answer was want.
func signIn(t *testing.T, base, token string, want int) *http.Cookie {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(base+"/console/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("sign-in at %s: %s, want %d", base, resp.Status, want)
	}
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, "kurier") {
			return c
		}
	}
	if want == http.StatusSeeOther {
		t.Fatalf("sign-in at %s set no cookie", base)
	}
	return nil
}

// get answers the status of a GET with the cookie, following no redirect.
func get(t *testing.T, u string, cookie *http.Cookie) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.AddCookie(cookie)
	resp, err := (&http.Transport{}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
