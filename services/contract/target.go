package contract

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// Target is a running Kurier as the suites reach it.
type Target struct {
	HTTP  string                     // base URL of the HTTP APIs, e.g. http://127.0.0.1:8080
	GRPC  string                     // host:port of the admin API, for calls with other tokens
	Admin adminv1.AdminServiceClient // with the admin token
	// Hooks receives the webhooks (pings and payloads) of the suites'
	// subscriptions.
	Hooks *Receiver
	// NotifyDelay is the ping delay the target runs with; suites wait a
	// few of them for a ping.
	NotifyDelay time.Duration
}

// Run runs every suite against tg, each as a subtest.
func Run(t *testing.T, tg Target) {
	t.Run("Ingest", func(t *testing.T) { Ingest(t, tg) })
	t.Run("Feed", func(t *testing.T) { Feed(t, tg) })
	t.Run("Queue", func(t *testing.T) { QueueAPI(t, tg) })
	t.Run("AddressBook", func(t *testing.T) { AddressBook(t, tg) })
	t.Run("Admin", func(t *testing.T) { AdminAPI(t, tg) })
	t.Run("OpenAPI", func(t *testing.T) { OpenAPI(t, tg) })
	t.Run("Tracing", func(t *testing.T) { Tracing(t, tg) })
}

// Org makes an organisation of its own for a suite, with a key of the
// given scopes, and answers its id and the key's secret. The id is new on
// every call, so a suite may run any number of times against one target.
func (tg Target) Org(t testing.TB, scopes ...adminv1.KeyScope) (org, key string) {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	org = "ct-" + hex.EncodeToString(b)
	ctx := context.Background()
	if _, err := tg.Admin.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: org, DisplayName: "Contract " + org}); err != nil {
		t.Fatalf("create org %s: %v", org, err)
	}
	created, err := tg.Admin.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: org, Scopes: scopes, Description: "contract suite"})
	if err != nil {
		t.Fatalf("create key of %s: %v", org, err)
	}
	return org, created.GetSecret()
}

// Dial connects to the admin API at addr (host:port, no TLS) with token,
// until the test ends.
func Dial(t testing.TB, addr, token string) adminv1.AdminServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(Bearer(token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return adminv1.NewAdminServiceClient(cc)
}

// Bearer is gRPC per-call credentials with an admin token.
type Bearer string

func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (Bearer) RequireTransportSecurity() bool { return false }
