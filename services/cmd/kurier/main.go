// Command kurier runs Kurier's services: all of them in one process on an
// embedded JetStream server (`kurier all`), or one of them against a NATS
// cluster (`kurier ingest`, `kurier admin`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // scratch images have no zoneinfo; digests need time zones
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `kurier runs Kurier, the change-notification and webhook platform.

Usage:
  kurier all          every service in one process, on an embedded JetStream server
  kurier ingest       the ingest service (POST /v1/events, NATS kurier.ingest.<org>)
  kurier dispatcher   the dispatcher: pings, payload webhooks, queue delivery, daily digests
  kurier admin        the admin gRPC service
  kurier queue        the queue service (ComNorm pull queues, /api/queues)
  kurier addresssync  the address-book sync service (FE2 API, /rest/addressbook)
  kurier console      the web console (/console/), before the admin API (KURIER_CONSOLE_ADMIN)
  kurier gateway      one HTTP and one gRPC address in front of replicated services (docker-compose)
  kurier healthcheck  probe a service's /readyz (or gRPC health) once: exit 0 or 1, for container healthchecks
  kurier version      print the version

Run "kurier <command> -h" for a command's settings. Every setting can also be
given as the environment variable named in its help.
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
	case "all", "ingest", "dispatcher", "admin", "queue", "addresssync", "console":
		err = serve(ctx, role(cmd), args)
	case "gateway":
		err = runGateway(ctx, args)
	case "healthcheck":
		err = healthcheck(ctx, args)
	case "version", "--version", "-v":
		fmt.Println("kurier", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "kurier: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kurier:", err)
		os.Exit(1)
	}
}

// parse reads a command's flags. Asking for help (-h) prints it and is no
// error, so stop says whether the command ends here, and err why.
func parse(fs interface{ Parse([]string) error }, args []string) (stop bool, err error) {
	err = fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return true, nil
	}
	return err != nil, err
}
