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
