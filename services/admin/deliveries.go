package admin

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
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

// recordFilter chooses attempts by what the log's subjects do not tell:
// how they ended and of which event.
type recordFilter struct{ outcome, event string }

func newRecordFilter(outcome, event string) (recordFilter, error) {
	if outcome != "" && !slices.Contains(dlog.Outcomes, outcome) {
		return recordFilter{}, invalid("outcome", "must be one of %s", strings.Join(dlog.Outcomes, ", "))
	}
	return recordFilter{outcome: outcome, event: event}, nil
}

func (f recordFilter) match(r dlog.Record) bool {
	return (f.outcome == "" || dlog.Ended(r.Mode == string(subs.ModePing), r.Outcome, r.Status) == f.outcome) &&
		(f.event == "" || r.EventID == f.event)
}

// scanPages bounds how many pages' worth of the log one ListDeliveries
// call reads looking for attempts that match, so that a rare event costs a
// bounded call; the token goes on from there.
const scanPages = 20

func (s *Service) ListDeliveries(ctx context.Context, req *adminv1.ListDeliveriesRequest) (*adminv1.ListDeliveriesResponse, error) {
	filter, err := s.logFilter(ctx, req.GetOrgId(), req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	match, err := newRecordFilter(req.GetOutcome(), req.GetEventId())
	if err != nil {
		return nil, err
	}
	var until time.Time
	if req.GetUntil() != nil {
		until = req.GetUntil().AsTime()
		if req.GetSince() != nil && !until.After(req.GetSince().AsTime()) {
			return nil, invalid("until", "must be after since")
		}
	}
	n := int(req.GetPageSize())
	if n == 0 {
		n = defaultPage // readStream refuses sizes out of range
	}
	resp := &adminv1.ListDeliveriesResponse{}
	token := req.GetPageToken()
	for round := 1; ; round++ {
		// past: the read reached until; cut: the page filled before the
		// read's end, and the next page starts at this record.
		past, cut := false, uint64(0)
		next, err := s.readStream(ctx, bus.StreamDeliveryLog, filter, req.GetPageSize(), token, req.GetSince(), func(m jetstream.Msg) error {
			if past || cut != 0 {
				return nil
			}
			if md, err := m.Metadata(); err == nil && !until.IsZero() && !md.Timestamp.Before(until) {
				past = true
				return nil
			}
			r, err := dlog.Decode(m)
			if err != nil || !match.match(r) {
				return err
			}
			if len(resp.Deliveries) == n {
				cut = r.Sequence
				return nil
			}
			resp.Deliveries = append(resp.Deliveries, deliveryPB(r))
			return nil
		})
		if err != nil {
			return nil, err
		}
		switch {
		case past:
			next = ""
		case cut != 0:
			next = strconv.FormatUint(cut, 10)
		}
		if next == "" || len(resp.Deliveries) == n || round == scanPages {
			resp.NextPageToken = next
			return resp, nil
		}
		token = next
	}
}

func (s *Service) TailDeliveries(req *adminv1.TailDeliveriesRequest, stream grpc.ServerStreamingServer[adminv1.Delivery]) error {
	ctx := stream.Context()
	filter, err := s.logFilter(ctx, req.GetOrgId(), req.GetSubscriptionId())
	if err != nil {
		return err
	}
	match, err := newRecordFilter(req.GetOutcome(), req.GetEventId())
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
		if !match.match(r) {
			continue
		}
		if err := stream.Send(deliveryPB(r)); err != nil {
			return err
		}
	}
}
