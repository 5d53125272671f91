package dispatcher

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/natstest"
)

// TestMigrateFromLanes: what the layout before partitions left (a task on
// the shared subject, a lane task with a retry time, their consumers) is
// delivered after an upgrade, the retry not before its time, and the old
// consumers are gone.
func TestMigrateFromLanes(t *testing.T) {
	ctx := context.Background()
	conn, store := startStore(t, bus.DefaultLimits())
	rcv := newPosts()
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	id := payloadSub(t, store, srv.URL, "doc.changed", 2)
	for _, c := range []jetstream.ConsumerConfig{
		{Durable: "deliveries", FilterSubject: bus.LegacyDeliverFilter, AckPolicy: jetstream.AckExplicitPolicy},
		{Durable: "lane-" + id, FilterSubject: "kurier.lane." + id, AckPolicy: jetstream.AckExplicitPolicy},
	} {
		if _, err := conn.JS.CreateOrUpdateConsumer(ctx, bus.StreamDeliveries, c); err != nil {
			t.Fatal(err)
		}
	}
	legacy := func(subject, eventID string, seq int, notBefore time.Time) {
		m := nats.NewMsg(subject)
		m.Data = []byte(`{"specversion":"1.0","id":"` + eventID + `","source":"/t","type":"doc.changed","subject":"d","data":{}}`)
		m.Header.Set(bus.HeaderEventSeq, strconv.Itoa(seq))
		m.Header.Set(bus.HeaderEventTime, time.Now().UTC().Format(time.RFC3339Nano))
		m.Header.Set(jetstream.MsgIDHeader, id+":"+strconv.Itoa(seq))
		if !notBefore.IsZero() {
			m.Header.Set(bus.HeaderAttempts, "1")
			m.Header.Set(bus.HeaderNotBefore, notBefore.UTC().Format(time.RFC3339Nano))
		}
		if _, err := conn.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	legacy("kurier.deliver."+id, "shared", 1, time.Time{})
	retryAt := time.Now().Add(2 * time.Second)
	legacy("kurier.lane."+id, "lane", 2, retryAt)

	cfg := DefaultConfig()
	cfg.AllowPrivate = true
	start(t, conn, cfg, prometheus.NewRegistry())

	natstest.WaitFor(t, 10*time.Second, "the shared task", func() bool { return len(rcv.ids(id)) >= 1 })
	natstest.WaitFor(t, 10*time.Second, "the lane's retry", func() bool { return len(rcv.ids(id)) >= 2 })
	if time.Now().Before(retryAt) {
		t.Errorf("the lane's retry came before its time")
	}
	if got := rcv.ids(id); len(got) != 2 || got[0] != "shared" || got[1] != "lane" {
		t.Errorf("delivered %v", got)
	}
	st, err := conn.JS.Stream(ctx, bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	for name := range st.ConsumerNames(ctx).Name() {
		if name == "deliveries" || name == "lane-"+id {
			t.Errorf("consumer %s of the layout before partitions is still there", name)
		}
	}
}
