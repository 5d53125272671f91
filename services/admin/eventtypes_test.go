package admin_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/admin"
	"kurier.dev/services/admin/admintest"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
)

const typesToken = "test-admin-token-0123456789"

// typesAdmin runs the admin service on a real listener and answers a client
// whose calls carry the token.
func typesAdmin(t *testing.T) (context.Context, adminv1.AdminServiceClient) {
	t.Helper()
	ctx, api, _ := busAdmin(t)
	return ctx, api
}

// busAdmin is typesAdmin that also answers the bus connection, for tests
// that put records where the service reads them.
func busAdmin(t *testing.T) (context.Context, adminv1.AdminServiceClient, *jet.Conn) {
	t.Helper()
	addr, conn := admintest.Serve(t, admin.Config{Token: typesToken, Limits: bus.DefaultLimits()})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+typesToken), adminv1.NewAdminServiceClient(cc), conn
}

// schemasOf answers an org's schemas by type, and the listing.
func schemasOf(t *testing.T, ctx context.Context, api adminv1.AdminServiceClient, org string) map[string]*adminv1.EventType {
	t.Helper()
	resp, err := api.ListEventTypes(ctx, &adminv1.ListEventTypesRequest{OrgId: org})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*adminv1.EventType{}
	for _, et := range resp.GetEventTypes() {
		if et.GetSchema() != "" {
			out[et.GetName()] = et
		}
	}
	return out
}

// TestListEventTypes: the catalog with Collmex's codes, the same for every
// caller; with an org, its schemas and its own types, and no other org's.
func TestListEventTypes(t *testing.T) {
	ctx, api := typesAdmin(t)
	resp, err := api.ListEventTypes(ctx, &adminv1.ListEventTypesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*adminv1.EventType{}
	for _, et := range resp.GetEventTypes() {
		byName[et.GetName()] = et
	}
	if inv := byName["invoice.changed"]; inv.GetCollmexCode() != "5" || inv.GetSystem() != "collmex" || inv.GetDescription() != "Invoice changed" {
		t.Errorf("invoice.changed: %v", inv)
	}
	if p := byName["project.created"]; p.GetSystem() != "profacto" || p.GetCollmexCode() != "" {
		t.Errorf("project.created: %v", p)
	}
	if len(byName) != len(resp.GetEventTypes()) || len(byName) < 25 {
		t.Errorf("%d types, %d names", len(resp.GetEventTypes()), len(byName))
	}

	for _, org := range []string{"acme", "globex"} {
		if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: org}); err != nil {
			t.Fatal(err)
		}
	}
	for _, typ := range []string{"invoice.changed", "acme.machine.stopped"} {
		if _, err := api.SetEventTypeSchema(ctx, &adminv1.SetEventTypeSchemaRequest{OrgId: "acme", EventType: typ, Schema: `{"type":"object"}`}); err != nil {
			t.Fatal(err)
		}
	}
	got := schemasOf(t, ctx, api, "acme")
	if len(got) != 2 || got["invoice.changed"].GetCollmexCode() != "5" || got["acme.machine.stopped"].GetSchema() != `{"type":"object"}` {
		t.Errorf("acme's schemas: %v", got)
	}
	if got := schemasOf(t, ctx, api, "globex"); len(got) != 0 {
		t.Errorf("globex sees schemas: %v", got)
	}
	_, err = api.ListEventTypes(ctx, &adminv1.ListEventTypesRequest{OrgId: "nobody"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("an unknown org: %v, want NotFound", err)
	}
}

// TestSetEventTypeSchema: a schema is stored as given and answered with
// the type's catalog entry; setting it again replaces it, deleting it
// removes it, and a second delete is NotFound.
func TestSetEventTypeSchema(t *testing.T) {
	ctx, api := typesAdmin(t)
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	text := "{\n  \"type\": \"object\",\n  \"required\": [\"total\"]\n}"
	et, err := api.SetEventTypeSchema(ctx, &adminv1.SetEventTypeSchemaRequest{OrgId: "acme", EventType: "invoice.changed", Schema: text})
	if err != nil {
		t.Fatal(err)
	}
	if et.GetName() != "invoice.changed" || et.GetCollmexCode() != "5" || et.GetSchema() != text {
		t.Errorf("answer %v", et)
	}
	if _, err := api.SetEventTypeSchema(ctx, &adminv1.SetEventTypeSchemaRequest{OrgId: "acme", EventType: "invoice.changed", Schema: `true`}); err != nil {
		t.Fatal(err)
	}
	if got := schemasOf(t, ctx, api, "acme")["invoice.changed"].GetSchema(); got != "true" {
		t.Errorf("after the second set: %q", got)
	}
	del := &adminv1.DeleteEventTypeSchemaRequest{OrgId: "acme", EventType: "invoice.changed"}
	if et, err := api.DeleteEventTypeSchema(ctx, del); err != nil || et.GetSchema() != "" || et.GetName() != "invoice.changed" {
		t.Fatalf("delete: %v %v", et, err)
	}
	if got := schemasOf(t, ctx, api, "acme"); len(got) != 0 {
		t.Errorf("after the delete: %v", got)
	}
	if _, err := api.DeleteEventTypeSchema(ctx, del); status.Code(err) != codes.NotFound {
		t.Errorf("a second delete: %v, want NotFound", err)
	}
}

// TestSetEventTypeSchemaRefuses: bad input is INVALID_ARGUMENT naming the
// field, a schema that does not compile with the library's reason, and
// nothing is stored.
func TestSetEventTypeSchemaRefuses(t *testing.T) {
	ctx, api := typesAdmin(t)
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		org, typ, schema, field, want string
	}{
		{"Acme!", "invoice.changed", `true`, "org_id", "must match"},
		{"acme", "Invoice", `true`, "event_type", "dotted lower-case"},
		{"acme", "invoice.>", `true`, "event_type", "dotted lower-case"},
		{"acme", "invoice.changed", ` `, "schema", "is required"},
		{"acme", "invoice.changed", `{"type":`, "schema", "is not JSON"},
		{"acme", "invoice.changed", `{"type":"objekt"}`, "schema", "is not valid against metaschema"},
		{"acme", "invoice.changed", `{"$ref":"https://example.com/s.json"}`, "schema", "is not loaded"},
		{"acme", "invoice.changed", `{"$ref":"file:///etc/passwd"}`, "schema", "is not loaded"},
		{"acme", "invoice.changed", `{"description":"` + strings.Repeat("x", 64<<10) + `"}`, "schema", "at most 65536 are allowed"},
	} {
		_, err := api.SetEventTypeSchema(ctx, &adminv1.SetEventTypeSchemaRequest{OrgId: c.org, EventType: c.typ, Schema: c.schema})
		st := status.Convert(err)
		var field string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
				field = br.GetFieldViolations()[0].GetField()
			}
		}
		if st.Code() != codes.InvalidArgument || field != c.field || !strings.Contains(st.Message(), c.want) {
			t.Errorf("%s %s %.30s: %v (field %q), want InvalidArgument on %s with %q", c.org, c.typ, c.schema, err, field, c.field, c.want)
		}
	}
	if got := schemasOf(t, ctx, api, "acme"); len(got) != 0 {
		t.Errorf("stored: %v", got)
	}
	_, err := api.SetEventTypeSchema(ctx, &adminv1.SetEventTypeSchemaRequest{OrgId: "nobody", EventType: "invoice.changed", Schema: `true`})
	if status.Code(err) != codes.NotFound {
		t.Errorf("an unknown org: %v, want NotFound", err)
	}
	_, err = api.DeleteEventTypeSchema(ctx, &adminv1.DeleteEventTypeSchemaRequest{OrgId: "acme", EventType: "Bad"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("delete of a bad type: %v, want InvalidArgument", err)
	}
}

// TestDeleteOrgDeletesSchemas: an org made again under a deleted one's id
// inherits none of its schemas.
func TestDeleteOrgDeletesSchemas(t *testing.T) {
	ctx, api := typesAdmin(t)
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.SetEventTypeSchema(ctx, &adminv1.SetEventTypeSchemaRequest{OrgId: "acme", EventType: "invoice.changed", Schema: `false`}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.DeleteOrg(ctx, &adminv1.DeleteOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: "acme"}); err != nil {
		t.Fatal(err)
	}
	if got := schemasOf(t, ctx, api, "acme"); len(got) != 0 {
		t.Errorf("the new acme has the old one's schemas: %v", got)
	}
}
