package console

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// cookieName is the session cookie's.
const cookieName = "kurier_console"

// session is what the cookie carries, sealed: the admin token the user
// signed in with, when the sign-in ends, and the session's CSRF token,
// which every form repeats.
type session struct {
	Token   string    `json:"t"`
	Expires time.Time `json:"e"`
	CSRF    string    `json:"c"`
}

// sealer seals and opens session cookies; a cookie changed or sealed with
// another key does not open.
type sealer struct{ aead cipher.AEAD }

func newSealer(key string) (*sealer, error) {
	k := make([]byte, 32)
	if key == "" {
		_, _ = rand.Read(k)
	} else {
		sum := sha256.Sum256([]byte(key))
		k = sum[:]
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("console: session key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("console: session key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(v session) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(cookieName))), nil
}

func (s *sealer) open(text string) (session, error) {
	var v session
	b, err := base64.RawURLEncoding.DecodeString(text)
	if err != nil || len(b) < s.aead.NonceSize() {
		return v, errors.New("not a session")
	}
	plain, err := s.aead.Open(nil, b[:s.aead.NonceSize()], b[s.aead.NonceSize():], []byte(cookieName))
	if err != nil {
		return v, errors.New("not a session")
	}
	if err := json.Unmarshal(plain, &v); err != nil {
		return v, errors.New("not a session")
	}
	return v, nil
}

// session answers the request's session, if it has one that lasts.
func (c *Console) session(r *http.Request) (session, bool) {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return session{}, false
	}
	s, err := c.seal.open(ck.Value)
	if err != nil || time.Now().After(s.Expires) || s.Token == "" {
		return session{}, false
	}
	return s, true
}

// setCookie sets (or, with an empty value, clears) the session cookie:
// HttpOnly so no script reads it, SameSite=Strict so no other site's page
// sends it, Secure under TLS.
func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, value string, expires time.Time) {
	ck := &http.Cookie{Name: cookieName, Value: value, Path: Prefix + "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || c.cfg.Secure}
	if value == "" {
		ck.MaxAge = -1
	} else {
		ck.Expires = expires
	}
	http.SetCookie(w, ck)
}

// call is a context for admin API calls made with the session's token.
func call(r *http.Request, s session) context.Context {
	return metadata.AppendToOutgoingContext(r.Context(), "authorization", "Bearer "+s.Token)
}

// page serves a page to a signed-in user; anyone else is sent to sign in.
func (c *Console) page(h func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.session(r)
		if !ok {
			http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
			return
		}
		h(w, r, s)
	}
}

// form handles a form posted by a signed-in user with the session's CSRF
// token; without either it is refused and changes nothing.
func (c *Console) form(h func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.session(r)
		if !ok {
			c.fail(w, r, session{}, http.StatusUnauthorized, "Your session has ended: sign in again.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.CSRF)) != 1 {
			c.fail(w, r, s, http.StatusForbidden, "The form came without its security token: reload the page and try again.")
			return
		}
		h(w, r, s)
	}
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.session(r); ok {
		http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", session{}, loginData{})
}

type loginData struct{ Error string }

// login checks the token with the admin API itself: whatever the API
// accepts signs in, and nothing else.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		c.render(w, r, http.StatusBadRequest, "login", session{}, loginData{Error: "Enter the admin token."})
		return
	}
	// gRPC metadata carries printable ASCII only: any other token cannot
	// be the admin token, and the call would fail before reaching the API.
	if strings.IndexFunc(token, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		c.render(w, r, http.StatusUnauthorized, "login", session{}, loginData{Error: "That is not the admin token."})
		return
	}
	s := session{Token: token, Expires: time.Now().Add(c.cfg.SessionTTL), CSRF: randomToken()}
	if _, err := c.api.ListOrgs(call(r, s), &adminv1.ListOrgsRequest{}); err != nil {
		if status.Code(err) == codes.Unauthenticated {
			c.render(w, r, http.StatusUnauthorized, "login", session{}, loginData{Error: "That is not the admin token."})
			return
		}
		c.render(w, r, http.StatusBadGateway, "login", session{}, loginData{Error: "The admin API did not answer: " + status.Convert(err).Message()})
		return
	}
	value, err := c.seal.seal(s)
	if err != nil {
		c.fail(w, r, session{}, http.StatusInternalServerError, "The session could not be made.")
		return
	}
	c.setCookie(w, r, value, s.Expires)
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, _ session) {
	c.setCookie(w, r, "", time.Time{})
	http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
