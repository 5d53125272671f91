package jet

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// lastBatch is the most subjects one batched Direct Get answers for.
const lastBatch = 1024

// LastMsgs reads the last message of each subject in a stream with
// AllowDirect, a thousand subjects per round trip (batched Direct Get,
// nats-server 2.11 and later), where GetLastMsgForSubject costs one each.
// Subjects without a message are left out of the answer. On a replicated
// stream a follower may answer, so the answer can be slightly behind:
// writes that depend on it must expect the sequences it gives.
func LastMsgs(ctx context.Context, nc *nats.Conn, stream string, subjects []string) (map[string]*nats.Msg, error) {
	out := make(map[string]*nats.Msg, len(subjects))
	for len(subjects) > 0 {
		n := min(len(subjects), lastBatch)
		if err := lastMsgs(ctx, nc, stream, subjects[:n], out); err != nil {
			return nil, err
		}
		subjects = subjects[n:]
	}
	return out, nil
}

func lastMsgs(ctx context.Context, nc *nats.Conn, stream string, subjects []string, out map[string]*nats.Msg) error {
	req := struct {
		MultiLast []string `json:"multi_last"`
		Batch     int      `json:"batch"`
	}{subjects, len(subjects)}
	return DirectBatch(ctx, nc, stream, req, func(m *nats.Msg) error {
		out[m.Header.Get(jetstream.SubjectHeader)] = m
		return nil
	})
}

// DirectBatch sends a batched Direct Get request (req, encoded as JSON) to
// a stream with AllowDirect and hands each message of the answer to each,
// in order, until the end of the batch. An answer without any message is
// no error.
func DirectBatch(ctx context.Context, nc *nats.Conn, stream string, req any, each func(*nats.Msg) error) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("direct get %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, b); err != nil {
		return fmt.Errorf("direct get %s: %w", stream, err)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return fmt.Errorf("direct get %s: %w", stream, err)
		}
		switch st := m.Header.Get("Status"); st {
		case "":
			if err := each(m); err != nil {
				return err
			}
		case "204", "404": // the end of the batch; none at all
			return nil
		default:
			return fmt.Errorf("direct get %s: status %s %s", stream, st, m.Header.Get("Description"))
		}
	}
}
