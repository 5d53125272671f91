// Command kurier-bench measures Kurier on an embedded JetStream server,
// beside the raw JetStream figure of the same run as the reference. It is
// not part of the kurier binary; run it from the repository with
// `go run ./services/cmd/kurier-bench <benchmark> [flags]`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `kurier-bench measures Kurier on an embedded JetStream server.

Usage:
  kurier-bench ingest   ingest throughput and latency, every ingest path beside raw JetStream publishing
  kurier-bench ping     the dispatcher (a kurier process) under a burst of changes to many ping subscriptions
  kurier-bench deliver  payload deliveries: throughput by fan-out against direct POSTs, latency at fixed rates
  kurier-bench queue    the queue API: posts, peeks and deletes, long-poll wake-ups
  kurier-bench sync     full address-book syncs (a kurier addresssync process) of 10,000 and 100,000 persons

Run "kurier-bench <benchmark> -h" for a benchmark's flags. Results are in BENCHMARKS.md.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "ingest":
		err = benchIngest(ctx, args)
	case "ping":
		err = benchPing(ctx, args)
	case "deliver":
		err = benchDeliver(ctx, args)
	case "queue":
		err = benchQueue(ctx, args)
	case "sync":
		err = benchSync(ctx, args)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "kurier-bench: unknown benchmark %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	// A benchmark's -h has printed its flags: that is no failure.
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "kurier-bench:", err)
		os.Exit(1)
	}
}
