// Package natsd runs the embedded NATS server with JetStream that
// `kurier all` and the tests use, so that no separate setup is needed.
package natsd

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
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
	// The server reports what stops it from starting, such as a taken
	// address, only to its logger, and then waits for readiness that
	// never comes.
	var fatal fatalLog
	s.SetLogger(&fatal, false, false)
	s.Start()
	if err := fatal.err(); err != nil {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats: not ready within 30s")
	}
	return s, nil
}

// fatalLog keeps the first fatal error the server logs and drops the rest
// of its log.
type fatalLog struct {
	mu    sync.Mutex
	first error
}

func (l *fatalLog) Fatalf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.first != nil {
		return
	}
	// "Error listening on port: %s, %q" carries the listener's error,
	// which names the address and why.
	for _, a := range v {
		if err, ok := a.(error); ok {
			l.first = err
			return
		}
	}
	l.first = fmt.Errorf(format, v...)
}

func (l *fatalLog) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

func (*fatalLog) Noticef(string, ...any) {}
func (*fatalLog) Warnf(string, ...any)   {}
func (*fatalLog) Errorf(string, ...any)  {}
func (*fatalLog) Debugf(string, ...any)  {}
func (*fatalLog) Tracef(string, ...any)  {}
