package natstest

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"kurier.dev/services/internal/jet"
)

// Connect connects once more to the server that conn, made by Start, is
// connected to: another replica, which a test can cut off alone by
// closing its connection. With a Lag, what the connection receives
// (replies, acknowledgements, messages) comes as late as the Lag says,
// while what it sends arrives at once, as over a network that stalls one
// way. The connection is closed when the test ends.
func Connect(t testing.TB, conn *jet.Conn, lag *Lag) *jet.Conn {
	t.Helper()
	p := conn.NC.Opts.InProcessServer
	if lag != nil {
		p = lagged{p, lag}
	}
	c, err := jet.Connect("", "test", Log, nats.InProcessServer(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.NC.Close)
	return c
}

// Lag is how late a connection made by Connect receives: the zero Lag is
// not late at all.
type Lag struct{ d atomic.Int64 }

// Set makes what the connection receives come d after it arrived, from
// now on and for what it has not yet taken: a long d holds everything
// back, a shorter one lets it go.
func (l *Lag) Set(d time.Duration) { l.d.Store(int64(d)) }

type lagged struct {
	nats.InProcessConnProvider
	lag *Lag
}

func (p lagged) InProcessConn() (net.Conn, error) {
	c, err := p.InProcessConnProvider.InProcessConn()
	if err != nil {
		return nil, err
	}
	lc := &lagConn{Conn: c, lag: p.lag, in: make(chan received, 1<<16)}
	go lc.receive()
	return lc, nil
}

type received struct {
	data []byte
	at   time.Time
}

// lagConn reads what arrives as it arrives, noting when, and hands it to
// the client once it is as old as the lag.
type lagConn struct {
	net.Conn
	lag  *Lag
	in   chan received
	err  error // why receiving ended; set before in is closed
	rest []byte
}

func (c *lagConn) receive() {
	for {
		b := make([]byte, 32<<10)
		n, err := c.Conn.Read(b)
		if n > 0 {
			c.in <- received{b[:n], time.Now()}
		}
		if err != nil {
			c.err = err
			close(c.in)
			return
		}
	}
}

func (c *lagConn) Read(b []byte) (int, error) {
	if len(c.rest) == 0 {
		r, ok := <-c.in
		if !ok {
			return 0, c.err
		}
		// Polled, so that a change of the lag holds or frees what waits.
		for time.Since(r.at) < time.Duration(c.lag.d.Load()) {
			time.Sleep(2 * time.Millisecond)
		}
		c.rest = r.data
	}
	n := copy(b, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}
