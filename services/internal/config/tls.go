package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
)

// TrustCA is how a client of the admin API reaches it over TLS when told
// which CA certificates (a PEM file) to check its certificate against:
// those, and not the system's. kurierctl's --ca and the console's
// KURIER_CONSOLE_ADMIN_CA both mean this.
func TrustCA(file string) (*tls.Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificate in it")
	}
	return &tls.Config{RootCAs: pool}, nil
}
