package natstest

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/natsd"
)

// Log discards what it is given; tests assert behaviour, not log lines.
var Log = slog.New(slog.NewTextHandler(io.Discard, nil))

// Start runs the embedded server of `kurier all` (natsd) in a temporary
// folder, lays down the streams and buckets with l, and connects to it.
// Everything stops when the test ends.
func Start(t testing.TB, l bus.Limits) *jet.Conn {
	t.Helper()
	srv, err := natsd.Start(natsd.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	conn, err := jet.Connect("", "test", Log, nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.NC.Close)
	if err := bus.Ensure(context.Background(), conn.JS, l); err != nil {
		t.Fatal(err)
	}
	return conn
}
