package natstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
)

// TestClusterSurvivesStreamLeaderLoss is the case the cluster exists for:
// with three replicas, losing the node that leads EVENTS must cost neither
// writes nor stored events.
func TestClusterSurvivesStreamLeaderLoss(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, 3)
	t.Logf("cluster formed in %s", time.Since(start).Round(time.Millisecond))

	l := bus.DefaultLimits()
	l.Replicas = 3
	conn := c.Connect(t, l)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	stream, err := conn.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 {
		t.Fatalf("configured replicas = %d, want 3", info.Config.Replicas)
	}
	// Cluster.Replicas lists the peers besides the leader.
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("cluster info = %+v, want a leader and 2 other replicas", info.Cluster)
	}

	const before, after = 5, 5
	for n := range before {
		publish(ctx, t, conn.JS, n)
	}

	old := c.WaitStreamLeader(t, bus.StreamEvents)
	killed := time.Now()
	c.Kill(old)
	leader := c.WaitStreamLeader(t, bus.StreamEvents)
	t.Logf("n%d took over from n%d in %s", leader+1, old+1, time.Since(killed).Round(time.Millisecond))
	if leader == old {
		t.Fatalf("killed n%d still reported as leader", old+1)
	}

	for n := before; n < before+after; n++ {
		publish(ctx, t, conn.JS, n)
	}

	c.Restart(t, old)

	info, err = stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != before+after {
		t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, before+after)
	}
	// The restarted replica missed the later writes; it must catch up
	// from its peers, or a second failure would lose them.
	waitReplicaMsgs(t, c.Servers[old], bus.StreamEvents, before+after)
	t.Logf("whole test took %s", time.Since(start).Round(time.Millisecond))
}

// publish stores event n, retrying while the client reconnects or the
// stream elects a leader. The message id makes a retry after a lost ack
// harmless, so the final count is exact.
func publish(ctx context.Context, t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	id := bus.EventMsgID("org1", "/test", fmt.Sprintf("ev%d", n))
	WaitForErr(t, 10*time.Second, "EVENTS to take "+id, func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, bus.EventsSubject("org1", "doc.changed"), []byte(id), jetstream.WithMsgID(id))
		return err
	})
}

// waitReplicaMsgs asks s itself, not the stream leader, how many messages
// its copy of stream holds.
func waitReplicaMsgs(t *testing.T, s *server.Server, stream string, want uint64) {
	t.Helper()
	WaitForErr(t, 10*time.Second, fmt.Sprintf("the restarted replica to hold %d messages of %s", want, stream), func() error {
		acc, err := s.JszAccount(&server.JSzOptions{Account: server.DEFAULT_GLOBAL_ACCOUNT, Streams: true})
		if err != nil {
			return err
		}
		var got uint64
		for _, sd := range acc.Streams {
			if sd.Name == stream {
				got = sd.State.Msgs
			}
		}
		if got != want {
			return fmt.Errorf("it holds %d", got)
		}
		return nil
	})
}
