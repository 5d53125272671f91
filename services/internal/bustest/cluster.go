package bustest

import (
	"context"
	"testing"
	"time"

	"kurier.dev/services/internal/bus"
	"kurier.dev/services/natstest"
)

// Cluster is a natstest cluster that lays down Kurier's streams and
// buckets for the services under test.
type Cluster struct {
	*natstest.Cluster
}

// StartCluster starts n clustered JetStream servers (natstest.StartCluster).
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return &Cluster{natstest.StartCluster(t, n)}
}

// Connect connects to the running servers and lays down the streams and
// buckets with l; l.Replicas is normally the cluster size. The connection
// is closed when the test ends.
func (c *Cluster) Connect(t testing.TB, l bus.Limits) *bus.Conn {
	t.Helper()
	if l.Replicas > len(c.Servers) {
		// JetStream would keep answering "insufficient resources" until
		// the retry below gives up; say what is wrong at once instead.
		t.Fatalf("bustest: %d replicas on a %d-server cluster", l.Replicas, len(c.Servers))
	}
	conn, err := bus.Connect(c.URLs(), "test", Log)
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
			t.Fatalf("bustest: ensure streams and buckets: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
