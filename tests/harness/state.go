package harness

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/natstest"
)

// Streams is what every stream of a NATS server holds at one moment, by
// name. Key-value buckets are streams too (KV_<bucket>), so their
// revisions are in it. Two equal readings saw no message written, deleted
// or purged in between.
type Streams map[string]StreamState

// StreamState is one stream's counters.
type StreamState struct {
	Msgs, FirstSeq, LastSeq uint64
	Deleted                 int
	// Subjects, for DELIVERIES only: its messages per subject, but the
	// dispatchers' tail markers, which come and go by themselves and so
	// leave its counters above unread.
	Subjects string
}

// liveness is the bucket every dispatcher replica renews its key in each
// second: it changes by itself, whatever a request does.
const liveness = "KV_dispatchers"

// ReadStreams reads every stream that js sees (DELIVERIES without its
// tail markers), but for the liveness bucket.
func ReadStreams(t testing.TB, js jetstream.JetStream) Streams {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := Streams{}
	l := js.ListStreams(ctx)
	for info := range l.Info() {
		if info.Config.Name == liveness {
			continue
		}
		s := info.State
		if info.Config.Name == bus.StreamDeliveries {
			out[info.Config.Name] = tasks(ctx, t, js)
			continue
		}
		out[info.Config.Name] = StreamState{Msgs: s.Msgs, FirstSeq: s.FirstSeq, LastSeq: s.LastSeq, Deleted: s.NumDeleted}
	}
	if err := l.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	return out
}

// tasks reads DELIVERIES' subjects and their counts, but the tail
// markers'. A task stored and delivered in between goes unseen here; its
// delivery log record does not.
func tasks(ctx context.Context, t testing.TB, js jetstream.JetStream) StreamState {
	t.Helper()
	subjects, err := natstest.Tasks(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	var out StreamState
	for _, subj := range slices.Sorted(maps.Keys(subjects)) {
		out.Msgs += subjects[subj]
		out.Subjects += fmt.Sprintf("%s=%d ", subj, subjects[subj])
	}
	return out
}

// Changed names each stream that differs from before, with how; none when
// nothing changed.
func (s Streams) Changed(before Streams) []string {
	var out []string
	for name, now := range s {
		if was, ok := before[name]; !ok || was != now {
			out = append(out, fmt.Sprintf("%s: %+v, was %+v", name, now, was))
		}
	}
	for name := range before {
		if _, ok := s[name]; !ok {
			out = append(out, name+": gone")
		}
	}
	slices.Sort(out)
	return out
}

// Messages reads every message of a stream, or of the subjects given.
func Messages(t testing.TB, js jetstream.JetStream, stream string, subjects ...string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		out, err := messages(ctx, js, stream, subjects)
		if err == nil {
			return out
		}
		// A cluster that has just lost or regained a node may not answer
		// for a moment: read again until the deadline.
		select {
		case <-ctx.Done():
			t.Fatalf("read %s: %v", stream, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func messages(ctx context.Context, js jetstream.JetStream, stream string, subjects []string) ([]jetstream.Msg, error) {
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: subjects})
	if err != nil {
		return nil, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []jetstream.Msg
	for n := info.NumPending; n > 0; {
		batch, err := c.FetchNoWait(int(n))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			out = append(out, m)
			n--
		}
		if batch.Error() != nil {
			return nil, batch.Error()
		}
	}
	return out, nil
}
