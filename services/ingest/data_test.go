package ingest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/internal/bus"
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

// Data of any type is taken: binary mode with any Content-Type, and
// data_base64 in structured and batched mode, up to the data limit.
func TestAnyData(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxData = 1024
	url, _, conn, secret := start(t, cfg)
	binary := func(ct string) map[string]string {
		return map[string]string{"Content-Type": ct, "ce-specversion": "1.0", "ce-source": "/erp", "ce-type": "invoice.changed", "ce-subject": "I-1"}
	}
	xml := `<?xml version="1.0" encoding="UTF-8"?><Rechnung Nr="4711"><Kunde>Müller &amp; Söhne</Kunde></Rechnung>`
	h := binary("application/xml")
	h["ce-id"] = "xml"
	if status, answer := postJSON(t, url, secret, h, xml); status != 202 {
		t.Fatalf("XML in binary mode: %d %v", status, answer)
	}
	h = binary("application/octet-stream")
	h["ce-id"] = "bytes"
	if status, answer := postJSON(t, url, secret, h, "\x00\x01\xff"); status != 202 {
		t.Fatalf("bytes in binary mode: %d %v", status, answer)
	}
	full := base64.StdEncoding.EncodeToString(make([]byte, cfg.MaxData)) // longer than the data limit and the envelope
	one := `{"specversion":"1.0","id":"b64","source":"/erp","type":"invoice.changed","subject":"I-1","datacontenttype":"application/pdf","data_base64":"` + full + `"}`
	if status, answer := postJSON(t, url, secret, map[string]string{"Content-Type": event.MediaStructured}, one); status != 202 {
		t.Fatalf("data_base64 of the most data: %d %v", status, answer)
	}
	batch := `[{"specversion":"1.0","id":"b1","source":"/erp","type":"invoice.changed","subject":"I-1","data_base64":"AAE="}]`
	if status, answer := postJSON(t, url, secret, map[string]string{"Content-Type": event.MediaBatch}, batch); status != 202 {
		t.Fatalf("data_base64 in a batch: %d %v", status, answer)
	}
	got := storedEvents(t, conn.JS)
	if len(got) != 4 || string(got[0].Data) != `"`+strings.ReplaceAll(xml, `"`, `\"`)+`"` || string(got[1].Binary) != "\x00\x01\xff" ||
		len(got[2].Binary) != cfg.MaxData || got[2].DataContentType != "application/pdf" || string(got[3].Binary) != "\x00\x01" {
		t.Fatalf("stored: %+v", got)
	}

	// One byte more is too large, and stores nothing.
	over := strings.Replace(one, full, base64.StdEncoding.EncodeToString(make([]byte, cfg.MaxData+1)), 1)
	over = strings.Replace(over, `"b64"`, `"over"`, 1)
	if status, answer := postJSON(t, url, secret, map[string]string{"Content-Type": event.MediaStructured}, over); status != 413 ||
		answer["error"].(map[string]any)["field"] != "data_base64" {
		t.Fatalf("data_base64 over the limit: %d %v", status, answer)
	}
	h = binary("text/plain; charset")
	h["ce-id"] = "bad-type"
	if status, answer := postJSON(t, url, secret, h, "x"); status != 415 || answer["error"].(map[string]any)["field"] != "Content-Type" {
		t.Fatalf("binary mode with a malformed Content-Type: %d %v", status, answer)
	}
	if n := len(storedEvents(t, conn.JS)); n != 4 {
		t.Fatalf("refused events stored: %d events", n)
	}
}
