package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/dispatcher/dispatchertest"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/natstest"
)

// TestSubTest: sub test asks a dispatcher to send a test event and prints
// the receiver's answer, as text and as JSON; without a dispatcher, or for
// a queue subscription, it says why not. The rate flags set the limit sub
// get shows, and the server refuses a burst without a limit.
func TestSubTest(t *testing.T) {
	addr, conn := startAdminBus(t)
	ctlAt(t, addr, "org", "create", "acme").ok(t)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "got it\x1b[2J")
	}))
	t.Cleanup(rcv.Close)
	r := ctlAt(t, addr, "sub", "create", "--org", "acme", "--system", "shop", "--type", "invoice.changed", "--url", rcv.URL+"/hook",
		"--rate-limit", "5", "--rate-burst", "2", "-o", "json").ok(t)
	id := unmarshal[adminv1.CreateSubscriptionResponse](t, r.stdout).GetSubscription().GetSubscriptionId()
	if out := ctlAt(t, addr, "sub", "get", id).ok(t).stdout; !strings.Contains(out, "RATE LIMIT:") || !strings.Contains(out, "5/s, burst 2") {
		t.Errorf("sub get shows no rate limit:\n%s", out)
	}
	ctlAt(t, addr, "sub", "update", id, "--rate-limit", "0").fails(t, 1, "rate_limit_burst")

	ctlAt(t, addr, "sub", "test", id).fails(t, 1, "no dispatcher is running")

	dispatchertest.Run(t, conn)
	natstest.WaitFor(t, 10*time.Second, "a dispatcher answering tests", func() bool {
		return ctlAt(t, addr, "sub", "test", id, "-o", "json").code == 0
	})
	out := ctlAt(t, addr, "sub", "test", id).ok(t).stdout
	if !strings.HasPrefix(out, "POST "+rcv.URL+"/hook?") || !strings.Contains(out, "\n202 in ") || !strings.Contains(out, "\n\ngot it [2J\n") {
		t.Errorf("sub test printed\n%q", out)
	}
	resp := unmarshal[adminv1.SendTestEventResponse](t, ctlAt(t, addr, "sub", "test", id, "-o", "json").ok(t).stdout)
	if resp.GetStatus() != http.StatusAccepted || resp.GetResponse() != "got it\x1b[2J" || resp.GetEventId() == "" {
		t.Errorf("sub test -o json = %v", resp)
	}

	queue := subs.Subscription{ID: subs.NewID(), Org: "acme", System: "q", EventTypes: []string{"invoice.changed"}, Mode: subs.ModeQueue,
		QueueID: "q1", Active: true, Created: time.Now()}
	ctx := context.Background()
	store, err := subs.Open(ctx, conn.JS)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(ctx, queue); err != nil {
		t.Fatal(err)
	}
	ctlAt(t, addr, "sub", "test", queue.ID).fails(t, 1, "subscription_id: a queue subscription makes no requests")
}
