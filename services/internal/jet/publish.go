package jet

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// IsDuplicate tells whether a publish error means the message was already
// stored: on replicated streams a resend that races the original's
// replication fails with 10158 instead of answering PubAck.Duplicate.
func IsDuplicate(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10158
}

// errStoreFailed is the error code of a message a stream refused to
// store; its description says why, in nats-server's words.
const errStoreFailed jetstream.ErrorCode = 10077

// IsFull tells whether a publish was refused because its stream, which
// refuses new messages when full, holds as many bytes or messages as it
// may.
func IsFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errStoreFailed &&
		(apiErr.Description == "maximum bytes exceeded" || apiErr.Description == "maximum messages exceeded")
}

// IsSubjectFull tells whether a publish was refused because its subject
// holds as many messages as the stream allows one subject.
func IsSubjectFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errStoreFailed && apiErr.Description == "maximum messages per subject exceeded"
}

// IsWrongLastSeq tells whether a publish failed because the subject's last
// sequence was not the one expected: 10071, or 10164 on replicated streams.
func IsWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == 10164)
}

// publishWindow bounds the publications PublishAll has in the air at once,
// well within the connection's limit for asynchronous ones.
const publishWindow = 256

// PublishAll stores every message and waits until the streams have them
// all, sending up to publishWindow before waiting for their answers: one
// round trip for many, where a synchronous publish waits for each. A
// duplicate counts as stored. It answers the first failure.
func PublishAll(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) error {
	for len(msgs) > 0 {
		n := min(len(msgs), publishWindow)
		futures := make([]jetstream.PubAckFuture, 0, n)
		var failed error
		for _, m := range msgs[:n] {
			f, err := js.PublishMsgAsync(m)
			if err != nil {
				failed = fmt.Errorf("publish %s: %w", m.Subject, err)
				break
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if failed == nil && !IsDuplicate(err) {
					failed = fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if failed != nil {
			return failed
		}
		msgs = msgs[n:]
	}
	return nil
}
