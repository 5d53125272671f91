// Package admintest runs the real admin gRPC service for the tests of the
// service and of its clients.
package admintest

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/admin"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

// Serve runs an embedded JetStream server with cfg's limits and the admin
// service with cfg on a free loopback port until the test ends, and
// answers the service's address and the bus connection, for tests that put
// records where the service reads them.
func Serve(t testing.TB, cfg admin.Config) (string, *jet.Conn) {
	t.Helper()
	return ServeLogging(t, cfg, natstest.Log)
}

// ServeLogging is Serve with the service logging to log, for tests that
// read what it logs.
func ServeLogging(t testing.TB, cfg admin.Config, log *slog.Logger) (string, *jet.Conn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conn := natstest.Start(t, cfg.Limits)
	svc, err := admin.New(ctx, cfg, conn, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- svc.Serve(ctx, lis, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("admin serve: %v", err)
		}
	})
	return lis.Addr().String(), conn
}
