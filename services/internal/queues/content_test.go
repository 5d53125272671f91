package queues

import (
	"encoding/json"
	"testing"
	"time"

	"kurier.dev/services/internal/event"
)

// An event's message carries data that is not JSON with its content
// type, text as a string and bytes base64-encoded, and is a message the
// queue API takes; one too large goes thin, without them.
func TestEventContentNonJSONData(t *testing.T) {
	stored := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	base := event.Event{ID: "1", Source: "/erp", Type: "invoice.changed", Subject: "INV-1"}
	xml, pdf, big := base, base, base
	xml.DataContentType, xml.Data = "application/xml", json.RawMessage(`"<a n=\"1\">&amp;</a>"`)
	pdf.DataContentType, pdf.Binary = "application/pdf", []byte("%PDF-1.4\n")
	big.DataContentType, big.Binary = "application/octet-stream", make([]byte, MaxContent)
	head := `{"type":"invoice.changed","id":"1","subject":"INV-1","time":"2026-11-23T10:00:00Z"`
	for _, tc := range []struct {
		name string
		ev   event.Event
		want string
	}{
		{"text", xml, head + `,"datacontenttype":"application/xml","data":"<a n=\"1\">&amp;</a>"}`},
		{"bytes", pdf, head + `,"datacontenttype":"application/pdf","data_base64":"JVBERi0xLjQK"}`},
		{"too large", big, head + `}`},
	} {
		got, err := EventContent(tc.ev, stored)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s:\n got %.200s (%v)\nwant %s", tc.name, got, err, tc.want)
		}
		if err := CheckContent(got); err != nil {
			t.Errorf("%s: the queue API would refuse the message: %v", tc.name, err)
		}
	}
}
