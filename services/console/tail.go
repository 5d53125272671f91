package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// heartbeat is how often an idle tail sends a comment, so that proxies
// keep the connection and a client that went away is noticed.
const heartbeat = 15 * time.Second

// tail streams the delivery log's new attempts as Server-Sent Events, one
// JSON logRow each; static/tail.js builds the rows from it. The filters
// are the log's, from (to start earlier) included; a tail has no end, so
// to is not used.
func (c *Console) tail(w http.ResponseWriter, r *http.Request) {
	s, ok := c.session(r)
	if !ok {
		// Not a redirect: an EventSource cannot follow one to sign in.
		http.Error(w, "sign in first", http.StatusUnauthorized)
		return
	}
	q, err := parseLogQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx := call(r, s)
	stream, err := c.api.TailDeliveries(ctx, &adminv1.TailDeliveriesRequest{OrgId: r.PathValue("org"),
		SubscriptionId: q.Subscription, Since: q.since, Outcome: q.Outcome, EventId: q.Event})
	if err == nil {
		// The API answers its headers once the tail is in place, or fails.
		var md map[string][]string
		if md, err = stream.Header(); err == nil && md == nil {
			_, err = stream.Recv()
		}
	}
	if err != nil {
		st := status.Convert(err)
		code := http.StatusBadGateway
		switch st.Code() {
		case codes.Unauthenticated:
			code = http.StatusUnauthorized
		case codes.InvalidArgument:
			code = http.StatusBadRequest
		case codes.NotFound:
			code = http.StatusNotFound
		}
		http.Error(w, st.Message(), code)
		return
	}

	got := make(chan *adminv1.Delivery)
	failed := make(chan error, 1)
	go func() {
		for {
			d, err := stream.Recv()
			if err != nil {
				failed <- err
				return
			}
			select {
			case got <- d:
			case <-ctx.Done():
				return
			}
		}
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // a proxy in front passes each event on at once
	rc := http.NewResponseController(w)
	// A server's write timeout is meant for pages, not for a stream.
	_ = rc.SetWriteDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	send := func(format string, args ...any) bool {
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// A first comment, so the client sees the stream open at once.
	if !send(": tailing\n\n") {
		return
	}
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	// The session was checked once, at the start: a tail that outlived it
	// would go on showing the org's deliveries to a browser signed out by
	// time. Ending it here makes the client reconnect, to a 401.
	expired := time.NewTimer(time.Until(s.Expires))
	defer expired.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.stopping:
			return
		case <-expired.C:
			return
		case <-beat.C:
			if !send(": heartbeat\n\n") {
				return
			}
		case d := <-got:
			// encoding/json writes <, > and & as \u003c and so on: the
			// data stays inert wherever it goes.
			b, err := json.Marshal(newLogRow(d))
			if err != nil || !send("data: %s\n\n", b) {
				return
			}
		case err := <-failed:
			// The client reconnects by itself: to a new tail once the API is
			// back, or to a refusal (a session that ended) that stops it.
			c.log.Info("console tail ended", "err", err)
			return
		}
	}
}
