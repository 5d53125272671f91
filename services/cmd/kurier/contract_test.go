package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
)

// TestContract runs the public API suites against `kurier all` running in
// this process, as `serve` runs it for the binary.
func TestContract(t *testing.T) {
	const token = "contract-admin-token-0123456789"
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	base := start(t, "all", httpAddr,
		"--data-dir", t.TempDir(), "--nats-listen", "off", "--log-level", "error",
		"--http-listen", httpAddr, "--grpc-listen", grpcAddr, "--admin-token", token,
		"--notify-delay", "500ms", "--allow-private-targets",
	)
	hooks := httptest.NewServer(&contract.Recorder{})
	t.Cleanup(hooks.Close)
	contract.Run(t, contract.Target{
		HTTP:        base,
		GRPC:        grpcAddr,
		Admin:       contract.Dial(t, grpcAddr, token),
		Hooks:       &contract.Receiver{URL: hooks.URL, API: hooks.URL},
		NotifyDelay: 500 * time.Millisecond,
	})
}

// start runs serve as role with args until the test ends, and answers
// the base URL of its HTTP listener, httpAddr, once it is ready. Folders
// of t.TempDir() among args were made before, so they are removed after
// serve has stopped.
func start(t *testing.T, r role, httpAddr string, args ...string) string {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, r, args) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("serve %s: %v", r, err)
		}
	})
	base := "http://" + httpAddr
	natstest.WaitFor(t, 30*time.Second, "kurier "+string(r)+" to be ready", func() bool {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("serve %s ended at start: %v", r, err)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

// freeAddr answers a loopback address no one listens on: serve takes its
// addresses as settings, as an operator gives them.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
