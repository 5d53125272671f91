package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"kurier.dev/services/internal/config"
)

// TestSecretsNotInUsage: secrets given in the environment take effect but
// are not shown as the defaults of `-h`, nor in the usage a mistyped flag
// prints, which end up in terminals, CI logs and container logs.
func TestSecretsNotInUsage(t *testing.T) {
	secrets := map[string]string{
		"KURIER_ADMIN_TOKEN":   "admin-token-from-the-environment",
		"KURIER_NATS_PASSWORD": "nats-password-from-the-environment",
		"KURIER_NATS_TOKEN":    "nats-token-from-the-environment",
		"KURIER_CONSOLE_KEY":   "console-key-from-the-environment",
	}
	for env, v := range secrets {
		t.Setenv(env, v)
	}
	for _, r := range []role{"all", "admin", "ingest", "console"} {
		for _, args := range [][]string{{"-h"}, {"--no-such-flag"}} {
			var s settings
			set := config.New("kurier " + string(r))
			bind(r, set, &s)
			var out bytes.Buffer
			set.FlagSet().SetOutput(&out)
			_, _ = parse(set, args)
			for env, v := range secrets {
				if strings.Contains(out.String(), v) {
					t.Errorf("kurier %s %v prints %s:\n%s", r, args, env, out.String())
				}
			}
			if r == "admin" && s.adminToken != secrets["KURIER_ADMIN_TOKEN"] {
				t.Errorf("kurier admin: token %q, want the environment's", s.adminToken)
			}
			if r == "ingest" && (s.natsAuth.Password != secrets["KURIER_NATS_PASSWORD"] || s.natsAuth.Token != secrets["KURIER_NATS_TOKEN"]) {
				t.Errorf("kurier ingest: NATS password %q, token %q, want the environment's", s.natsAuth.Password, s.natsAuth.Token)
			}
		}
	}
}

// TestBadSettingsRefused: a value that cannot work ends `kurier all` at
// start with an error naming the setting, instead of being accepted (or
// retried forever) and misbehaving later.
func TestBadSettingsRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string // in the error
	}{
		{"negative shutdown grace", []string{"--shutdown-grace", "-1s"}, "shutdown-grace"},
		{"zero header timeout", []string{"--http-header-timeout", "0s"}, "http-header-timeout"},
		{"negative rotation grace", []string{"--secret-rotation-grace", "-1h"}, "secret-rotation-grace"},
		{"negative disable-after", []string{"--disable-after", "-1h"}, "disable-after"},
		{"negative events age", []string{"--events-max-age", "-1h"}, "events-max-age"},
		{"negative log age", []string{"--log-max-age", "-1h"}, "log-max-age"},
		{"dedupe window beyond events age", []string{"--events-max-age", "1h", "--dedupe-window", "2h"}, "dedupe-window"},
		{"zero event data", []string{"--max-event-data", "0"}, "max-event-data"},
		{"event data beyond a stored message", []string{"--max-event-data", "2000000"}, "max-event-data"},
		{"negative queue size", []string{"--queue-max-messages", "-1"}, "queue-max-messages"},
		{"zero sync body", []string{"--sync-max-body", "0"}, "sync-max-body"},
		{"zero replicas", []string{"--replicas", "0"}, "replicas"},
		{"zero unacked pings", []string{"--notify-max-unacked", "0"}, "notify-max-unacked"},
		{"unknown log level", []string{"--log-level", "verbose"}, "log-level"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			httpAddr := freeAddr(t)
			args := append([]string{
				"--data-dir", t.TempDir(), "--nats-listen", "off", "--log-level", "error",
				"--http-listen", httpAddr, "--grpc-listen", freeAddr(t), "--admin-token", "bad-settings-admin-token-0123",
			}, c.args...)
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			done := make(chan error, 1)
			go func() { done <- serve(ctx, "all", args) }()
			deadline := time.After(10 * time.Second)
			for {
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), c.want) {
						t.Fatalf("%v: %v; want an error naming %s", c.args, err, c.want)
					}
					return
				case <-deadline:
					stop()
					t.Fatalf("%v: neither refused nor ready within 10s (ended with %v)", c.args, <-done)
				case <-time.After(100 * time.Millisecond):
				}
				if resp, err := http.Get("http://" + httpAddr + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						stop()
						<-done
						t.Fatalf("%v: accepted, kurier all started", c.args)
					}
				}
			}
		})
	}
}

// TestByteSizesAsNatsServer: sizes take the suffixes nats-server's
// configuration takes, "Gi" among them.
func TestByteSizesAsNatsServer(t *testing.T) {
	for in, want := range map[string]int64{"64K": 64 << 10, "1Gi": 1 << 30, "512Mi": 512 << 20, "2Ti": 2 << 40, "8ki": 8 << 10} {
		t.Setenv("KURIER_TEST_SIZE", in)
		set := config.New("test")
		var got int64
		set.Bytes(&got, "size", "KURIER_TEST_SIZE", 1, "")
		if err := set.Parse(nil); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
}
