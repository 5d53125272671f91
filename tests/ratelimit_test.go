package tests

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/contract"
	"kurier.dev/tests/harness"
)

// TestRateLimit: with a low limit configured, every endpoint that takes a
// key (a queue's secret, for senders) answers 429 in the error form with
// Retry-After once the key's burst is spent, stores nothing of the refused
// request, holds up no other key, and lets the key through again after
// Retry-After.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	const burst = 3
	k, adm := startWithOrg(t, harness.Options{Env: []string{"KURIER_RATE_LIMIT=1", "KURIER_RATE_BURST=" + strconv.Itoa(burst)}}, "acme")
	ctx := context.Background()
	updateOrg(t, adm, &adminv1.Org{OrgId: "acme", AddressbookSyncEnabled: true, AllowPersonDeletion: true},
		"addressbook_sync_enabled", "allow_person_deletion")
	// Each endpoint gets keys of its own, so that none spends another's.
	newKey := func(scope adminv1.KeyScope) string {
		key, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{scope}})
		if err != nil {
			t.Fatal(err)
		}
		return key.GetSecret()
	}
	nc := k.Conn(t)
	absent := strings.Repeat("0f", 16)
	n := 0 // numbers the bodies that must differ
	// do calls an endpoint with a key in header; a %d in body is numbered.
	do := func(method, path, header, prefix, body, ct string) func(key string) contract.Answer {
		return func(key string) contract.Answer {
			h := hdr(header, prefix+key)
			if ct != "" {
				h["Content-Type"] = ct
			}
			n++
			return contract.Do(t, contract.Request{Method: method, URL: k.HTTP + path, Header: h, Body: []byte(strings.ReplaceAll(body, "%d", strconv.Itoa(n)))})
		}
	}
	// A sender's credential is a queue: "<queueId> <secret>".
	newQueue := func() string {
		q := contract.CreateQueue(t, k.HTTP, newKey(adminv1.KeyScope_KEY_SCOPE_PARTNER))
		return q.QueueID + " " + q.NotificationSecret
	}
	send := func(cred string) contract.Answer {
		id, secret, _ := strings.Cut(cred, " ")
		return do(http.MethodPost, "/api/queues/"+id+"/messages", "X-COMNORM-NOTIFICATION-SECRET", "", `{"n":%d}`, "")(secret)
	}
	endpoints := []struct {
		name, field string
		ok          int
		credential  func() string // a fresh one
		call        func(credential string) contract.Answer
	}{
		{"POST /v1/events", "Authorization", 202, func() string { return newKey(adminv1.KeyScope_KEY_SCOPE_INGEST) },
			do(http.MethodPost, "/v1/events", "Authorization", "Bearer ", structured("rate-%d", "invoice.changed", ""), "application/cloudevents+json")},
		{"GET /v1/changes", "Authorization", 200, func() string { return newKey(adminv1.KeyScope_KEY_SCOPE_CHANGES) },
			do(http.MethodGet, "/v1/changes?system=shop&type=5", "Authorization", "Bearer ", "", "")},
		{"POST /api/queues", "X-PARTNER-KEY", 200, func() string { return newKey(adminv1.KeyScope_KEY_SCOPE_PARTNER) },
			do(http.MethodPost, "/api/queues", "X-PARTNER-KEY", "", "", "")},
		{"DELETE /api/queues/{queueId}", "X-PARTNER-KEY", 404, func() string { return newKey(adminv1.KeyScope_KEY_SCOPE_PARTNER) },
			do(http.MethodDelete, "/api/queues/"+absent, "X-PARTNER-KEY", "", "", "")},
		{"GET /api/queues/{queueId}/messages", "X-PARTNER-KEY", 404, func() string { return newKey(adminv1.KeyScope_KEY_SCOPE_PARTNER) },
			do(http.MethodGet, "/api/queues/"+absent+"/messages", "X-PARTNER-KEY", "", "", "")},
		{"DELETE /api/queues/{queueId}/messages/{messageId}", "X-PARTNER-KEY", 404, func() string { return newKey(adminv1.KeyScope_KEY_SCOPE_PARTNER) },
			do(http.MethodDelete, "/api/queues/"+absent+"/messages/1", "X-PARTNER-KEY", "", "", "")},
		{"POST /api/queues/{queueId}/messages", "X-COMNORM-NOTIFICATION-SECRET", 200, newQueue, send},
		{"POST /rest/addressbook/sync", "Authorization", 200, func() string { return newKey(adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK) },
			do(http.MethodPost, "/rest/addressbook/sync", "Authorization", "", `{"personList":[]}`, "application/json")},
		{"DELETE /rest/addressbook/external/persons/{externalDbId}", "Authorization", 404, func() string { return newKey(adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK) },
			do(http.MethodDelete, "/rest/addressbook/external/persons/nobody", "Authorization", "", "", "")},
		{"NATS kurier.ingest.<org>", "Kurier-Key", 202, func() string { return newKey(adminv1.KeyScope_KEY_SCOPE_INGEST) },
			func(key string) contract.Answer {
				n++
				return natsIngest(t, nc, "acme", key, fmt.Sprint("rate-nats-", n))
			}},
	}

	js := jsOf(t, k)
	keys := make([]string, len(endpoints))
	for i, ep := range endpoints {
		keys[i] = ep.credential()
		for j := range burst {
			if a := ep.call(keys[i]); a.Status != ep.ok {
				t.Fatalf("%s: request %d of the burst: %d %s", ep.name, j+1, a.Status, a.Body)
			}
		}
		// The next is refused, and changes nothing; a slow machine may have
		// earned a token meanwhile, which lets one more through first.
		limited := contract.Answer{Status: ep.ok}
		for try := 0; try < 2 && limited.Status == ep.ok; try++ {
			before := harness.ReadStreams(t, js)
			if limited = ep.call(keys[i]); limited.Status != ep.ok {
				if changed := harness.ReadStreams(t, js).Changed(before); changed != nil {
					t.Errorf("%s: a refused request changed %v", ep.name, changed)
				}
			}
		}
		e, ok := limited.ErrorForm()
		retry, err := strconv.Atoi(limited.Header.Get("Retry-After"))
		if limited.Status != http.StatusTooManyRequests || !ok || e.Code != "rate_limited" || e.Field != ep.field || err != nil || retry < 1 || retry > 2 {
			t.Errorf("%s over the limit: %d Retry-After %q %s", ep.name, limited.Status, limited.Header.Get("Retry-After"), limited.Body)
		}
		// Another key (another queue, for senders) is not held up.
		if a := ep.call(ep.credential()); a.Status != ep.ok {
			t.Errorf("%s: another key is held up: %d %s", ep.name, a.Status, a.Body)
		}
	}
	// A second later each key has a request again.
	time.Sleep(time.Second)
	for i, ep := range endpoints {
		if a := ep.call(keys[i]); a.Status != ep.ok {
			t.Errorf("%s: after Retry-After: %d %s", ep.name, a.Status, a.Body)
		}
	}
	t.Logf("rate limit: %d endpoints, each refused past a burst of %d at 1 request/s, and each again after Retry-After", len(endpoints), burst)
}
