package jet_test

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"kurier.dev/services/internal/jet"
	"kurier.dev/services/tlstest"
)

// serve starts a NATS server with opts on a loopback port.
func serve(t *testing.T, opts server.Options) string {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(&opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return s.ClientURL()
}

// connects tells whether Connect gets through with a.
func connects(t *testing.T, url string, a jet.Auth) bool {
	t.Helper()
	opts, err := a.Options()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := jet.Connect(url, "test", slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		return false
	}
	conn.NC.Close()
	return true
}

func TestAuth(t *testing.T) {
	for name, tc := range map[string]struct {
		server    server.Options
		good, bad jet.Auth
	}{
		"user and password": {server.Options{Username: "kurier", Password: "s3cret"}, jet.Auth{User: "kurier", Password: "s3cret"}, jet.Auth{User: "kurier", Password: "wrong"}},
		"token":             {server.Options{Authorization: "t0ken"}, jet.Auth{Token: "t0ken"}, jet.Auth{}},
	} {
		t.Run(name, func(t *testing.T) {
			url := serve(t, tc.server)
			if !connects(t, url, tc.good) {
				t.Error("refused with the right credentials")
			}
			if connects(t, url, tc.bad) {
				t.Error("let in with wrong credentials")
			}
		})
	}
}

func TestAuthTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := tlstest.Certificate(t, dir, "ca", nil, nil)
	tlstest.Certificate(t, dir, "server", ca, caKey)
	tlstest.Certificate(t, dir, "client", ca, caKey)
	file := func(name string) string { return filepath.Join(dir, name) }

	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: file("server.pem"), KeyFile: file("server-key.pem"), CaFile: file("ca.pem"), Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, server.Options{TLSConfig: tc, TLSVerify: true, TLSTimeout: 5})
	if !connects(t, url, jet.Auth{TLSCert: file("client.pem"), TLSKey: file("client-key.pem"), TLSCA: file("ca.pem")}) {
		t.Error("refused with a client certificate the server trusts")
	}
	if connects(t, url, jet.Auth{TLSCA: file("ca.pem")}) {
		t.Error("let in without a client certificate")
	}
	if _, err := (jet.Auth{TLSCert: file("client.pem")}).Options(); err == nil {
		t.Error("a certificate without its key accepted")
	}
}
