package tests

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"kurier.dev/tests/harness"
)

// checkPromtool runs a scrape through `promtool check metrics`, which
// lints names, unit suffixes, help texts and label names against
// Prometheus' conventions, and fails on any finding. Without promtool it
// skips: `make promtool` installs it, and CI does so before the tests, so
// there a missing promtool fails.
func checkPromtool(t *testing.T, scrape []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		msg := "no promtool: `make promtool` installs Debian's prometheus package, which has it"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestGatewayMetricsPassPromtool checks the metrics of `kurier gateway`,
// which registers its own: an upstream that refuses connections makes its
// failure counter show up with its label.
func TestGatewayMetricsPassPromtool(t *testing.T) {
	t.Parallel()
	gw := harness.Start(t, harness.Options{Role: "gateway", Env: []string{
		"KURIER_GATEWAY_INGEST=http://127.0.0.1:1", "KURIER_GATEWAY_QUEUE=", "KURIER_GATEWAY_ADDRESSSYNC=",
		"KURIER_GATEWAY_CONSOLE=", "KURIER_GATEWAY_ADMIN=",
	}})
	resp, err := http.Post(gw.HTTP+"/v1/events", "application/cloudevents+json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("through a gateway to no ingest: %d", resp.StatusCode)
	}
	scrape := scrapeBody(t, gw.HTTP)
	if !strings.Contains(string(scrape), `kurier_gateway_upstream_failures_total{upstream="ingest"} 1`) {
		t.Fatalf("the failure is not counted:\n%s", scrape)
	}
	checkPromtool(t, scrape)
}
