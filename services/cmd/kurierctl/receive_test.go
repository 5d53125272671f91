package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"kurier.dev/services/natstest"
)

// TestReceive: receive prints each request as it came, answers 204, and
// ends after --count requests once the last answer is out.
func TestReceive(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	b := ctlBackground(t, "127.0.0.1:1", "receive", "--count", "2", addr)
	post := func(path, body string) (int, error) {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Webhook-Id", "msg_1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	natstest.WaitForErr(t, 10*time.Second, "receive to listen", func() error {
		code, err := post("/hook?event=invoice.changed", `{"number":"INV-1"}`)
		if err != nil {
			b.running(t)
			return err
		}
		if code != http.StatusNoContent {
			t.Fatalf("first POST answered %d, want 204", code)
		}
		return nil
	})
	if code, err := post("/second", ""); err != nil || code != http.StatusNoContent {
		t.Fatalf("second POST: %d, %v; want 204", code, err)
	}
	select {
	case code := <-b.done:
		b.done <- code
		if code != 0 {
			t.Fatalf("exit %d after --count 2\nstderr:\n%s", code, b.errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("receive did not end within 10s of its second request")
	}
	matchLines(t, b.out.String(),
		`POST /hook\?event=invoice.changed HTTP/1.1`,
		`Host: `+addr,
		`Accept-Encoding: gzip`,
		`Content-Length: 18`,
		`Content-Type: application/json`,
		`User-Agent: Go-http-client/1.1`,
		`Webhook-Id: msg_1`,
		``,
		`\{"number":"INV-1"\}`,
		``,
		`POST /second HTTP/1.1`,
		`Host: `+addr,
		`Accept-Encoding: gzip`,
		`Content-Length: 0`,
		`Content-Type: application/json`,
		`User-Agent: Go-http-client/1.1`,
		`Webhook-Id: msg_1`,
		``,
	)
	if _, err := post("/third", ""); err == nil {
		t.Error("receive still answers after its --count requests")
	}
}
