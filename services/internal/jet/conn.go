// Package jet holds the ways Kurier uses JetStream beyond the client
// library's: the connection, publishing many messages at once, reads
// through a stream's leader, batched and ordered reads, timers made of
// scheduled messages, what a refused publish means, and retrying setup
// until a cluster answers. The names these work on are bus's.
package jet

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Conn is a NATS connection with its JetStream context.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream
}

// MaxPending bounds a connection's publications awaiting a stream's
// answer; past it, publishing waits.
const MaxPending = 4096

// PublishTimeout ends the wait for a publication's answer. One never
// answered (a stream leader died holding it) would otherwise stay pending
// as long as the connection, holding its message and a place of
// MaxPending: a few leader losses would leave no place for anything.
const PublishTimeout = 30 * time.Second

// Connect dials NATS and keeps reconnecting for as long as the process
// lives: a service outlives any one NATS node. Extra options (credentials,
// TLS, an in-process server) are passed through.
func Connect(url, name string, log *slog.Logger, opts ...nats.Option) (*Conn, error) {
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(MaxPending), jetstream.WithPublishAsyncTimeout(PublishTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Conn{NC: nc, JS: js}, nil
}

// Auth is how a service proves itself to an existing NATS cluster and
// checks the servers' certificates. Empty fields are not used.
type Auth struct {
	Creds          string // a .creds file (user JWT and NKey seed) of a decentralised account
	User, Password string
	Token          string
	// TLSCert and TLSKey are a client certificate, for servers that
	// verify clients; TLSCA is the CA file the servers' certificates are
	// checked against, where the system's roots do not hold it.
	TLSCert, TLSKey, TLSCA string
}

// Options turns the settings into connection options.
func (a Auth) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if a.Creds != "" {
		opts = append(opts, nats.UserCredentials(a.Creds))
	}
	if a.User != "" || a.Password != "" {
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.Token != "" {
		opts = append(opts, nats.Token(a.Token))
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return nil, errors.New("nats client certificate: give both the certificate and its key")
	}
	if a.TLSCert != "" {
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	if a.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	return opts, nil
}
