package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"kurier.dev/services/internal/config"
)

// healthcheck probes a running service once, for container healthchecks
// in images that have no shell or curl: an HTTP URL must answer 2xx, a
// gRPC server must report SERVING. Any failure is an error, so the
// process exits 1.
func healthcheck(ctx context.Context, args []string) error {
	var url, grpcAddr string
	var timeout time.Duration
	set := config.New("kurier healthcheck")
	set.String(&url, "url", "KURIER_HEALTHCHECK_URL", defaultProbeURL(), "URL that must answer 2xx; by default the /readyz of this container's service")
	set.String(&grpcAddr, "grpc", "KURIER_HEALTHCHECK_GRPC", "", "host:port of a gRPC server whose grpc.health.v1 status must be SERVING; replaces -url")
	set.Duration(&timeout, "timeout", "KURIER_HEALTHCHECK_TIMEOUT", 3*time.Second, "how long the probe may take")
	if stop, err := parse(set, args); stop {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if grpcAddr != "" {
		return probeGRPC(ctx, grpcAddr)
	}
	return probeHTTP(ctx, url)
}

// defaultProbeURL is the readiness endpoint of the service running beside
// the probe, on the port its KURIER_HTTP_LISTEN names: a container
// healthcheck runs with the container's environment.
func defaultProbeURL() string {
	port := "8080"
	if _, p, err := net.SplitHostPort(os.Getenv("KURIER_HTTP_LISTEN")); err == nil && p != "" {
		port = p
	}
	return "http://" + net.JoinHostPort("127.0.0.1", port) + "/readyz"
}

func probeHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("healthcheck: %s answered %s: %s", url, resp.Status, body)
	}
	return nil
}

func probeGRPC(ctx context.Context, addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("healthcheck: %s: %w", addr, err)
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("healthcheck: %s is %s", addr, s)
	}
	return nil
}
