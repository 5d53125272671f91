package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/catalog"
	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/payload"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/subs"
)

const (
	maxSystem  = 20   // Collmex: System C20
	maxPingURL = 255  // Collmex: URL C255
	maxURL     = 2048 // payload and queue receivers
	// maxEventTypes keeps a subscription of the longest names well
	// within the largest record the subscriptions bucket stores (1 MiB).
	maxEventTypes = 1000
)

var modes = map[adminv1.DeliveryMode]subs.Mode{
	adminv1.DeliveryMode_DELIVERY_MODE_PING:    subs.ModePing,
	adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD: subs.ModePayload,
	adminv1.DeliveryMode_DELIVERY_MODE_QUEUE:   subs.ModeQueue,
}

func modePB(m subs.Mode) adminv1.DeliveryMode {
	for k, v := range modes {
		if v == m {
			return k
		}
	}
	return adminv1.DeliveryMode_DELIVERY_MODE_UNSPECIFIED
}

func checkSystem(v string) error {
	if n := utf8.RuneCountInString(v); n == 0 || n > maxSystem {
		return invalid("system", "must be 1-%d characters", maxSystem)
	}
	return checkText("system", v)
}

// eventTypes checks type names, maps Collmex codes to theirs and drops
// repeats.
func eventTypes(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, invalid("event_types", "at least one event type is required")
	}
	if len(in) > maxEventTypes {
		return nil, invalid("event_types", "at most %d event types", maxEventTypes)
	}
	var out []string
	for _, t := range in {
		if name, ok := catalog.ByCode(t); ok {
			t = name
		}
		if !catalog.ValidType(t) {
			return nil, invalid("event_types", "%q is neither a Collmex event code 1-9 nor a dotted lower-case type name such as invoice.changed", t)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

func checkURL(raw string, mode subs.Mode) error {
	limit := maxURL
	if mode == subs.ModePing {
		limit = maxPingURL
	}
	if len(raw) > limit {
		return invalid("url", "must be at most %d characters", limit)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return invalid("url", "must be an http or https URL with a host and no credentials")
	}
	for _, r := range raw {
		if r <= ' ' || r == 0x7f {
			return invalid("url", "must not contain spaces or control characters")
		}
	}
	return nil
}

// Payload defaults and bounds.
const (
	defaultTimeout     = 15 * time.Second
	minTimeout         = time.Second
	maxTimeout         = time.Minute
	defaultMaxInFlight = 10
	maxMaxInFlight     = 100
	maxFields          = 100
	maxRetries         = 20
	maxRetryDelay      = 7 * 24 * time.Hour
)

// checkSub checks every field a stored subscription must satisfy, filling
// in the payload defaults.
func checkSub(sub *subs.Subscription) error {
	if err := checkSystem(sub.System); err != nil {
		return err
	}
	if err := checkText("name", sub.Name); err != nil {
		return err
	}
	types, err := eventTypes(sub.EventTypes)
	if err != nil {
		return err
	}
	sub.EventTypes = types
	if err := checkFilter(sub.Filter); err != nil {
		return err
	}
	if sub.Mode == subs.ModeQueue {
		if sub.URL != "" {
			return invalid("url", "a queue subscription has no URL: its events go into the queue queue_id names")
		}
		if !queues.ValidID(sub.QueueID) {
			return invalid("queue_id", "must be the queueId that POST /api/queues answered")
		}
		return nil
	}
	if err := checkURL(sub.URL, sub.Mode); err != nil {
		return err
	}
	if sub.Mode != subs.ModePayload {
		return nil
	}
	return checkPayload(sub)
}

func checkPayload(sub *subs.Subscription) error {
	if err := checkText("table", sub.Table); err != nil {
		return err
	}
	if len(sub.Conditions) > 1024 || !utf8.ValidString(sub.Conditions) || strings.ContainsFunc(sub.Conditions, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return invalid("conditions", "must be at most 1024 characters of valid UTF-8 without control characters")
	}
	if len(sub.Fields) > maxFields {
		return invalid("fields", "at most %d fields", maxFields)
	}
	for _, f := range sub.Fields {
		if f == "" || len(f) > 128 || !utf8.ValidString(f) {
			return invalid("fields", "each field name must be 1-128 characters")
		}
	}
	var fe *payload.FieldError
	if err := payload.CheckAttributes(sub.Attributes); errors.As(err, &fe) {
		return invalid(fmt.Sprintf("attributes[%d].%s", fe.Index, fe.Field), "%s", fe.Message)
	} else if err != nil {
		return invalid("attributes", "%v", err)
	}
	if err := payload.CheckHeaders(sub.Headers); errors.As(err, &fe) {
		return invalid(fmt.Sprintf("headers[%d].%s", fe.Index, fe.Field), "%s", fe.Message)
	} else if err != nil {
		return invalid("headers", "%v", err)
	}
	switch {
	case sub.Timeout == 0:
		sub.Timeout = defaultTimeout
	case sub.Timeout < minTimeout || sub.Timeout > maxTimeout:
		return invalid("timeout", "must be from %v to %v", minTimeout, maxTimeout)
	}
	if sub.Format == "" {
		sub.Format = payload.Standard
	}
	// An ordered subscription sends one at a time whatever max_in_flight
	// says; it is kept for when ordering is switched off again.
	switch {
	case sub.MaxInFlight == 0:
		sub.MaxInFlight = defaultMaxInFlight
	case sub.MaxInFlight < 1 || sub.MaxInFlight > maxMaxInFlight:
		return invalid("max_in_flight", "must be from 1 to %d", maxMaxInFlight)
	}
	if err := checkRate(*sub); err != nil {
		return err
	}
	if len(sub.RetrySchedule) > maxRetries {
		return invalid("retry_schedule", "at most %d retries", maxRetries)
	}
	for _, d := range sub.RetrySchedule {
		if d < 0 || d > maxRetryDelay {
			return invalid("retry_schedule", "each delay must be from 0 to %v", maxRetryDelay)
		}
	}
	if sub.DailyAt == "" {
		sub.TimeZone = ""
		return nil
	}
	if _, err := subs.ParseDailyAt(sub.DailyAt); err != nil {
		return invalid("schedule.daily_at", "must be a time of day HH:MM")
	}
	if _, err := time.LoadLocation(sub.TimeZone); err != nil || strings.EqualFold(sub.TimeZone, "local") {
		return invalid("schedule.time_zone", "must be an IANA time zone such as Europe/Berlin")
	}
	if sub.TimeZone == "" {
		sub.TimeZone = "UTC"
	}
	return nil
}

// fromPB takes a subscription's settable fields from the API form.
func fromPB(in *adminv1.Subscription, sub *subs.Subscription, paths []string) {
	for _, p := range paths {
		switch p {
		case "system":
			sub.System = in.GetSystem()
		case "name":
			sub.Name = in.GetName()
		case "event_types":
			sub.EventTypes = in.GetEventTypes()
		case "url":
			sub.URL = in.GetUrl()
		case "filter":
			sub.Filter = in.GetFilter()
		case "table":
			sub.Table = in.GetTable()
		case "fields":
			sub.Fields = in.GetFields()
		case "conditions":
			sub.Conditions = in.GetConditions()
		case "attributes":
			sub.Attributes = nil
			for _, a := range in.GetAttributes() {
				sub.Attributes = append(sub.Attributes, payload.Attr{Name: a.GetName(), Value: a.GetValue(), Secret: a.GetSecret()})
			}
		case "headers":
			sub.Headers = nil
			for _, h := range in.GetHeaders() {
				sub.Headers = append(sub.Headers, payload.Header{Name: h.GetName(), Value: h.GetValue()})
			}
		case "timeout":
			sub.Timeout = in.GetTimeout().AsDuration()
		case "payload_format":
			sub.Format = formats[in.GetPayloadFormat()]
		case "ordering":
			sub.Ordered = in.GetOrdering() == adminv1.Ordering_ORDERING_ORDERED
		case "max_in_flight":
			sub.MaxInFlight = int(in.GetMaxInFlight())
		case "retry_schedule":
			sub.RetrySchedule = nil
			for _, d := range in.GetRetrySchedule() {
				sub.RetrySchedule = append(sub.RetrySchedule, d.AsDuration())
			}
		case "schedule":
			sub.DailyAt, sub.TimeZone = in.GetSchedule().GetDailyAt(), in.GetSchedule().GetTimeZone()
		case "rate_limit_per_second":
			sub.RateLimit = int(in.GetRateLimitPerSecond())
		case "rate_limit_burst":
			sub.RateBurst = int(in.GetRateLimitBurst())
		case "queue_id":
			sub.QueueID = in.GetQueueId()
		}
	}
}

var (
	formats = map[adminv1.PayloadFormat]payload.Format{
		adminv1.PayloadFormat_PAYLOAD_FORMAT_STANDARD: payload.Standard,
		adminv1.PayloadFormat_PAYLOAD_FORMAT_FLAT:     payload.Flat,
	}
	// Fields any subscription may change, and those only payload or
	// queue ones have.
	commonPaths  = []string{"system", "name", "event_types", "url", "filter"}
	payloadPaths = []string{"table", "fields", "conditions", "attributes", "headers", "timeout", "payload_format", "ordering", "max_in_flight", "retry_schedule", "schedule", "rate_limit_per_second", "rate_limit_burst"}
	queuePaths   = []string{"queue_id"}
)

// pathsOf answers the fields a subscription of the mode has.
func pathsOf(mode subs.Mode) []string {
	switch mode {
	case subs.ModePayload:
		return append(slices.Clone(commonPaths), payloadPaths...)
	case subs.ModeQueue:
		return append(slices.Clone(commonPaths), queuePaths...)
	}
	return commonPaths
}

func storeErr(err error) error {
	var taken *subs.TakenError
	switch {
	case errors.As(err, &taken):
		return status.Error(codes.AlreadyExists, taken.Error())
	case errors.Is(err, subs.ErrNotFound):
		return status.Error(codes.NotFound, "subscription not found")
	}
	return err
}

// checkQueue makes sure a queue subscription names a queue of its own org.
func (s *Service) checkQueue(ctx context.Context, sub subs.Subscription) error {
	if sub.Mode != subs.ModeQueue {
		return nil
	}
	_, err := s.queues.OfOrg(ctx, sub.Org, sub.QueueID)
	if errors.Is(err, queues.ErrNotFound) {
		return invalid("queue_id", "org %s has no queue %s", sub.Org, sub.QueueID)
	}
	return err
}

// sub reads a subscription, answering NotFound for a malformed id too, so
// ids cannot be probed.
func (s *Service) sub(ctx context.Context, id string) (subs.Subscription, error) {
	if !subs.ValidID(id) {
		return subs.Subscription{}, invalid("subscription_id", "must be the 20 hex characters CreateSubscription answered")
	}
	sub, err := s.subs.Get(ctx, id)
	return sub, storeErr(err)
}

// subPB answers a subscription with its live ping state.
func (s *Service) subPB(ctx context.Context, sub subs.Subscription) (*adminv1.Subscription, error) {
	pb := &adminv1.Subscription{
		SubscriptionId: sub.ID, OrgId: sub.Org, System: sub.System, Name: sub.Name,
		EventTypes: sub.EventTypes, Mode: modePB(sub.Mode), Url: sub.URL, Active: sub.Active,
		CreateTime: timestamppb.New(sub.Created), UpdateTime: timestamppb.New(sub.Updated),
		QueueId: sub.QueueID, Filter: sub.Filter,
	}
	logged, err := s.deliveryLog.GetLastMsgForSubject(ctx, bus.DeliveryLogSubject(sub.Org, sub.ID))
	switch {
	case err == nil:
		var r dlog.Record
		if err := json.Unmarshal(logged.Data, &r); err != nil {
			return nil, fmt.Errorf("decode the last delivery of %s: %w", sub.ID, err)
		}
		r.Sequence = logged.Sequence
		pb.LastDelivery = deliveryPB(r)
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, fmt.Errorf("read the last delivery of %s: %w", sub.ID, err)
	}
	if sub.Mode == subs.ModePayload {
		pb.Table, pb.Fields, pb.Conditions = sub.Table, sub.Fields, sub.Conditions
		for _, a := range sub.Attributes {
			pb.Attributes = append(pb.Attributes, &adminv1.Attribute{Name: a.Name, Value: a.Value, Secret: a.Secret})
		}
		for _, h := range sub.Headers {
			pb.Headers = append(pb.Headers, &adminv1.Header{Name: h.Name, Value: h.Value})
		}
		pb.Timeout = durationpb.New(sub.Timeout)
		pb.PayloadFormat = adminv1.PayloadFormat_PAYLOAD_FORMAT_STANDARD
		if sub.Format == payload.Flat {
			pb.PayloadFormat = adminv1.PayloadFormat_PAYLOAD_FORMAT_FLAT
		}
		pb.Ordering = adminv1.Ordering_ORDERING_CONCURRENT
		if sub.Ordered {
			pb.Ordering = adminv1.Ordering_ORDERING_ORDERED
		}
		pb.MaxInFlight = uint32(sub.MaxInFlight)
		pb.RateLimitPerSecond, pb.RateLimitBurst = uint32(sub.RateLimit), uint32(sub.RateBurst)
		for _, d := range sub.RetrySchedule {
			pb.RetrySchedule = append(pb.RetrySchedule, durationpb.New(d))
		}
		pb.DisabledReason = sub.DisabledReason
		if sub.DailyAt != "" {
			pb.Schedule = &adminv1.DeliverySchedule{DailyAt: sub.DailyAt, TimeZone: sub.TimeZone}
		}
		st, err := s.subs.State(ctx, sub.ID)
		if err != nil {
			return nil, err
		}
		if !st.FailingSince.IsZero() {
			pb.FailingSince = timestamppb.New(st.FailingSince)
		}
		if pb.InFlight, err = s.inFlight(ctx, sub.ID); err != nil {
			return nil, err
		}
		return pb, nil
	}
	if sub.Mode != subs.ModePing {
		return pb, nil
	}
	st, err := s.subs.State(ctx, sub.ID)
	if err != nil {
		return nil, err
	}
	pb.Unacked = uint32(st.Unacked)
	if !st.Last.IsZero() {
		pb.LastNotifiedAt = timestamppb.New(st.Last)
	}
	last, err := s.notify.GetLastMsgForSubject(ctx, bus.NotifyAll(sub.ID))
	switch {
	case err == nil && last.Subject == bus.NotifySched(sub.ID):
		pb.PendingSince = timestamppb.New(last.Time)
	case err != nil && !errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, fmt.Errorf("read ping timer: %w", err)
	}
	return pb, nil
}

// inFlight counts a payload subscription's tasks in DELIVERIES, whose
// work-queue retention keeps each until its delivery ends: waiting on
// the subscription's subject, for a retry, or for the day's digest.
func (s *Service) inFlight(ctx context.Context, id string) (uint64, error) {
	var n uint64
	for _, filter := range []string{bus.DeliverSubject(id), bus.RetrySubject(id, ">"), bus.DigestSubject(id)} {
		info, err := s.deliveries.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			return 0, fmt.Errorf("count the tasks of %s: %w", id, err)
		}
		for _, c := range info.State.Subjects {
			n += c
		}
	}
	return n, nil
}

func (s *Service) CreateSubscription(ctx context.Context, req *adminv1.CreateSubscriptionRequest) (*adminv1.CreateSubscriptionResponse, error) {
	in := req.GetSubscription()
	if in == nil {
		return nil, invalid("subscription", "is required")
	}
	if _, err := s.org(ctx, in.GetOrgId()); err != nil {
		return nil, err
	}
	mode, ok := modes[in.GetMode()]
	if !ok {
		return nil, invalid("mode", "must be DELIVERY_MODE_PING, DELIVERY_MODE_PAYLOAD or DELIVERY_MODE_QUEUE")
	}
	if err := rateOfMode(mode, in); err != nil {
		return nil, err
	}
	// subscription.active cannot tell false from not given, so it is not
	// read, but a request that sets it beside inactive contradicts itself.
	if req.GetInactive() && in.GetActive() {
		return nil, invalid("inactive", "contradicts subscription.active; set one of them")
	}
	now := s.now().UTC()
	sub := subs.Subscription{
		ID: subs.NewID(), Org: in.GetOrgId(), Mode: mode, Active: !req.GetInactive(),
		Secret: subs.NewSecret(), Created: now, Updated: now,
	}
	fromPB(in, &sub, pathsOf(mode))
	if err := checkSub(&sub); err != nil {
		return nil, err
	}
	if err := s.checkQueue(ctx, sub); err != nil {
		return nil, err
	}
	last, err := s.eventsLast(ctx)
	if err != nil {
		return nil, err
	}
	sub.RoutedFrom = last
	if sub.Ordered {
		sub.OrderedFrom = last
	}
	if err := s.subs.Create(ctx, sub); err != nil {
		return nil, storeErr(err)
	}
	if err := s.undoIfOrgGone(ctx, sub); err != nil {
		return nil, err
	}
	if err := s.armDigest(ctx, sub, false); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "subscription created", "org", sub.Org, "subscription", sub.ID, "mode", sub.Mode)
	pb, err := s.subPB(ctx, sub)
	if err != nil {
		return nil, err
	}
	return &adminv1.CreateSubscriptionResponse{Subscription: pb, SigningSecret: sub.Secret}, nil
}

// undoIfOrgGone deletes a subscription just made for an org deleted
// meanwhile, which would otherwise deliver the events of an org made again
// under its id.
func (s *Service) undoIfOrgGone(ctx context.Context, sub subs.Subscription) error {
	err := s.orgGone(ctx, sub.Org)
	if status.Code(err) != codes.NotFound {
		return err
	}
	if _, derr := s.subs.Delete(ctx, sub.ID); derr != nil && !errors.Is(derr, subs.ErrNotFound) {
		return derr
	}
	return err
}

// eventsLast answers the last sequence in EVENTS.
func (s *Service) eventsLast(ctx context.Context) (uint64, error) {
	st, err := bus.Stream(ctx, s.conn.JS, bus.StreamEvents)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("events stream: %w", err)
	}
	return info.State.LastSeq, nil
}

func (s *Service) GetSubscription(ctx context.Context, req *adminv1.GetSubscriptionRequest) (*adminv1.Subscription, error) {
	sub, err := s.sub(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	return s.subPB(ctx, sub)
}

func (s *Service) ListSubscriptions(ctx context.Context, req *adminv1.ListSubscriptionsRequest) (*adminv1.ListSubscriptionsResponse, error) {
	if _, err := s.org(ctx, req.GetOrgId()); err != nil {
		return nil, err
	}
	list, err := s.subList.List(ctx, req.GetOrgId())
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListSubscriptionsResponse{}
	for _, sub := range list {
		pb, err := s.subPB(ctx, sub)
		if err != nil {
			return nil, err
		}
		resp.Subscriptions = append(resp.Subscriptions, pb)
	}
	return resp, nil
}

func (s *Service) UpdateSubscription(ctx context.Context, req *adminv1.UpdateSubscriptionRequest) (*adminv1.Subscription, error) {
	in := req.GetSubscription()
	if in == nil {
		return nil, invalid("subscription", "is required")
	}
	current, err := s.sub(ctx, in.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	if err := rateOfMode(current.Mode, in); err != nil {
		return nil, err
	}
	allowed := pathsOf(current.Mode)
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		paths = allowed
	}
	for _, p := range paths {
		if !slices.Contains(allowed, p) {
			return nil, invalid("update_mask", "%q cannot be updated; these can: %s (active through SetSubscriptionActive)", p, strings.Join(allowed, ", "))
		}
	}
	// Switched to ordered, it delivers in order from the switch on, not the
	// events since it was created; switched back, it finishes in order
	// what came before the switch. Given other types, it takes theirs from
	// here on.
	last, err := s.eventsLast(ctx)
	if err != nil {
		return nil, err
	}
	sub, err := s.subs.Update(ctx, in.GetSubscriptionId(), func(sub *subs.Subscription) error {
		was, types := sub.Ordered, slices.Clone(sub.EventTypes)
		fromPB(in, sub, paths)
		switch {
		case sub.Ordered && !was:
			sub.OrderedFrom = last
		case was && !sub.Ordered:
			sub.OrderedUntil = last
		}
		if !slices.Equal(types, sub.EventTypes) {
			sub.RoutedFrom = last
		}
		sub.Updated = s.now().UTC()
		if err := checkSub(sub); err != nil {
			return err
		}
		return s.checkQueue(ctx, *sub)
	})
	if err != nil {
		return nil, storeErr(err)
	}
	if err := s.armDigest(ctx, sub, current.DailyAt != sub.DailyAt || current.TimeZone != sub.TimeZone); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "subscription updated", "org", sub.Org, "subscription", sub.ID)
	return s.subPB(ctx, sub)
}

func (s *Service) DeleteSubscription(ctx context.Context, req *adminv1.DeleteSubscriptionRequest) (*adminv1.DeleteSubscriptionResponse, error) {
	if _, err := s.sub(ctx, req.GetSubscriptionId()); err != nil {
		return nil, err
	}
	sub, err := s.subs.Delete(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, storeErr(err)
	}
	if err := s.dropTimer(ctx, sub.ID); err != nil {
		return nil, err
	}
	if err := bus.PurgeTasks(ctx, s.deliveries, sub.ID); err != nil {
		// Gone all the same: the owner of its partition removes them too.
		s.log.WarnContext(ctx, "tasks of a deleted subscription not removed", "subscription", sub.ID, "err", err)
	}
	s.log.InfoContext(ctx, "subscription deleted", "org", sub.Org, "subscription", sub.ID)
	return &adminv1.DeleteSubscriptionResponse{}, nil
}

// dropTimer removes a pending ping or digest, so a subscription switched
// off or deleted is not called.
func (s *Service) dropTimer(ctx context.Context, id string) error {
	for _, subj := range []string{bus.NotifyAll(id), bus.DigestSched(id)} {
		if err := s.notify.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return fmt.Errorf("drop timer of %s: %w", id, err)
		}
	}
	return nil
}

// armDigest starts a daily subscription's digest timer; changed replaces
// one running for an earlier schedule.
func (s *Service) armDigest(ctx context.Context, sub subs.Subscription, changed bool) error {
	if changed {
		if err := s.notify.Purge(ctx, jetstream.WithPurgeSubject(bus.DigestSched(sub.ID))); err != nil {
			return fmt.Errorf("drop digest timer of %s: %w", sub.ID, err)
		}
	}
	if !sub.Daily() || !sub.Active {
		return nil
	}
	return subs.ArmDigest(ctx, s.conn.JS, sub, s.now())
}

func (s *Service) SetSubscriptionActive(ctx context.Context, req *adminv1.SetSubscriptionActiveRequest) (*adminv1.Subscription, error) {
	sub, err := s.setActive(ctx, req.GetSubscriptionId(), req.GetActive())
	if err != nil {
		return nil, err
	}
	return s.subPB(ctx, sub)
}

// switchedOn does what a switch on needs beyond the write: a ping
// subscription starts afresh (a change stored since the switch may have
// found the old count at its cap), a daily one's digest timer is set. Of a
// switch off it checks that no switch on was stored after it, whose timer
// the switch off's drop may have taken away.
func (s *Service) switchedOn(ctx context.Context, sub subs.Subscription, last uint64) error {
	if !sub.Active {
		now, err := s.subs.Get(ctx, sub.ID)
		if errors.Is(err, subs.ErrNotFound) || (err == nil && !now.Active) {
			return nil
		}
		if err != nil {
			return err
		}
		sub, last = now, now.RoutedFrom
	}
	if sub.Mode == subs.ModePing {
		return s.subs.AckPings(ctx, s.conn.NC, sub.ID, sub.Org, sub.EventTypes, last, s.cfg.NotifyDelay)
	}
	return s.armDigest(ctx, sub, false)
}

// setActive switches a subscription. Switching a ping subscription on
// resets its unacked counter, as Collmex does when a notification is
// deactivated and activated again; switching it off drops its pending ping.
func (s *Service) setActive(ctx context.Context, id string, active bool) (subs.Subscription, error) {
	before, err := s.sub(ctx, id)
	if err != nil {
		return before, err
	}
	var last uint64
	if active {
		if last, err = s.eventsLast(ctx); err != nil {
			return before, err
		}
	}
	// Whether this call switched it is known only as it is written: a
	// switch the other way may be stored between the read above and this
	// write, and the timers must follow what was stored.
	switched := false
	sub, err := s.subs.Update(ctx, id, func(sub *subs.Subscription) error {
		if switched = sub.Active != active; !switched {
			return nil
		}
		sub.Active = active
		if active {
			sub.DisabledReason = "" // switched on again by an admin
			sub.RoutedFrom = max(sub.RoutedFrom, last)
		}
		sub.Updated = s.now().UTC()
		return nil
	})
	if err != nil {
		return sub, storeErr(err)
	}
	if !switched {
		return sub, nil
	}
	if !active {
		if err := s.dropTimer(ctx, id); err != nil {
			return sub, err
		}
	}
	if err := s.switchedOn(ctx, sub, last); err != nil {
		return sub, err
	}
	s.log.InfoContext(ctx, "subscription switched", "org", sub.Org, "subscription", sub.ID, "active", active)
	return sub, nil
}

func (s *Service) RotateSecret(ctx context.Context, req *adminv1.RotateSecretRequest) (*adminv1.RotateSecretResponse, error) {
	cur, err := s.sub(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	if cur.Mode == subs.ModeQueue {
		return nil, invalid("subscription_id", "a queue subscription's events go into its queue unsigned: it has no signing secret to rotate")
	}
	secret := subs.NewSecret()
	sub, err := s.subs.Update(ctx, req.GetSubscriptionId(), func(sub *subs.Subscription) error {
		now := s.now().UTC()
		sub.PrevSecret, sub.PrevUntil = sub.Secret, now.Add(s.cfg.SecretGrace)
		sub.Secret, sub.Updated = secret, now
		return nil
	})
	if err != nil {
		return nil, storeErr(err)
	}
	s.log.InfoContext(ctx, "signing secret rotated", "org", sub.Org, "subscription", sub.ID, "previous_valid_until", sub.PrevUntil)
	return &adminv1.RotateSecretResponse{SigningSecret: secret, PreviousValidUntil: timestamppb.New(sub.PrevUntil)}, nil
}

func (s *Service) PreviewSubscription(ctx context.Context, req *adminv1.PreviewSubscriptionRequest) (*adminv1.PreviewSubscriptionResponse, error) {
	sub, err := s.sub(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	typ := req.GetEventType()
	if name, ok := catalog.ByCode(typ); ok {
		typ = name
	}
	if typ != "" && !slices.Contains(sub.EventTypes, typ) {
		return nil, invalid("event_type", "the subscription does not have %q", req.GetEventType())
	}
	now := s.now().UTC()
	var sample event.Event
	if raw := req.GetSampleEvent(); raw != "" {
		if sample, err = sampleEvent(raw); err != nil {
			return nil, err
		}
		if typ != "" && !slices.Contains(catalog.Expand([]string{typ}), sample.Type) {
			return nil, invalid("sample_event", "is of type %q, not of event_type %q", sample.Type, typ)
		}
	} else {
		if typ == "" {
			typ = sub.EventTypes[0]
		}
		// Sample data with the fields the subscription picks, so none vanish.
		data := map[string]any{"id": "DOC-1001", "status": "changed"}
		for _, f := range sub.Fields {
			data[f] = "…"
		}
		raw, _ := json.Marshal(data)
		sample = event.Event{ID: "sample-1", Source: "/kurier/preview", Type: typ, Subject: "DOC-1001",
			Time: now.Format(time.RFC3339Nano), Data: raw}
	}
	// A filter that cannot judge the sample lets it through no more than
	// the dispatcher would.
	pass, err := passes(sub, sample, now)
	if err != nil {
		s.log.InfoContext(ctx, "preview: the filter does not pass the sample", "subscription", sub.ID, "err", err)
	}
	matches := pass && slices.Contains(catalog.Expand(sub.EventTypes), sample.Type)
	if sub.Mode == subs.ModePing {
		// A ping is a GET on the URL exactly as configured, with no body.
		return &adminv1.PreviewSubscriptionResponse{Method: "GET", Url: sub.URL, Matches: matches}, nil
	}
	if sub.Mode == subs.ModeQueue {
		msg, err := queues.EventContent(sample, now)
		if err != nil {
			return nil, err
		}
		return &adminv1.PreviewSubscriptionResponse{SampleBody: string(msg), Matches: matches}, nil
	}
	url, err := payload.RequestURL(sub.Spec(), sample.Type)
	if err != nil {
		return nil, err
	}
	body, err := payload.Body(sub.Spec(), sample, now)
	if err != nil {
		return nil, err
	}
	return &adminv1.PreviewSubscriptionResponse{Method: "POST", Url: url, SampleBody: string(body), Matches: matches}, nil
}
