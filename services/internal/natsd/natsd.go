// Package natsd runs the embedded NATS server with JetStream that
// `kurier all` and the tests use, so that no separate setup is needed.
package natsd

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options says where the embedded server keeps its data and listens.
type Options struct {
	DataDir string // JetStream file storage
	// Listen is the client address (host:port) for outside tools such as
	// the nats CLI; empty or "off" accepts in-process connections only.
	Listen string
}

// Start starts the server and waits until it takes connections.
func Start(o Options) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "kurier",
		JetStream:  true,
		StoreDir:   o.DataDir,
		NoSigs:     true,
		NoLog:      true,
	}
	if o.Listen == "" || o.Listen == "off" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %q: %w", o.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("nats listen port %q: %w", port, err)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, p
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats: not ready within 30s")
	}
	return s, nil
}
