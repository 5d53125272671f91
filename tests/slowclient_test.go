package tests

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/contract"
	"kurier.dev/tests/harness"
)

// dial opens a connection to a running kurier's HTTP listener, closed
// when the test ends.
func dial(t *testing.T, k *harness.Kurier) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(k.HTTP, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSlowClients: a client that never finishes its request's headers is
// cut off after KURIER_HTTP_HEADER_TIMEOUT, and clients that send their
// bodies slowly (more of them than the ingest service has room for, had
// each the room of its largest body) hold up nobody: normal requests to
// ingest and to the queue API are answered at once beside them.
func TestSlowClients(t *testing.T) {
	t.Parallel()
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_HTTP_HEADER_TIMEOUT=1s"}})
	_, secret := setup(t, k, "acme", adminv1.KeyScope_KEY_SCOPE_INGEST, adminv1.KeyScope_KEY_SCOPE_PARTNER)
	q := contract.CreateQueue(t, k.HTTP, secret)

	// Headers never finished.
	var unfinished []net.Conn
	for range 5 {
		c := dial(t, k)
		if _, err := io.WriteString(c, "POST /v1/events HTTP/1.1\r\nHost: kurier\r\nContent-Type: application/cloudevents+json\r\n"); err != nil {
			t.Fatal(err)
		}
		unfinished = append(unfinished, c)
	}
	sent := time.Now()
	// Bodies that come slowly: 20 batches declared at the 4 MiB limit (the
	// room of 16 fills ingest's 64 MiB for bodies in flight), and 20
	// queue messages, each begun and left.
	for range 20 {
		c := dial(t, k)
		if _, err := fmt.Fprintf(c, "POST /v1/events HTTP/1.1\r\nHost: kurier\r\nContent-Type: application/cloudevents-batch+json\r\n"+
			"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n[{", secret, 4<<20); err != nil {
			t.Fatal(err)
		}
		c = dial(t, k)
		if _, err := fmt.Fprintf(c, "POST /api/queues/%s/messages HTTP/1.1\r\nHost: kurier\r\nContent-Type: application/json\r\n"+
			"X-COMNORM-NOTIFICATION-SECRET: %s\r\nContent-Length: 1000\r\n\r\n{", q.QueueID, q.NotificationSecret); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // each is reading its body

	began := time.Now()
	change(t, k, secret, "invoice.changed", "I-1", nil)
	if a := q.Send(t, `{"n":1}`); a.Status != http.StatusOK {
		t.Fatalf("post beside slow senders: %d %s", a.Status, a.Body)
	}
	if a, msgs := q.Peek(t, ""); a.Status != http.StatusOK || len(msgs) != 1 {
		t.Fatalf("peek beside slow senders: %d %s", a.Status, a.Body)
	}
	if took := time.Since(began); took > time.Second {
		t.Fatalf("requests beside slow clients took %v", took)
	}

	for i, c := range unfinished {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 1))
		after := time.Since(sent)
		if err == nil || n > 0 {
			t.Fatalf("connection %d without finished headers got an answer", i)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection %d without finished headers still open after %v", i, after)
		}
		if after < 900*time.Millisecond {
			t.Fatalf("connection %d closed after %v, before the header timeout", i, after)
		}
	}
}
