package admin

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"kurier.dev/services/internal/telemetry"
)

// requestIDKey is the metadata that carries a call's id, both ways.
var requestIDKey = strings.ToLower(telemetry.RequestIDHeader)

// callID is the id a call goes by, as the HTTP APIs take theirs: the
// caller's x-request-id when it is sane, else a new one; ctx carries it,
// so that every line logged with ctx names it.
func callID(ctx context.Context) (context.Context, string) {
	var given string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(requestIDKey); len(v) > 0 {
			given = v[0]
		}
	}
	id := telemetry.RequestIDOf(given)
	return telemetry.WithRequestID(ctx, id), id
}

// withRequestInfo adds the call's id to a failed call's status as the
// standard RequestInfo detail, where clients that read details find it.
func withRequestInfo(err error, id string) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	withID, derr := st.WithDetails(&errdetails.RequestInfo{RequestId: id})
	if derr != nil {
		return errors.Join(err, derr)
	}
	return withID.Err()
}

// requestIDUnary gives a call its id: in the response's header metadata
// (a stream's: its trailer),
// in the logs and in a failure's details. It runs first, so that the
// others' lines have the id too.
func (s *Service) requestIDUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ctx, id := callID(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs(requestIDKey, id)) // fails only once headers went, which none have
	resp, err := h(ctx, req)
	err = withRequestInfo(err, id)
	s.log.DebugContext(ctx, "grpc call", "method", info.FullMethod, "code", status.Code(err).String(), "seconds", time.Since(start).Seconds())
	return resp, err
}

func (s *Service) requestIDStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	ctx, id := callID(ss.Context())
	md := metadata.Pairs(requestIDKey, id)
	// In the trailer, which every call ends with, and in a header the
	// handler sends: set as the header now, it would go out before the
	// handler decided, and a stream's header is how a client learns that
	// the call was taken (TailDeliveries sends it once its tail is in place).
	ss.SetTrailer(md)
	err := withRequestInfo(h(srv, idStream{ServerStream: ss, ctx: ctx, md: md}), id)
	s.log.DebugContext(ctx, "grpc call", "method", info.FullMethod, "code", status.Code(err).String(), "seconds", time.Since(start).Seconds())
	return err
}

// idStream is a stream whose context carries its call's id, and whose
// header names it.
type idStream struct {
	grpc.ServerStream
	ctx context.Context
	md  metadata.MD
}

func (s idStream) Context() context.Context { return s.ctx }

func (s idStream) SendHeader(md metadata.MD) error {
	return s.ServerStream.SendHeader(metadata.Join(md, s.md))
}
