package admin_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/admin"
	"kurier.dev/services/admin/admintest"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/telemetry"
)

// logBuffer is the admin service's log, written by its goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// has tells whether a line with msg names id.
func (l *logBuffer) has(msg, id string) bool {
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, `"msg":"`+msg+`"`) && strings.Contains(line, `"request_id":"`+id+`"`) {
			return true
		}
	}
	return false
}

// TestCallRequestIDs follows each call's id into the response's header
// metadata, the RequestInfo detail of a failure and the log, for unary
// and streaming calls.
func TestCallRequestIDs(t *testing.T) {
	const token = "request-id-token-0123456789"
	var logs logBuffer
	addr, _ := admintest.ServeLogging(t, admin.Config{Token: token, Limits: bus.DefaultLimits()}, telemetry.Logger(&logs, "debug"))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	api := adminv1.NewAdminServiceClient(cc)
	newID := regexp.MustCompile(`^[0-9a-f]{16}$`)
	// answered checks the header's id against what was sent, and answers it.
	answered := func(t *testing.T, given string, kept bool, header metadata.MD) string {
		t.Helper()
		v := header.Get("x-request-id")
		if len(v) != 1 || kept && v[0] != given || !kept && !newID.MatchString(v[0]) {
			t.Fatalf("sent %q, answered %q", given, v)
		}
		return v[0]
	}
	// detail checks that err carries id as its RequestInfo.
	detail := func(t *testing.T, err error, code codes.Code, id string) {
		t.Helper()
		st := status.Convert(err)
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RequestInfo); ok && ri.GetRequestId() == id && st.Code() == code {
				return
			}
		}
		t.Fatalf("%v: details %v, want %s with RequestInfo %q", err, st.Details(), code, id)
	}
	logged := func(t *testing.T, msg, id string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !logs.has(msg, id) {
			if time.Now().After(deadline) {
				t.Fatalf("no log line %q with request_id %q in:\n%s", msg, id, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	for i, c := range []struct {
		name, given string
		kept        bool
	}{
		{"given", "call-4711", true},
		{"missing", "", false},
		{"too long", strings.Repeat("x", 129), false},
		{"with a space", "a b", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
			if c.given != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", c.given)
			}
			// A call that succeeds, and logs in the handler.
			var header metadata.MD
			if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "org" + string(rune('a'+i))}, grpc.Header(&header)); err != nil {
				t.Fatal(err)
			}
			id := answered(t, c.given, c.kept, header)
			logged(t, "org created", id)
			logged(t, "grpc call", id)

			// A call that fails.
			header = nil
			_, err := api.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: "0123456789abcdef0123"}, grpc.Header(&header))
			detail(t, err, codes.NotFound, answered(t, c.given, c.kept, header))

			// A stream refused for want of a token.
			sctx := context.Background()
			if c.given != "" {
				sctx = metadata.AppendToOutgoingContext(sctx, "x-request-id", c.given)
			}
			stream, err := api.TailDeliveries(sctx, &adminv1.TailDeliveriesRequest{OrgId: "orga"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			id = answered(t, c.given, c.kept, stream.Trailer())
			detail(t, err, codes.Unauthenticated, id)
			logged(t, "grpc call", id)
		})
	}
}
