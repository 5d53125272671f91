package admin

import (
	"context"
	"errors"
	"slices"
	"strings"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/catalog"
	"kurier.dev/services/internal/schema"
)

func catalogPB(t catalog.Type) *adminv1.EventType {
	return &adminv1.EventType{Name: t.Name, CollmexCode: t.Code, System: t.System, Description: t.Title}
}

// eventTypePB describes a type with an org's schema for it: the catalog's
// entry if it has one, the bare name for an org's own type.
func eventTypePB(name, text string) *adminv1.EventType {
	known := catalog.All()
	pb := &adminv1.EventType{Name: name}
	if i := slices.IndexFunc(known, func(t catalog.Type) bool { return t.Name == name }); i >= 0 {
		pb = catalogPB(known[i])
	}
	pb.Schema = text
	return pb
}

func (s *Service) ListEventTypes(ctx context.Context, req *adminv1.ListEventTypesRequest) (*adminv1.ListEventTypesResponse, error) {
	known := catalog.All()
	resp := &adminv1.ListEventTypesResponse{EventTypes: make([]*adminv1.EventType, len(known))}
	for i, t := range known {
		resp.EventTypes[i] = catalogPB(t)
	}
	org := req.GetOrgId()
	if org == "" {
		return resp, nil
	}
	if _, err := s.org(ctx, org); err != nil {
		return nil, err
	}
	schemas, err := s.schemaList.Org(ctx, org)
	if err != nil {
		return nil, err
	}
	// The org's own types follow the catalog's, by name.
	for _, e := range schemas {
		if i := slices.IndexFunc(resp.EventTypes, func(t *adminv1.EventType) bool { return t.Name == e.Type }); i >= 0 {
			resp.EventTypes[i].Schema = e.Text
		} else {
			resp.EventTypes = append(resp.EventTypes, &adminv1.EventType{Name: e.Type, Schema: e.Text})
		}
	}
	return resp, nil
}

// checkEventType checks the org and type a request names.
func checkEventType(org, typ string) error {
	if err := checkOrgID(org); err != nil {
		return err
	}
	if !catalog.ValidType(typ) {
		return invalid("event_type", "must be a dotted lower-case name such as invoice.changed (2-8 segments of a-z, 0-9, _ or -, each starting with a letter, at most %d characters)", catalog.MaxTypeLen)
	}
	return nil
}

func (s *Service) SetEventTypeSchema(ctx context.Context, req *adminv1.SetEventTypeSchemaRequest) (*adminv1.EventType, error) {
	org, typ, text := req.GetOrgId(), req.GetEventType(), req.GetSchema()
	if err := checkEventType(org, typ); err != nil {
		return nil, err
	}
	if strings.TrimSpace(text) == "" {
		return nil, invalid("schema", "is required (DeleteEventTypeSchema removes a schema)")
	}
	if _, err := schema.Compile(text); err != nil {
		return nil, invalid("schema", "%v", err)
	}
	if _, err := s.org(ctx, org); err != nil {
		return nil, err
	}
	if err := s.schemas.Set(ctx, org, typ, text); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "event type schema set", "org", org, "type", typ, "bytes", len(text))
	return eventTypePB(typ, text), nil
}

func (s *Service) DeleteEventTypeSchema(ctx context.Context, req *adminv1.DeleteEventTypeSchemaRequest) (*adminv1.EventType, error) {
	org, typ := req.GetOrgId(), req.GetEventType()
	if err := checkEventType(org, typ); err != nil {
		return nil, err
	}
	if _, err := s.org(ctx, org); err != nil {
		return nil, err
	}
	err := s.schemas.Delete(ctx, org, typ)
	if errors.Is(err, schema.ErrNotFound) {
		return nil, notFound("schema of event type", typ)
	}
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "event type schema deleted", "org", org, "type", typ)
	return eventTypePB(typ, ""), nil
}
