package admin

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/subs"
)

const (
	defaultPage = 100
	maxPage     = 1000
	// readerIdle lets the server drop a reader's consumer soon after the
	// call is done, instead of after the client library's five minutes.
	readerIdle = 10 * time.Second
)

func deliveryPB(r dlog.Record) *adminv1.Delivery {
	d := &adminv1.Delivery{
		Time: timestamppb.New(r.Time), OrgId: r.Org, SubscriptionId: r.Subscription, System: r.System,
		EventTypes: r.EventTypes, Mode: modePB(subs.Mode(r.Mode)), Url: r.URL, StatusCode: int32(r.Status),
		Error: r.Error, Latency: durationpb.New(time.Duration(r.LatencyMS * float64(time.Millisecond))),
		Unacked: uint32(r.Unacked), Sequence: r.Sequence,
		EventId: r.EventID, Attempt: uint32(r.Attempt), Response: r.Response, Outcome: r.Outcome,
	}
	if r.NextAttempt != nil {
		d.NextAttempt = timestamppb.New(*r.NextAttempt)
	}
	return d
}

// logFilter checks the org (and subscription, when given) and answers the
// log subject to read.
func (s *Service) logFilter(ctx context.Context, org, sub string) (string, error) {
	if _, err := s.org(ctx, org); err != nil {
		return "", err
	}
	if sub != "" {
		got, err := s.sub(ctx, sub)
		if err != nil {
			return "", err
		}
		if got.Org != org {
			return "", storeErr(subs.ErrNotFound)
		}
	}
	return bus.DeliveryLogFilter(org, sub), nil
}

func (s *Service) ListDeliveries(ctx context.Context, req *adminv1.ListDeliveriesRequest) (*adminv1.ListDeliveriesResponse, error) {
	filter, err := s.logFilter(ctx, req.GetOrgId(), req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListDeliveriesResponse{}
	next, err := s.readStream(ctx, bus.StreamDeliveryLog, filter, req.GetPageSize(), req.GetPageToken(), req.GetSince(), func(m jetstream.Msg) error {
		r, err := dlog.Decode(m)
		if err == nil {
			resp.Deliveries = append(resp.Deliveries, deliveryPB(r))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	resp.NextPageToken = next
	return resp, nil
}

func (s *Service) TailDeliveries(req *adminv1.TailDeliveriesRequest, stream grpc.ServerStreamingServer[adminv1.Delivery]) error {
	ctx := stream.Context()
	filter, err := s.logFilter(ctx, req.GetOrgId(), req.GetSubscriptionId())
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy, InactiveThreshold: readerIdle}
	if req.GetSince() != nil {
		t := req.GetSince().AsTime()
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	c, err := s.conn.JS.OrderedConsumer(ctx, bus.StreamDeliveryLog, cfg)
	if err != nil {
		return err
	}
	it, err := c.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	// Headers now tell the client the tail is in place, before any record.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	go func() {
		select {
		case <-ctx.Done():
		case <-s.stopping:
		}
		it.Stop()
	}()
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return err
		}
		r, err := dlog.Decode(m)
		if err != nil {
			return err
		}
		if err := stream.Send(deliveryPB(r)); err != nil {
			return err
		}
	}
}
