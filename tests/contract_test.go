package tests

import (
	"net/http/httptest"
	"testing"
	"time"

	"kurier.dev/services/contract"
	"kurier.dev/tests/harness"
)

// TestContract runs the public API suites against the kurier binary
// (`kurier all`); services/cmd/kurier runs them in-process and
// tests/compose against the docker-compose deployment.
func TestContract(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_NOTIFY_DELAY=500ms"}})
	hooks := httptest.NewServer(&contract.Recorder{})
	t.Cleanup(hooks.Close)
	contract.Run(t, contract.Target{
		HTTP:        k.HTTP,
		GRPC:        k.GRPC,
		Admin:       k.Admin(t),
		Hooks:       &contract.Receiver{URL: hooks.URL, API: hooks.URL},
		NotifyDelay: 500 * time.Millisecond,
	})
}

// TestContractThroughGateway runs the suites through `kurier gateway` in
// front of `kurier all`, as clients of a replicated deployment reach it:
// the gateway must pass every answer on as the services give it.
func TestContractThroughGateway(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_NOTIFY_DELAY=500ms"}})
	gw := harness.Start(t, harness.Options{Role: "gateway", Env: []string{
		"KURIER_GATEWAY_INGEST=" + k.HTTP, "KURIER_GATEWAY_QUEUE=" + k.HTTP, "KURIER_GATEWAY_ADDRESSSYNC=" + k.HTTP,
		"KURIER_GATEWAY_CONSOLE=" + k.HTTP, "KURIER_GATEWAY_ADMIN=" + k.GRPC,
	}})
	hooks := httptest.NewServer(&contract.Recorder{})
	t.Cleanup(hooks.Close)
	contract.Run(t, contract.Target{
		HTTP:        gw.HTTP,
		GRPC:        gw.GRPC,
		Admin:       contract.Dial(t, gw.GRPC, k.Token),
		Hooks:       &contract.Receiver{URL: hooks.URL, API: hooks.URL},
		NotifyDelay: 500 * time.Millisecond,
	})
}
