package jet_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

// TestTailKept: while KeepTail runs, in two replicas, DELIVERIES' newest
// message is a marker again within a moment of any task, and the stream
// holds one marker, so markers never change its size.
func TestTailKept(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for range 2 {
		go jet.KeepTail(ctx, conn.JS, bus.TailSubject, nil, natstest.Log)
	}
	st, err := conn.JS.Stream(context.Background(), bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	task, err := conn.JS.Publish(context.Background(), bus.DeliverSubject("s1"), []byte("task"))
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 5*time.Second, "a marker after the task", func() bool {
		m, err := st.GetLastMsgForSubject(context.Background(), bus.TailSubject)
		return err == nil && m.Sequence > task.Sequence
	})
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	first := info.State.Bytes
	time.Sleep(4 * jet.TailEvery)
	info, err = st.Info(context.Background(), jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[bus.TailSubject]; n != 1 || info.State.Msgs != 2 || info.State.Bytes != first {
		t.Errorf("after 8 markers of two replicas: %d markers, %d messages of %d bytes (%d before), want 1 marker beside the task and the size kept",
			n, info.State.Msgs, info.State.Bytes, first)
	}
}

// BenchmarkTailKept measures the server's heap (the test process's, with
// the server embedded) while tasks come and go in DELIVERIES at 5,000/s
// behind one message that stays, with and without tail markers: each
// iteration is a millisecond's five tasks, published and acknowledged.
//
//	go test ./internal/jet -run '^$' -bench TailKept -benchtime 8000x
func BenchmarkTailKept(b *testing.B) {
	for _, kept := range []bool{false, true} {
		b.Run("kept="+strconv.FormatBool(kept), func(b *testing.B) {
			conn := natstest.Start(b, bus.DefaultLimits())
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			js := conn.JS
			if _, err := js.Publish(ctx, bus.DigestSubject("daily"), []byte("stays")); err != nil {
				b.Fatal(err)
			}
			if kept {
				go jet.KeepTail(ctx, js, bus.TailSubject, nil, natstest.Log)
			}
			cons, err := js.CreateConsumer(ctx, bus.StreamDeliveries, jetstream.ConsumerConfig{
				FilterSubject: "kurier.deliver.>", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				b.Fatal(err)
			}
			cc, err := cons.Consume(func(m jetstream.Msg) { _ = m.Ack() })
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Stop()
			body := make([]byte, 300)
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			var ms runtime.MemStats
			var peak uint64
			b.ResetTimer()
			for i := range b.N {
				<-tick.C
				for j := range 5 {
					if _, err := js.PublishAsync(bus.DeliverSubject("s"+strconv.Itoa(j)), body); err != nil {
						b.Fatal(err)
					}
				}
				if i%500 == 499 {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
				}
			}
			<-js.PublishAsyncComplete()
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(peak)/1e6, "MB-peak-heap")
			b.ReportMetric(float64(ms.HeapInuse)/1e6, "MB-heap-after")
		})
	}
}

// TestTailWithoutRoom: no marker is written while may refuses it, as the
// dispatchers' does while DELIVERIES is within its headroom.
func TestTailWithoutRoom(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	ctx, stop := context.WithCancel(context.Background())
	asked := make(chan struct{}, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		jet.KeepTail(ctx, conn.JS, bus.TailSubject, func(context.Context, *nats.Msg) bool {
			asked <- struct{}{}
			return false
		}, natstest.Log)
	}()
	for range 3 {
		<-asked
	}
	stop()
	<-done
	st, err := conn.JS.Stream(context.Background(), bus.StreamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.GetLastMsgForSubject(context.Background(), bus.TailSubject); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("a marker was written though refused: %v, %v", m, err)
	}
}
