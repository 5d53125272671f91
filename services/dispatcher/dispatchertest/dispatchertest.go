// Package dispatchertest runs the real dispatcher for the tests of the
// services and clients that need one beside them.
package dispatchertest

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/dispatcher"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

// Run runs a dispatcher on conn until the test ends, allowed to deliver
// to private addresses: the tests' receivers listen on loopback.
func Run(t testing.TB, conn *jet.Conn) {
	t.Helper()
	cfg := dispatcher.DefaultConfig()
	cfg.AllowPrivate = true
	d, err := dispatcher.New(context.Background(), cfg, conn, natstest.Log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("dispatcher: %v", err)
		}
	})
}
