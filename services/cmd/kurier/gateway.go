package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"kurier.dev/services/gateway"
	"kurier.dev/services/internal/config"
	"kurier.dev/services/internal/telemetry"
	"kurier.dev/services/internal/web"
	"kurier.dev/services/openapi"
)

// runGateway serves the HTTP APIs and the admin gRPC API of a replicated
// deployment on one address each, forwarding to the services' replicas.
// It does not connect to NATS.
func runGateway(ctx context.Context, args []string) error {
	cfg := gateway.DefaultConfig()
	var httpListen, grpcListen, logLevel string
	var grace time.Duration
	set := config.New("kurier gateway")
	set.String(&httpListen, "http-listen", "KURIER_HTTP_LISTEN", ":8080", "HTTP address of the APIs, and of the gateway's health and metrics")
	set.String(&grpcListen, "grpc-listen", "KURIER_GRPC_LISTEN", ":9090", "gRPC address of the admin API")
	set.String(&cfg.Ingest, "ingest-url", "KURIER_GATEWAY_INGEST", cfg.Ingest, `base URL of the ingest replicas; "" for none`)
	set.String(&cfg.Queue, "queue-url", "KURIER_GATEWAY_QUEUE", cfg.Queue, `base URL of the queue replicas; "" for none`)
	set.String(&cfg.AddressSync, "addresssync-url", "KURIER_GATEWAY_ADDRESSSYNC", cfg.AddressSync, `base URL of the address-book sync replicas; "" for none`)
	set.String(&cfg.Console, "console-url", "KURIER_GATEWAY_CONSOLE", cfg.Console, `base URL of the web console's replicas; "" for none`)
	set.String(&cfg.Admin, "admin-addr", "KURIER_GATEWAY_ADMIN", cfg.Admin, `host:port of the admin replicas' gRPC API; "" for none`)
	set.Duration(&cfg.DialTimeout, "dial-timeout", "KURIER_GATEWAY_DIAL_TIMEOUT", cfg.DialTimeout, "how long connecting to one replica may take before the next is tried")
	set.String(&logLevel, "log-level", "KURIER_LOG_LEVEL", "info", "debug, info, warn or error")
	set.Duration(&grace, "shutdown-grace", "KURIER_SHUTDOWN_GRACE", 30*time.Second, "how long a stop waits for requests in flight")
	if stop, err := parse(set, args); stop {
		return err
	}
	log := telemetry.Logger(os.Stderr, logLevel).With("role", "gateway")
	reg := telemetry.Registry()
	gw, err := gateway.New(cfg, log, reg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	web.Health(mux, func(context.Context) error { return nil })
	mux.Handle("GET /metrics", telemetry.Handler(reg))
	// The document of the APIs the gateway forwards to: the same build's.
	openapi.Routes(mux)
	if err := gw.Routes(mux); err != nil {
		return err
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		web.WriteError(w, r, web.Errf(http.StatusNotFound, "not_found", "", "no service has the path %s", r.URL.Path))
	})

	hl, err := net.Listen("tcp", httpListen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	gl, err := net.Listen("tcp", grpcListen)
	if err != nil {
		hl.Close()
		return fmt.Errorf("grpc listen: %w", err)
	}
	log.Info("http listening", "addr", hl.Addr().String())
	log.Info("grpc listening", "addr", gl.Addr().String())
	err = runAll(ctx, []func(context.Context) error{
		// Paths as every service takes them: one that is not clean is 404,
		// where mux would redirect it to a path its sender never meant.
		func(ctx context.Context) error { return web.Serve(ctx, hl, web.Routes(mux), grace, log) },
		func(ctx context.Context) error { return web.Serve(ctx, gl, gw.GRPC(), grace, log) },
	})
	log.Info("stopped")
	return err
}
