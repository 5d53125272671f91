package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/testevent"
)

// testWait bounds how long a test waits for a dispatcher's answer: the
// dispatcher bounds the request by the subscription's timeout (at most
// maxTimeout), so this only ends a test whose dispatcher died making it.
const testWait = maxTimeout + 15*time.Second

// SendTestEvent has a dispatcher replica send a kurier.test event through
// the subscription as it is stored now, active or not, and answers the
// receiver's answer: a receiver answering 500 is an answer, not an error
// of this call.
func (s *Service) SendTestEvent(ctx context.Context, req *adminv1.SendTestEventRequest) (*adminv1.SendTestEventResponse, error) {
	sub, err := s.sub(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	if sub.Mode == subs.ModeQueue {
		return nil, failedPrecondition("subscription_id", "a queue subscription makes no requests: its events go into its queue, where a test would be read as a real message")
	}
	r, err := testevent.Ask(ctx, s.conn.NC, sub, testWait)
	switch {
	case errors.Is(err, testevent.ErrNoDispatcher):
		return nil, status.Error(codes.Unavailable, "no dispatcher is running to send the test event; start one (kurier dispatcher, or kurier all)")
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "the test event was not answered: %v", err)
	case r.Refused != "":
		return nil, failedPrecondition("subscription_id", "%s", r.Refused)
	}
	s.log.InfoContext(ctx, "test event sent", "org", sub.Org, "subscription", sub.ID, "status", r.Status, "error", r.Error)
	return &adminv1.SendTestEventResponse{
		EventId: r.EventID, Method: r.Method, Url: r.URL, Status: int32(r.Status), Error: r.Error,
		Latency: durationpb.New(time.Duration(r.LatencyMS * float64(time.Millisecond))), Response: r.Response,
	}, nil
}

// failedPrecondition refuses a call that is well formed but cannot be
// made of what field names, as invalid does for bad input.
func failedPrecondition(field, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	st := status.New(codes.FailedPrecondition, field+": "+msg)
	if d, err := st.WithDetails(&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{Type: "MODE", Subject: field, Description: msg}}}); err == nil {
		st = d
	}
	return st.Err()
}
