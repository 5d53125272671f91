package tests

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// TestRequestIDThroughGateway follows request ids from a client through
// `kurier gateway` to `kurier all`: an id the client gives, and one the
// gateway makes, is the one the service logs and answers.
func TestRequestIDThroughGateway(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{})
	gw := harness.Start(t, harness.Options{Role: "gateway", Env: []string{
		"KURIER_GATEWAY_INGEST=" + k.HTTP, "KURIER_GATEWAY_QUEUE=", "KURIER_GATEWAY_ADDRESSSYNC=",
		"KURIER_GATEWAY_CONSOLE=", "KURIER_GATEWAY_ADMIN=" + k.GRPC,
	}})
	// logged waits for a line of msg naming id in p's log.
	logged := func(t *testing.T, p *harness.Kurier, msg, id string) {
		t.Helper()
		natstest.WaitFor(t, 10*time.Second, "kurier to log "+msg+" with request_id "+id, func() bool {
			for line := range strings.Lines(p.Logs()) {
				if strings.Contains(line, `"msg":"`+msg+`"`) && strings.Contains(line, `"request_id":"`+id+`"`) {
					return true
				}
			}
			return false
		})
	}

	t.Run("http", func(t *testing.T) {
		for _, given := range []string{"e2e-http-4711", ""} {
			h := map[string]string{"Content-Type": "application/cloudevents+json", "Authorization": "Bearer kur_not_a_key"}
			if given != "" {
				h["X-Request-Id"] = given
			}
			a := contract.Do(t, contract.Request{Method: http.MethodPost, URL: gw.HTTP + "/v1/events", Header: h, Body: []byte(`{}`)})
			e, ok := a.ErrorForm() // the body names the id the header does
			if a.Status != http.StatusUnauthorized || !ok || len(a.Header.Values("X-Request-Id")) != 1 {
				t.Fatalf("through the gateway, X-Request-Id %q: %d %v %s", given, a.Status, a.Header.Values("X-Request-Id"), a.Body)
			}
			if given != "" && e.RequestID != given || given == "" && !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(e.RequestID) {
				t.Fatalf("sent X-Request-Id %q, answered %q", given, e.RequestID)
			}
			logged(t, gw, "http request", e.RequestID)
			logged(t, k, "http request", e.RequestID)
		}
	})

	t.Run("grpc", func(t *testing.T) {
		adm := contract.Dial(t, gw.GRPC, k.Token)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "e2e-grpc-4711")
		var header metadata.MD
		_, err := adm.GetSubscription(ctx, &adminv1.GetSubscriptionRequest{SubscriptionId: "0123456789abcdef0123"}, grpc.Header(&header))
		st := status.Convert(err)
		if st.Code() != codes.NotFound || len(header.Get("x-request-id")) != 1 || header.Get("x-request-id")[0] != "e2e-grpc-4711" {
			t.Fatalf("through the gateway: %v, x-request-id %q", err, header.Get("x-request-id"))
		}
		var detail string
		for _, d := range st.Details() {
			if ri, ok := d.(interface{ GetRequestId() string }); ok {
				detail = ri.GetRequestId()
			}
		}
		if detail != "e2e-grpc-4711" {
			t.Fatalf("RequestInfo of %v: %q", st.Details(), detail)
		}
		logged(t, gw, "http request", "e2e-grpc-4711") // the gateway carries gRPC as HTTP/2
		logged(t, k, "grpc call", "e2e-grpc-4711")
	})
}
