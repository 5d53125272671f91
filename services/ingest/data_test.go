package ingest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/natstest"
)

// postJSON is post with the answer decoded.
func postJSON(t *testing.T, url, secret string, h map[string]string, body string) (int, map[string]any) {
	t.Helper()
	status, _, b := post(t, url, secret, h, body)
	var answer map[string]any
	if err := json.Unmarshal(b, &answer); err != nil {
		t.Fatalf("answer %d is not JSON: %s", status, b)
	}
	return status, answer
}

// storedEvents reads back every event of the org as stored.
func storedEvents(t *testing.T, js jetstream.JetStream) []event.Event {
	t.Helper()
	var out []event.Event
	_, _, err := jet.Read(context.Background(), js, bus.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.EventsOrgFilter("acme")}}, 100,
		func(m jetstream.Msg) (bool, error) {
			var e event.Event
			err := e.UnmarshalJSON(m.Data())
			out = append(out, e)
			return false, err
		})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An event is one by its source and id together (CloudEvents): the same id
// from another source is another event and is stored, over HTTP and NATS
// alike; the same pair again is a duplicate.
func TestSameIDFromTwoSources(t *testing.T) {
	url, svc, conn, secret := start(t, DefaultConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = svc.Run(ctx) }()
	structured := map[string]string{"Content-Type": event.MediaStructured}
	ev := func(source string) string {
		return `{"specversion":"1.0","id":"42","source":"` + source + `","type":"invoice.changed","subject":"I-1"}`
	}
	for _, tc := range []struct {
		source string
		status int
		result string
	}{
		{"/erp-a", 202, "accepted"},
		{"/erp-b", 202, "accepted"},
		{"/erp-a", 202, "duplicates"},
		{"/erp-b", 202, "duplicates"},
	} {
		status, answer := postJSON(t, url, secret, structured, ev(tc.source))
		if got, _ := answer[tc.result].([]any); status != tc.status || len(got) != 1 || got[0] != "42" {
			t.Fatalf("42 from %s: %d %v, want it among %s", tc.source, status, answer, tc.result)
		}
	}
	var resp *nats.Msg
	natstest.WaitForErr(t, 5*time.Second, "an answer over NATS", func() (err error) {
		resp, err = conn.NC.RequestMsg(newRequest(secret, ev("/erp-c")), time.Second)
		return err
	})
	if resp.Header.Get(StatusHeader) != "202" || !strings.Contains(string(resp.Data), `"accepted":["42"]`) {
		t.Fatalf("42 from /erp-c over NATS: %s", resp.Data)
	}
	got := storedEvents(t, conn.JS)
	if len(got) != 3 || got[0].Source != "/erp-a" || got[1].Source != "/erp-b" || got[2].Source != "/erp-c" {
		t.Fatalf("stored: %+v", got)
	}
}
