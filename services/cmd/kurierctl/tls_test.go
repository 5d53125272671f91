package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"kurier.dev/services/tlstest"
)

// TestTLS: an admin API with a certificate speaks TLS only. A client that
// trusts its CA gets through, kurierctl with --ca or KURIER_CA among them;
// a plaintext client is refused, and so is a TLS client that does not
// trust the certificate.
func TestTLS(t *testing.T) {
	ca, cert, key := tlstest.Server(t)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serveAdmin(t, &tls.Config{Certificates: []tls.Certificate{pair}})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	trusting, err := credentials.NewClientTLSFromFile(ca, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
		ok    bool
	}{
		{"TLS, trusting the CA", trusting, true},
		{"plaintext", insecure.NewCredentials(), false},
		{"TLS, trusting the system's CAs only", credentials.NewTLS(&tls.Config{}), false},
	} {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tc.creds))
		if err != nil {
			t.Fatal(err)
		}
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		cc.Close()
		if (err == nil) != tc.ok {
			t.Errorf("%s: health check answered %v", tc.name, err)
		}
	}

	ctlAt(t, addr, "--ca", ca, "org", "create", "acme", "--name", "ACME GmbH").ok(t)
	t.Setenv("KURIER_ADMIN_SERVER", addr)
	t.Setenv("KURIER_ADMIN_TOKEN", testToken)
	t.Setenv("KURIER_CA", ca)
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"org", "list"}, nil, &out, &errOut); code != 0 || !strings.Contains(out.String(), "acme") {
		t.Errorf("with KURIER_CA: exit %d\n%s%s", code, out.String(), errOut.String())
	}

	ctlAt(t, addr, "--timeout", "5s", "org", "list").
		fails(t, 1, "hint: is the admin service running at "+addr, "Does it speak TLS")
	ctlAt(t, addr, "--tls", "--timeout", "5s", "org", "list").
		fails(t, 1, "certificate signed by unknown authority")
	ctlAt(t, addr, "--ca", cert+".missing", "org", "list").
		fails(t, 1, "--ca "+cert+".missing")

	// And --ca against a server without TLS fails rather than falling back.
	plain := startAdmin(t)
	ctlAt(t, plain, "--ca", ca, "--timeout", "5s", "org", "list").fails(t, 1, "hint: is the admin service running at "+plain)
}
