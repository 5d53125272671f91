package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/catalog"
	"kurier.dev/services/internal/collmex"
	"kurier.dev/services/internal/subs"
)

// lineErr rejects an API_NOTIFICATION call for one line: InvalidArgument
// naming the line and Collmex's field, as a BadRequest detail too.
func lineErr(line int, field, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	full := fmt.Sprintf("records: line %d: %s: %s", line, field, msg)
	st := status.New(codes.InvalidArgument, full)
	v := &errdetails.BadRequest_FieldViolation{Field: fmt.Sprintf("records[line %d].%s", line, field), Description: msg}
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{v}}); err == nil {
		st = d
	}
	return st.Err()
}

// ApplyApiNotification applies Collmex API_NOTIFICATION records. Every
// line is checked before any is applied, so a bad line changes nothing.
// A notification is identified by system and event, as in Collmex: a line
// for an existing pair updates it, Inaktiv 2 deletes it.
func (s *Service) ApplyApiNotification(ctx context.Context, req *adminv1.ApplyApiNotificationRequest) (*adminv1.ApplyApiNotificationResponse, error) {
	org := req.GetOrgId()
	if _, err := s.org(ctx, org); err != nil {
		return nil, err
	}
	notes, err := collmex.ParseNotifications(req.GetRecords())
	var le *collmex.LineError
	if errors.As(err, &le) {
		return nil, lineErr(le.Line, le.Field, "%s", le.Message)
	}
	if err != nil {
		return nil, invalid("records", "%v", err)
	}
	type pair struct{ system, typ string }
	seen := map[pair]int{}
	for _, n := range notes {
		typ, _ := catalog.ByCode(n.Event)
		p := pair{n.System, typ}
		if first, dup := seen[p]; dup {
			return nil, lineErr(n.Line, "Ereignis", "system %q and event %s are already on line %d", n.System, n.Event, first)
		}
		seen[p] = n.Line
		if err := checkSystem(n.System); err != nil {
			return nil, lineErr(n.Line, "System", "%s", status.Convert(err).Message())
		}
		if err := checkURL(n.URL, subs.ModePing); err != nil {
			return nil, lineErr(n.Line, "URL", "%s", status.Convert(err).Message())
		}
	}

	// The secrets of new subscriptions are answered once, here, as
	// CreateSubscription answers its.
	resp := &adminv1.ApplyApiNotificationResponse{SigningSecrets: map[string]string{}}
	var touched []string
	for _, n := range notes {
		typ, _ := catalog.ByCode(n.Event)
		id, exists, err := s.subs.PingSubscription(ctx, org, n.System, typ)
		if err != nil {
			return nil, err
		}
		switch {
		case n.Inactive == 2 && !exists:
			resp.Unchanged++
		case n.Inactive == 2:
			if err := s.dropType(ctx, id, typ); err != nil {
				return nil, err
			}
			resp.Deleted++
		case exists:
			got, changed, err := s.applyExisting(ctx, id, typ, n.URL, n.Inactive == 0, resp.SigningSecrets)
			if err != nil {
				return nil, err
			}
			if changed {
				resp.Updated++
			} else {
				resp.Unchanged++
			}
			touched = append(touched, got)
		default:
			id, err := s.createPing(ctx, org, n.System, typ, n.URL, n.Inactive == 0, resp.SigningSecrets)
			if err != nil {
				return nil, err
			}
			resp.Created++
			touched = append(touched, id)
		}
	}
	// In the order of the lines; lines for several types of one
	// subscription name it once.
	listed := map[string]bool{}
	for _, id := range touched {
		if listed[id] {
			continue
		}
		listed[id] = true
		sub, err := s.subs.Get(ctx, id)
		if errors.Is(err, subs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pb, err := s.subPB(ctx, sub)
		if err != nil {
			return nil, err
		}
		resp.Subscriptions = append(resp.Subscriptions, pb)
	}
	s.log.InfoContext(ctx, "API_NOTIFICATION applied", "org", org, "created", resp.Created, "updated", resp.Updated, "deleted", resp.Deleted)
	return resp, nil
}

// createPing makes a single-type ping subscription as a Collmex line does,
// noting its signing secret in created by its id.
func (s *Service) createPing(ctx context.Context, org, system, typ, url string, active bool, created map[string]string) (string, error) {
	last, err := s.eventsLast(ctx)
	if err != nil {
		return "", err
	}
	now := s.now().UTC()
	sub := subs.Subscription{ID: subs.NewID(), Org: org, System: system, Name: system,
		EventTypes: []string{typ}, Mode: subs.ModePing, URL: url, Active: active,
		Secret: subs.NewSecret(), Created: now, Updated: now, RoutedFrom: last}
	if err := s.subs.Create(ctx, sub); err != nil {
		return "", storeErr(err)
	}
	if err := s.undoIfOrgGone(ctx, sub); err != nil {
		return "", err
	}
	created[sub.ID] = sub.Secret
	return sub.ID, nil
}

// applyExisting brings the notification for (system, typ) to what a line
// says, answering the subscription that holds it afterwards. A line is
// about one event: when the subscription holds other types too and the
// line wants it otherwise, that type moves into a subscription of its own,
// whose secret goes into created.
func (s *Service) applyExisting(ctx context.Context, id, typ, url string, active bool, created map[string]string) (string, bool, error) {
	before, err := s.subs.Get(ctx, id)
	if err != nil {
		return "", false, storeErr(err)
	}
	if before.URL == url && before.Active == active {
		return id, false, nil
	}
	if len(before.EventTypes) > 1 {
		if err := s.dropType(ctx, id, typ); err != nil {
			return "", false, err
		}
		got, err := s.createPing(ctx, before.Org, before.System, typ, url, active, created)
		return got, true, err
	}
	if before.URL != url {
		if _, err := s.subs.Update(ctx, id, func(sub *subs.Subscription) error {
			sub.URL = url
			sub.Updated = s.now().UTC()
			return nil
		}); err != nil {
			return "", false, storeErr(err)
		}
	}
	if _, err := s.setActive(ctx, id, active); err != nil {
		return "", false, err
	}
	return id, true, nil
}

// dropType removes one event type from a ping subscription, deleting it
// when none is left.
func (s *Service) dropType(ctx context.Context, id, typ string) error {
	sub, err := s.subs.Get(ctx, id)
	if err != nil {
		return storeErr(err)
	}
	if len(sub.EventTypes) <= 1 {
		if _, err := s.subs.Delete(ctx, id); err != nil {
			return storeErr(err)
		}
		return s.dropTimer(ctx, id)
	}
	_, err = s.subs.Update(ctx, id, func(sub *subs.Subscription) error {
		sub.EventTypes = slices.DeleteFunc(sub.EventTypes, func(t string) bool { return t == typ })
		sub.Updated = s.now().UTC()
		return nil
	})
	return storeErr(err)
}
