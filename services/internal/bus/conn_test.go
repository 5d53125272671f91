package bus_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"kurier.dev/services/internal/bus"
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
func connects(t *testing.T, url string, a bus.Auth) bool {
	t.Helper()
	opts, err := a.Options()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := bus.Connect(url, "test", slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		return false
	}
	conn.NC.Close()
	return true
}

func TestAuth(t *testing.T) {
	for name, tc := range map[string]struct {
		server    server.Options
		good, bad bus.Auth
	}{
		"user and password": {server.Options{Username: "kurier", Password: "s3cret"}, bus.Auth{User: "kurier", Password: "s3cret"}, bus.Auth{User: "kurier", Password: "wrong"}},
		"token":             {server.Options{Authorization: "t0ken"}, bus.Auth{Token: "t0ken"}, bus.Auth{}},
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
	ca, caKey := certificate(t, dir, "ca", nil, nil)
	certificate(t, dir, "server", ca, caKey)
	certificate(t, dir, "client", ca, caKey)
	file := func(name string) string { return filepath.Join(dir, name) }

	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: file("server.pem"), KeyFile: file("server-key.pem"), CaFile: file("ca.pem"), Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, server.Options{TLSConfig: tc, TLSVerify: true, TLSTimeout: 5})
	if !connects(t, url, bus.Auth{TLSCert: file("client.pem"), TLSKey: file("client-key.pem"), TLSCA: file("ca.pem")}) {
		t.Error("refused with a client certificate the server trusts")
	}
	if connects(t, url, bus.Auth{TLSCA: file("ca.pem")}) {
		t.Error("let in without a client certificate")
	}
	if _, err := (bus.Auth{TLSCert: file("client.pem")}).Options(); err == nil {
		t.Error("a certificate without its key accepted")
	}
}

// certificate writes <name>.pem and <name>-key.pem: a CA when parent is
// nil, else a certificate for 127.0.0.1 signed by parent.
func certificate(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	} else {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".pem", "CERTIFICATE", der)
	write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
