package jet_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

func TestLastMsgs(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	ctx := context.Background()
	kv, err := jet.Bucket(ctx, conn.JS, bus.BucketPersons)
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for i := range 2500 {
		key := fmt.Sprintf("k%d", i)
		subjects = append(subjects, bus.KVSubject(bus.BucketPersons, key))
		if i%2 == 0 {
			if _, err := kv.Put(ctx, key, []byte(key)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := kv.Delete(ctx, "k0"); err != nil {
		t.Fatal(err)
	}
	got, err := jet.LastMsgs(ctx, conn.NC, bus.KVStream(bus.BucketPersons), subjects)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1250 {
		t.Fatalf("%d messages, want 1250", len(got))
	}
	if m := got[subjects[2498]]; m == nil || string(m.Data) != "k2498" {
		t.Fatalf("k2498: %v", m)
	}
	if m := got[subjects[0]]; m == nil || m.Header.Get("KV-Operation") != "DEL" {
		t.Fatalf("k0, deleted: %v", m)
	}
	if _, ok := got[subjects[1]]; ok {
		t.Fatal("an absent key answered")
	}
	none, err := jet.LastMsgs(ctx, conn.NC, bus.KVStream(bus.BucketPersons), subjects[1:2])
	if err != nil || len(none) != 0 {
		t.Fatalf("one absent key: %v, %v", none, err)
	}
}

// TestTimerCarriesHeader: the message a timer fires carries the headers it
// was started with, which the ping's revision rides on.
func TestTimerCarriesHeader(t *testing.T) {
	conn := natstest.Start(t, bus.DefaultLimits())
	ctx := context.Background()
	h := nats.Header{"Kurier-Test": []string{"carried"}}
	if err := jet.StartTimer(ctx, conn.JS, bus.NotifySched("s1"), bus.NotifyDue("s1"), time.Now().Add(200*time.Millisecond), h); err != nil {
		t.Fatal(err)
	}
	st, err := conn.JS.Stream(ctx, bus.StreamNotify)
	if err != nil {
		t.Fatal(err)
	}
	var fired *jetstream.RawStreamMsg
	natstest.WaitFor(t, 5*time.Second, "the timer fired", func() bool {
		fired, err = st.GetLastMsgForSubject(ctx, bus.NotifyDue("s1"))
		return err == nil
	})
	if got := fired.Header.Get("Kurier-Test"); got != "carried" {
		t.Errorf("the fired message's header is %q, want %q", got, "carried")
	}
}
