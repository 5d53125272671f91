// Package natstest runs real nats-servers with JetStream in the test's own
// process: one embedded server with Kurier's streams and buckets (Start),
// or a cluster whose nodes tests kill and restart (StartCluster), where
// replication and the loss of nodes matter. WaitFor and WaitForErr wait for
// what such servers do in their own time. It sits outside internal/ so that
// the tests module, which runs Kurier's binary against a cluster, can use it
// too.
package natstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
)

// account is where the cluster's streams live: the servers run without
// accounts configured, so everything lands in the global one.
const account = server.DEFAULT_GLOBAL_ACCOUNT

const (
	clusterName = "kurier-test"
	loopback    = "127.0.0.1"
	// readyWait bounds how long one server may take to listen; far more
	// than it needs, so a slow CI machine fails on logic, not on timing.
	readyWait = 10 * time.Second
	// formWait bounds the first meta leader election, which starts only
	// once the routes are up and may need a few election rounds.
	formWait = 30 * time.Second
	// leaderWait is what WaitStreamLeader allows: the worst case for a
	// lost leader is one nats-server election timeout (4-9 s), though on
	// loopback a new one usually takes over in well under a second.
	leaderWait = 10 * time.Second
)

// Cluster is n nats-servers with JetStream, clustered over routes on
// loopback, for tests where replication and leader loss matter. It is
// not safe for concurrent use: drive it from the test's goroutine.
type Cluster struct {
	// Servers holds the current server per node; Restart replaces an
	// entry, so do not keep a *server.Server across a restart.
	Servers []*server.Server

	// Kept per node so that Restart brings a node back as the same
	// member: same name, same store, and ports its peers and clients
	// still dial.
	storeDirs   []string
	clientPorts []int
	routePorts  []int
}

// StartCluster starts n clustered JetStream servers and waits until the
// JetStream meta group has a leader that sees all n peers. Everything
// stops when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 2 {
		t.Fatalf("natstest: a cluster needs at least 2 servers, got %d", n)
	}
	c := &Cluster{
		Servers:     make([]*server.Server, n),
		storeDirs:   make([]string, n),
		clientPorts: make([]int, n),
		routePorts:  freePorts(t, n),
	}
	for i := range n {
		// Taken before the shutdown cleanup is registered, so that the
		// servers stop before their folders are removed (cleanups run
		// last-in first-out).
		c.storeDirs[i] = t.TempDir()
		c.clientPorts[i] = server.RANDOM_PORT
	}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	// All servers are started before any is waited on: each solicits
	// routes to the others and JetStream forms only once they meet.
	for i := range n {
		c.Servers[i] = c.newServer(t, i)
		c.Servers[i].Start()
	}
	for i, s := range c.Servers {
		if !s.ReadyForConnections(readyWait) {
			t.Fatalf("natstest: server n%d not ready within %s", i+1, readyWait)
		}
		// Pinned now that the random port is known, so Restart and the
		// clients' reconnect list agree on where the node lives.
		c.clientPorts[i] = s.Addr().(*net.TCPAddr).Port
	}
	c.waitFormed(t)
	return c
}

// freePorts picks n distinct loopback ports by letting the kernel choose
// and releasing them. Another process may grab one before the server
// binds it; that race is rare enough for tests.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	// Held open until all are picked so the kernel cannot hand out the
	// same port twice.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range n {
		l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
		if err != nil {
			t.Fatalf("natstest: pick a free port: %v", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// newServer builds node i's server without starting it. Options are built
// afresh each time because NewServer fills in and keeps the struct it is
// given.
func (c *Cluster) newServer(t testing.TB, i int) *server.Server {
	t.Helper()
	var routes []string
	for j, p := range c.routePorts {
		if j != i {
			routes = append(routes, fmt.Sprintf("nats://%s:%d", loopback, p))
		}
	}
	opts := &server.Options{
		ServerName: fmt.Sprintf("n%d", i+1),
		Host:       loopback,
		Port:       c.clientPorts[i],
		JetStream:  true,
		StoreDir:   c.storeDirs[i],
		Cluster: server.ClusterOpts{
			Name: clusterName,
			Host: loopback,
			Port: c.routePorts[i],
		},
		Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		NoSigs: true,
		NoLog:  true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: server n%d: %v", i+1, err)
	}
	return s
}

// waitFormed waits until a meta leader exists, knows every running server
// as a JetStream peer, and every running server has caught up with it.
// Without this, the first stream create can fail with "no suitable peers"
// or land while a node is still replaying the meta log.
func (c *Cluster) waitFormed(t testing.TB) {
	t.Helper()
	WaitFor(t, formWait, "the JetStream cluster to form", c.formed)
}

func (c *Cluster) formed() bool {
	var leader *server.Server
	running := 0
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		running++
		if !s.JetStreamIsCurrent() {
			return false
		}
		if s.JetStreamIsLeader() {
			leader = s
		}
	}
	return leader != nil && len(leader.JetStreamClusterPeers()) == running
}

// URLs returns the client URLs of the running servers, comma-separated as
// nats.Connect takes them.
func (c *Cluster) URLs() string {
	var urls []string
	for i, s := range c.Servers {
		if s.Running() {
			urls = append(urls, fmt.Sprintf("nats://%s:%d", loopback, c.clientPorts[i]))
		}
	}
	return strings.Join(urls, ",")
}

// Connect connects to the running servers and lays down Kurier's streams
// and buckets with l; l.Replicas is normally the cluster size. The
// connection is closed when the test ends.
func (c *Cluster) Connect(t testing.TB, l bus.Limits) *jet.Conn {
	t.Helper()
	if l.Replicas > len(c.Servers) {
		// JetStream would keep answering "insufficient resources" until
		// the retry below gives up; say what is wrong at once instead.
		t.Fatalf("natstest: %d replicas on a %d-server cluster", l.Replicas, len(c.Servers))
	}
	conn, err := jet.Connect(c.URLs(), "test", Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.NC.Close)
	// The meta leader may have just been elected or be changing hands,
	// in which case creates fail or time out for a moment; retrying
	// beats making every test sleep.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		err := bus.Ensure(ctx, conn.JS, l)
		if err == nil {
			return conn
		}
		if ctx.Err() != nil {
			t.Fatalf("natstest: ensure streams and buckets: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// StreamLeader returns the index of the running server that leads stream
// now, and fails the test if none does. Right after a Kill or Restart use
// WaitStreamLeader, as the stream may be between leaders.
func (c *Cluster) StreamLeader(t testing.TB, stream string) int {
	t.Helper()
	i := c.streamLeader(stream)
	if i < 0 {
		t.Fatalf("natstest: no server leads stream %s", stream)
	}
	return i
}

// WaitStreamLeader waits until a running server leads stream and returns
// its index; it fails the test after 10 s.
func (c *Cluster) WaitStreamLeader(t testing.TB, stream string) int {
	t.Helper()
	i := -1
	WaitFor(t, leaderWait, "a leader of stream "+stream, func() bool {
		i = c.streamLeader(stream)
		return i >= 0
	})
	return i
}

func (c *Cluster) streamLeader(stream string) int {
	for i, s := range c.Servers {
		// A stopped server may still hold its last view of the group;
		// only a running one can serve the stream.
		if s.Running() && s.JetStreamIsStreamLeader(account, stream) {
			return i
		}
	}
	return -1
}

// Kill stops server i at once, as a crash would from the peers' point of
// view: no lame-duck mode, so leaders it held are not handed over and the
// rest must elect new ones. Its store and ports stay for Restart.
func (c *Cluster) Kill(i int) {
	c.Servers[i].Shutdown()
	c.Servers[i].WaitForShutdown()
}

// Restart starts killed servers again with their old stores and ports,
// and waits until they take connections and have caught up with the meta
// group, so streams are placed on them again by the time Restart returns.
// Their stream replicas may still be catching up; poll for that if it
// matters. Restarting every server of a stopped cluster at once is how it
// comes back: none of them alone is a quorum.
func (c *Cluster) Restart(t testing.TB, nodes ...int) {
	t.Helper()
	for _, i := range nodes {
		if c.Servers[i].Running() {
			t.Fatalf("natstest: server n%d is still running; Kill it first", i+1)
		}
		// Stored before Start so the cleanup shuts it down even if a wait
		// below fails the test.
		c.Servers[i] = c.newServer(t, i)
		c.Servers[i].Start()
	}
	for _, i := range nodes {
		if !c.Servers[i].ReadyForConnections(readyWait) {
			t.Fatalf("natstest: server n%d not ready within %s after restart", i+1, readyWait)
		}
	}
	c.waitFormed(t)
}
