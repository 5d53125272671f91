package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/tenant"
)

const maxText = 200 // display names and descriptions

// invalid is InvalidArgument naming the field, in the message and as a
// BadRequest detail that clients can read.
func invalid(field, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	st := status.New(codes.InvalidArgument, field+": "+msg)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}}}); err == nil {
		st = d
	}
	return st.Err()
}

func checkOrgID(id string) error {
	if !tenant.ValidOrgID(id) {
		return invalid("org_id", "must match [a-z0-9][a-z0-9-]{1,31}")
	}
	return nil
}

func checkText(field, v string) error {
	if utf8.RuneCountInString(v) > maxText || !utf8.ValidString(v) {
		return invalid(field, "must be valid UTF-8 of at most %d characters", maxText)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return invalid(field, "must not contain control characters")
		}
	}
	return nil
}

// notFound answers a missing resource. It reads the same whether the
// resource never existed or was deleted.
func notFound(what, id string) error {
	return status.Errorf(codes.NotFound, "%s %q not found", what, id)
}

func orgPB(o tenant.Org) *adminv1.Org {
	return &adminv1.Org{OrgId: o.ID, DisplayName: o.DisplayName, CreateTime: timestamppb.New(o.Created),
		AddressbookSyncEnabled: o.AddressbookSync, PersonQuota: uint32(o.PersonQuota), AllowPersonDeletion: o.AllowPersonDeletion}
}

// orgPaths are the fields UpdateOrg changes.
var orgPaths = []string{"display_name", "addressbook_sync_enabled", "person_quota", "allow_person_deletion"}

func (s *Service) UpdateOrg(ctx context.Context, req *adminv1.UpdateOrgRequest) (*adminv1.Org, error) {
	in := req.GetOrg()
	if in == nil {
		return nil, invalid("org", "is required")
	}
	if err := checkOrgID(in.GetOrgId()); err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		paths = orgPaths
	}
	for _, p := range paths {
		if !slices.Contains(orgPaths, p) {
			return nil, invalid("update_mask", "%q cannot be updated; these can: %s", p, strings.Join(orgPaths, ", "))
		}
	}
	if slices.Contains(paths, "display_name") {
		if err := checkText("display_name", in.GetDisplayName()); err != nil {
			return nil, err
		}
	}
	o, err := s.tenants.UpdateOrg(ctx, in.GetOrgId(), func(o *tenant.Org) error {
		for _, p := range paths {
			switch p {
			case "display_name":
				o.DisplayName = in.GetDisplayName()
			case "addressbook_sync_enabled":
				o.AddressbookSync = in.GetAddressbookSyncEnabled()
			case "person_quota":
				o.PersonQuota = int(in.GetPersonQuota())
			case "allow_person_deletion":
				o.AllowPersonDeletion = in.GetAllowPersonDeletion()
			}
		}
		return nil
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return nil, notFound("org", in.GetOrgId())
	}
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "org updated", "org", o.ID, "fields", strings.Join(paths, ","))
	return orgPB(o), nil
}

// org reads an org, answering NotFound when it is absent.
func (s *Service) org(ctx context.Context, id string) (tenant.Org, error) {
	if err := checkOrgID(id); err != nil {
		return tenant.Org{}, err
	}
	o, err := s.tenants.Org(ctx, id)
	if errors.Is(err, tenant.ErrNotFound) {
		return o, notFound("org", id)
	}
	return o, err
}

func (s *Service) CreateOrg(ctx context.Context, req *adminv1.CreateOrgRequest) (*adminv1.Org, error) {
	if err := checkOrgID(req.GetOrgId()); err != nil {
		return nil, err
	}
	if err := checkText("display_name", req.GetDisplayName()); err != nil {
		return nil, err
	}
	o := tenant.Org{ID: req.GetOrgId(), DisplayName: req.GetDisplayName(), Created: s.now().UTC()}
	err := s.tenants.CreateOrg(ctx, o)
	if errors.Is(err, tenant.ErrExists) {
		return nil, status.Errorf(codes.AlreadyExists, "org %q already exists", o.ID)
	}
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "org created", "org", o.ID)
	return orgPB(o), nil
}

func (s *Service) GetOrg(ctx context.Context, req *adminv1.GetOrgRequest) (*adminv1.Org, error) {
	o, err := s.org(ctx, req.GetOrgId())
	if err != nil {
		return nil, err
	}
	return orgPB(o), nil
}

func (s *Service) ListOrgs(ctx context.Context, _ *adminv1.ListOrgsRequest) (*adminv1.ListOrgsResponse, error) {
	orgs, err := s.tenantList.Orgs(ctx)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListOrgsResponse{Orgs: make([]*adminv1.Org, len(orgs))}
	for i, o := range orgs {
		resp.Orgs[i] = orgPB(o)
	}
	return resp, nil
}

func (s *Service) DeleteOrg(ctx context.Context, req *adminv1.DeleteOrgRequest) (*adminv1.DeleteOrgResponse, error) {
	id := req.GetOrgId()
	if _, err := s.org(ctx, id); err != nil {
		return nil, err
	}
	if err := s.deleteSubs(ctx, id, time.Time{}); err != nil {
		return nil, err
	}
	if err := s.queues.DeleteOrg(ctx, id); err != nil {
		return nil, err
	}
	// No sync begins while the book goes, and the org stays until it has
	// gone, so that a delete that fails can be tried again.
	if _, err := s.tenants.UpdateOrg(ctx, id, func(o *tenant.Org) error { o.AddressbookSync = false; return nil }); err != nil {
		return nil, err
	}
	if err := s.book.DeleteOrg(ctx, id); err != nil {
		return nil, bookErr(err)
	}
	schemas, err := s.schemaList.Org(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.schemas.DeleteOrg(ctx, schemas); err != nil {
		return nil, err
	}
	keys, err := s.tenantList.Keys(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.tenants.DeleteOrg(ctx, id, keys); err != nil {
		if errors.Is(err, tenant.ErrNotFound) {
			return nil, notFound("org", id)
		}
		return nil, err
	}
	// A key or subscription made while this ran, after the listings
	// above, found the org still there when it looked again (orgGone) and
	// is listed now; made no later than the org went, it was the deleted
	// org's, while an org made again under the id keeps its own.
	gone := s.now()
	if err := s.deleteSubs(ctx, id, gone); err != nil {
		return nil, err
	}
	if keys, err = s.tenantList.Keys(ctx, id); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if !k.Created.After(gone) {
			if err := s.tenants.DeleteKey(ctx, k.ID); err != nil {
				return nil, err
			}
		}
	}
	for stream, filter := range map[string]string{bus.StreamEvents: bus.EventsOrgFilter(id), bus.StreamDeliveryLog: bus.DeliveryLogFilter(id, ""), bus.StreamDeadLetters: bus.DeadSubject(id, "*"), bus.StreamStats: bus.StatsFilter(bus.StatsHour, id, ""), bus.StreamStatsMinute: bus.StatsFilter(bus.StatsMinute, id, "")} {
		st, err := s.conn.JS.Stream(ctx, stream)
		if err == nil {
			err = st.Purge(ctx, jetstream.WithPurgeSubject(filter))
		}
		if err != nil {
			return nil, fmt.Errorf("purge %s of %s: %w", stream, id, err)
		}
	}
	s.log.InfoContext(ctx, "org deleted", "org", id)
	return &adminv1.DeleteOrgResponse{}, nil
}

// deleteSubs deletes an org's subscriptions made no later than before,
// or all of them when it is zero.
func (s *Service) deleteSubs(ctx context.Context, org string, before time.Time) error {
	list, err := s.subList.List(ctx, org)
	if err != nil {
		return err
	}
	for _, sub := range list {
		if !before.IsZero() && sub.Created.After(before) {
			continue
		}
		if _, err := s.subs.Delete(ctx, sub.ID); err != nil && !errors.Is(err, subs.ErrNotFound) {
			return err
		}
		if err := s.dropTimer(ctx, sub.ID); err != nil {
			return err
		}
	}
	return nil
}

// orgGone looks again, after a key or subscription was written for an
// org, whether the org is still there: a delete of it may have listed
// what it has before the write, so what is made for an org found gone
// must be undone by its maker.
func (s *Service) orgGone(ctx context.Context, id string) error {
	_, err := s.tenants.Org(ctx, id)
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("org", id)
	}
	return err
}

var scopes = map[adminv1.KeyScope]tenant.Scope{
	adminv1.KeyScope_KEY_SCOPE_INGEST:      tenant.ScopeIngest,
	adminv1.KeyScope_KEY_SCOPE_CHANGES:     tenant.ScopeChanges,
	adminv1.KeyScope_KEY_SCOPE_PARTNER:     tenant.ScopePartner,
	adminv1.KeyScope_KEY_SCOPE_ADDRESSBOOK: tenant.ScopeAddressbook,
}

func keyPB(k tenant.Key) *adminv1.Key {
	pb := &adminv1.Key{KeyId: k.ID, OrgId: k.Org, Description: k.Description, CreateTime: timestamppb.New(k.Created)}
	for _, sc := range k.Scopes {
		for e, name := range scopes {
			if name == sc {
				pb.Scopes = append(pb.Scopes, e)
			}
		}
	}
	slices.Sort(pb.Scopes)
	if k.Revoked != nil {
		pb.RevokeTime = timestamppb.New(*k.Revoked)
	}
	return pb
}

func (s *Service) CreateKey(ctx context.Context, req *adminv1.CreateKeyRequest) (*adminv1.CreateKeyResponse, error) {
	if _, err := s.org(ctx, req.GetOrgId()); err != nil {
		return nil, err
	}
	if len(req.GetScopes()) == 0 {
		return nil, invalid("scopes", "at least one scope is required")
	}
	var granted []tenant.Scope
	for _, sc := range req.GetScopes() {
		name, ok := scopes[sc]
		if !ok {
			return nil, invalid("scopes", "unknown scope %v", sc)
		}
		if !slices.Contains(granted, name) {
			granted = append(granted, name)
		}
	}
	if err := checkText("description", req.GetDescription()); err != nil {
		return nil, err
	}
	id, secret := tenant.NewSecret()
	k := tenant.Key{ID: id, Org: req.GetOrgId(), Scopes: granted, Description: req.GetDescription(),
		Hash: tenant.HashSecret(secret), Created: s.now().UTC()}
	if err := s.tenants.CreateKey(ctx, k); err != nil {
		return nil, err
	}
	if err := s.orgGone(ctx, k.Org); err != nil {
		// The secret is never answered, so a key left by a failed purge
		// authenticates no one.
		if perr := s.tenants.DeleteKey(ctx, k.ID); perr != nil {
			s.log.WarnContext(ctx, "key of a deleted org not removed", "org", k.Org, "key_id", k.ID, "err", perr)
		}
		return nil, err
	}
	s.log.InfoContext(ctx, "key created", "org", k.Org, "key_id", k.ID)
	return &adminv1.CreateKeyResponse{Key: keyPB(k), Secret: secret}, nil
}

func (s *Service) ListKeys(ctx context.Context, req *adminv1.ListKeysRequest) (*adminv1.ListKeysResponse, error) {
	if _, err := s.org(ctx, req.GetOrgId()); err != nil {
		return nil, err
	}
	keys, err := s.tenantList.Keys(ctx, req.GetOrgId())
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListKeysResponse{Keys: make([]*adminv1.Key, len(keys))}
	for i, k := range keys {
		resp.Keys[i] = keyPB(k)
	}
	return resp, nil
}

func (s *Service) RevokeKey(ctx context.Context, req *adminv1.RevokeKeyRequest) (*adminv1.Key, error) {
	id := req.GetKeyId()
	if !tenant.ValidKeyID(id) {
		return nil, invalid("key_id", "must be the 16 hex characters CreateKey answered")
	}
	k, err := s.tenants.RevokeKey(ctx, id, s.now().UTC())
	if errors.Is(err, tenant.ErrNotFound) {
		return nil, notFound("key", id)
	}
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "key revoked", "org", k.Org, "key_id", k.ID)
	return keyPB(k), nil
}
