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
	_, err := PublishEach(ctx, js, msgs)
	return err
}

// PublishEach is PublishAll that also answers the messages no stream
// confirmed, so that a caller sends again only those: one stored and sent
// again after its stream's dedupe window would be stored twice.
func PublishEach(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) ([]*nats.Msg, error) {
	var failed []*nats.Msg
	var first error
	fail := func(m *nats.Msg, err error) {
		failed = append(failed, m)
		if first == nil {
			first = fmt.Errorf("publish %s: %w", m.Subject, err)
		}
	}
	for len(msgs) > 0 {
		chunk := msgs[:min(len(msgs), publishWindow)]
		msgs = msgs[len(chunk):]
		futures := make([]jetstream.PubAckFuture, len(chunk))
		for i, m := range chunk {
			if ctx.Err() != nil {
				fail(m, ctx.Err())
				continue
			}
			f, err := js.PublishMsgAsync(m)
			if err != nil {
				fail(m, err)
				continue
			}
			futures[i] = f
		}
		for i, f := range futures {
			if f == nil {
				continue
			}
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if !IsDuplicate(err) {
					fail(chunk[i], err)
				}
			case <-ctx.Done():
				fail(chunk[i], ctx.Err())
			}
		}
	}
	return failed, first
}
