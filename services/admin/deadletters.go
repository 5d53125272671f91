package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/catalog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/filter"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/subs"
)

// maxRedeliver bounds one Redeliver call, so a wide time range cannot
// flood a receiver (or the queue) by mistake.
const maxRedeliver = 100000

// deadLetter reads a dead letter's identity from its stored task.
func deadLetter(m jetstream.Msg) (*adminv1.DeadLetter, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	var ev event.Event
	if err := ev.UnmarshalJSON(m.Data()); err != nil {
		return nil, fmt.Errorf("decode dead letter %d: %w", md.Sequence.Stream, err)
	}
	sub := m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]
	return &adminv1.DeadLetter{
		DeliveryId: bus.WebhookID(sub, ev.Source, ev.ID), SubscriptionId: sub,
		EventId: ev.ID, EventType: ev.Type, Time: timestamppb.New(md.Timestamp), Sequence: md.Sequence.Stream,
	}, nil
}

// readStream pages through a stream's messages on filter, oldest first,
// from the position a page token names: the way ListDeliveries and
// ListDeadLetters page.
func (s *Service) readStream(ctx context.Context, stream, filter string, size int32, token string, since *timestamppb.Timestamp, each func(jetstream.Msg) error) (string, error) {
	n := int(size)
	switch {
	case n < 0 || n > maxPage:
		return "", invalid("page_size", "must be 0 (for %d) to %d", defaultPage, maxPage)
	case n == 0:
		n = defaultPage
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}
	switch {
	case token != "":
		seq, err := strconv.ParseUint(token, 10, 64)
		if err != nil || seq == 0 {
			return "", invalid("page_token", "is not a token from a previous answer")
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
	case since != nil:
		t := since.AsTime()
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	var last uint64
	pending, read, err := jet.Read(ctx, s.conn.JS, stream, cfg, n, func(m jetstream.Msg) (bool, error) {
		if md, err := m.Metadata(); err == nil {
			last = md.Sequence.Stream
		}
		return false, each(m)
	})
	if err != nil {
		return "", err
	}
	if pending > read && read > 0 {
		return strconv.FormatUint(last+1, 10), nil
	}
	return "", nil
}

func (s *Service) ListDeadLetters(ctx context.Context, req *adminv1.ListDeadLettersRequest) (*adminv1.ListDeadLettersResponse, error) {
	if _, err := s.logFilter(ctx, req.GetOrgId(), req.GetSubscriptionId()); err != nil {
		return nil, err
	}
	sub := req.GetSubscriptionId()
	if sub == "" {
		sub = "*"
	}
	resp := &adminv1.ListDeadLettersResponse{}
	next, err := s.readStream(ctx, bus.StreamDeadLetters, bus.DeadSubject(req.GetOrgId(), sub), req.GetPageSize(), req.GetPageToken(), nil, func(m jetstream.Msg) error {
		d, err := deadLetter(m)
		if err == nil {
			resp.DeadLetters = append(resp.DeadLetters, d)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	resp.NextPageToken = next
	return resp, nil
}

func (s *Service) Redeliver(ctx context.Context, req *adminv1.RedeliverRequest) (*adminv1.RedeliverResponse, error) {
	sub, err := s.sub(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	if sub.Mode != subs.ModePayload {
		return nil, invalid("subscription_id", "only payload subscriptions have deliveries to redeliver")
	}
	if err := s.deliveriesRoom(ctx); err != nil {
		return nil, err
	}
	var queued uint32
	switch what := req.GetWhat().(type) {
	case *adminv1.RedeliverRequest_DeliveryId, *adminv1.RedeliverRequest_AllDeadLetters:
		one := req.GetDeliveryId()
		if _, all := what.(*adminv1.RedeliverRequest_AllDeadLetters); all && !req.GetAllDeadLetters() {
			return nil, invalid("all_dead_letters", "must be true when given")
		}
		queued, err = s.redeliverDead(ctx, sub, one)
	case *adminv1.RedeliverRequest_Events:
		queued, err = s.redeliverEvents(ctx, sub, what.Events, "r"+strconv.FormatInt(s.now().UnixNano(), 36))
	default:
		return nil, invalid("what", "name a delivery_id, all_dead_letters or an events time range")
	}
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "deliveries queued again", "org", sub.Org, "subscription", sub.ID, "queued", queued)
	return &adminv1.RedeliverResponse{Queued: queued}, nil
}

// deliveriesRoom refuses a redelivery while DELIVERIES is as full as the
// dispatchers let it get: the server would make room by dropping its
// oldest tasks.
func (s *Service) deliveriesRoom(ctx context.Context) error {
	// Binding the stream reads its info: that is the size now.
	st, err := bus.Stream(ctx, s.conn.JS, bus.StreamDeliveries)
	if err != nil {
		return err
	}
	info := st.CachedInfo()
	if limit := info.Config.MaxBytes; bus.DeliveriesFull(int64(info.State.Bytes), limit) {
		return status.Errorf(codes.ResourceExhausted, "DELIVERIES is full (%d of %d bytes): redeliver once its tasks are worked off, or raise KURIER_DELIVERIES_MAX_BYTES", info.State.Bytes, limit)
	}
	return nil
}

// redeliverDead moves dead letters (one, or all when id is empty) back
// into the subscription's queue, with the webhook-id they had.
func (s *Service) redeliverDead(ctx context.Context, sub subs.Subscription, id string) (uint32, error) {
	dead, err := bus.Stream(ctx, s.conn.JS, bus.StreamDeadLetters)
	if err != nil {
		return 0, err
	}
	// Dead letters stored after the call began are not its to move: among
	// them are those its own tasks become when they die again at once (a
	// switched-off subscription's), which it would queue and remove again
	// for as long as it read.
	last := dead.CachedInfo().State.LastSeq
	var queued uint32
	var seqs []uint64
	found, seen := false, map[string]bool{}
	token := ""
	for ended := false; !ended; {
		next, err := s.readStream(ctx, bus.StreamDeadLetters, bus.DeadSubject(sub.Org, sub.ID), maxPage, token, nil, func(m jetstream.Msg) error {
			d, err := deadLetter(m)
			if err != nil {
				return err
			}
			if d.GetSequence() > last {
				ended = true
				return nil
			}
			if ended || (id != "" && d.GetDeliveryId() != id) {
				return nil
			}
			found = true
			seqs = append(seqs, d.GetSequence())
			if seen[d.GetDeliveryId()] {
				return nil // the same delivery died twice: one is sent
			}
			seen[d.GetDeliveryId()] = true
			seq, _ := strconv.ParseUint(m.Headers().Get(bus.HeaderEventSeq), 10, 64)
			stored, _ := time.Parse(time.RFC3339Nano, m.Headers().Get(bus.HeaderEventTime))
			// The task's id is the letter's own, so that two calls at once,
			// or one made again after it failed half-way, queue it once.
			mark := "d" + strconv.FormatUint(d.GetSequence(), 36)
			ack, err := s.conn.JS.PublishMsg(ctx, bus.DeliveryTask(sub.ID, seq, stored, m.Data(), mark))
			if err != nil {
				return fmt.Errorf("queue again: %w", err)
			}
			if !ack.Duplicate {
				queued++
			}
			return nil
		})
		if err != nil {
			return queued, err
		}
		if next == "" || queued >= maxRedeliver {
			break
		}
		token = next
	}
	if id != "" && !found {
		return 0, notFound("dead letter", id)
	}
	for _, seq := range seqs {
		// ErrMsgDeleteUnsuccessful: a call at the same time removed it.
		if err := dead.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			return queued, fmt.Errorf("remove dead letter %d: %w", seq, err)
		}
	}
	return queued, nil
}

// redeliverEvents queues every event of the subscription's types stored in
// the range that its filter passes now, as for events that came while it
// was switched off.
func (s *Service) redeliverEvents(ctx context.Context, sub subs.Subscription, r *adminv1.TimeRange, mark string) (uint32, error) {
	if r.GetSince() == nil {
		return 0, invalid("events.since", "is required")
	}
	since, until := r.GetSince().AsTime(), s.now()
	if r.GetUntil() != nil {
		until = r.GetUntil().AsTime()
	}
	if !until.After(since) {
		return 0, invalid("events.until", "must be after since")
	}
	var filters []string
	for _, t := range catalog.Expand(sub.EventTypes) {
		filters = append(filters, bus.EventsSubject(sub.Org, t))
	}
	var prg *filter.Program
	if sub.Filter != "" {
		var err error
		if prg, err = filter.Compile(sub.Filter); err != nil {
			return 0, fmt.Errorf("filter of %s: %w", sub.ID, err)
		}
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since}
	if err := s.rangeFits(ctx, cfg, until); err != nil {
		return 0, err
	}
	var queued uint32
	_, _, err := jet.Read(ctx, s.conn.JS, bus.StreamEvents, cfg, maxRedeliver, func(m jetstream.Msg) (bool, error) {
		md, err := m.Metadata()
		if err != nil || md.Timestamp.After(until) {
			return true, nil
		}
		if prg != nil {
			// One it cannot judge is left out, as the dispatcher leaves it.
			in, err := filter.ParseInput(m.Data(), md.Timestamp)
			if err != nil {
				return false, nil
			}
			if ok, _ := prg.Match(in); !ok {
				return false, nil
			}
		}
		if _, err := s.conn.JS.PublishMsg(ctx, bus.DeliveryTask(sub.ID, md.Sequence.Stream, md.Timestamp, m.Data(), mark)); err != nil {
			return true, fmt.Errorf("queue again: %w", err)
		}
		queued++
		return false, nil
	})
	if err != nil {
		return queued, err
	}
	return queued, nil
}

// rangeFits refuses a range of more events than one call may queue before
// any is queued, naming where to split it: cut short at the limit, the
// rest of the range would be left out with nobody told.
func (s *Service) rangeFits(ctx context.Context, cfg jetstream.OrderedConsumerConfig, until time.Time) error {
	pending, _, err := jet.Read(ctx, s.conn.JS, bus.StreamEvents, cfg, 0, nil)
	if err != nil || pending <= maxRedeliver {
		return err
	}
	var n int
	var cut time.Time
	_, _, err = jet.Read(ctx, s.conn.JS, bus.StreamEvents, cfg, maxRedeliver+1, func(m jetstream.Msg) (bool, error) {
		md, err := m.Metadata()
		if err != nil || md.Timestamp.After(until) {
			return true, err
		}
		if n++; n > maxRedeliver {
			cut = md.Timestamp
		}
		return false, nil
	})
	if err != nil || cut.IsZero() {
		return err
	}
	// until is inclusive: the first part ends just before the event that
	// did not fit, the next begins with it.
	return invalid("events", "the range holds more than %d events of the subscription's types, more than one call queues: nothing was queued; redeliver it in parts, the first until %s, the next since %s",
		maxRedeliver, cut.Add(-time.Nanosecond).UTC().Format(time.RFC3339Nano), cut.UTC().Format(time.RFC3339Nano))
}
