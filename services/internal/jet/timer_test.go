package jet_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

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
