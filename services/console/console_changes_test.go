package console

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestTailEndsWithSession: a live tail opened near the end of a session
// ends when the session does; it does not stream on for as long as the
// connection lasts.
func TestTailEndsWithSession(t *testing.T) {
	e := startTTL(t, 3*time.Second)
	payloadSub(t, e, "acme", "ERP")
	e.signIn(t)
	resp := e.openTail(t, "acme")
	defer resp.Body.Close()
	ended := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, resp.Body); close(ended) }()
	select {
	case <-ended:
	case <-time.After(8 * time.Second):
		t.Fatal("the tail outlived its session by 5 s")
	}
	// The client's reconnection is refused, which stops an EventSource.
	if code, _, _ := e.get(t, "/console/orgs/acme/deliveries/tail"); code != http.StatusUnauthorized {
		t.Fatalf("tail after the session ended: %d", code)
	}
}

// TestSignInWithUnsendableToken: a token that cannot be the admin token
// (a character gRPC metadata cannot carry) is refused as a wrong token,
// not answered as if the admin API were down.
func TestSignInWithUnsendableToken(t *testing.T) {
	e := start(t)
	for _, token := range []string{"console-test-token\u00a00123456789", "console-test\x01token", "tökén"} {
		code, body, h := e.post(t, "/console/login", url.Values{"token": {token}})
		if code != http.StatusUnauthorized || !strings.Contains(body, "not the admin token") || h.Get("Set-Cookie") != "" {
			t.Errorf("token %q: %d %s", token, code, body)
		}
	}
}

// TestRedeliverRangeWithoutFrom: a range form that lost its from field is
// refused naming it; it is not taken for "redeliver all".
func TestRedeliverRangeWithoutFrom(t *testing.T) {
	e := start(t)
	erp := payloadSub(t, e, "acme", "ERP")
	e.deadLetter(t, "acme", erp, 7, "e7")
	csrf := e.signIn(t)
	code, body, _ := e.post(t, "/console/orgs/acme/deadletters/redeliver",
		url.Values{"csrf": {csrf}, "subscription_id": {erp}, "to": {"2025-01-31T08:00"}})
	if code != http.StatusBadRequest || !strings.Contains(body, "<code>from</code>") {
		t.Errorf("range without from: %d, want 400 naming from", code)
	}
	if got := e.dead(t, "acme", erp); got != "[e7]" {
		t.Errorf("dead letters after a refused range: %s", got)
	}
}
