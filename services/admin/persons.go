package admin

import (
	"context"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/book"
)

var fieldModes = map[adminv1.APagerProFieldMode]string{
	adminv1.APagerProFieldMode_A_PAGER_PRO_FIELD_MODE_LEGACY: book.ModeLegacy,
	adminv1.APagerProFieldMode_A_PAGER_PRO_FIELD_MODE_TOKEN:  book.ModeToken,
}

var origins = map[book.Origin]adminv1.PersonOrigin{
	book.OriginSync:   adminv1.PersonOrigin_PERSON_ORIGIN_SYNC,
	book.OriginManual: adminv1.PersonOrigin_PERSON_ORIGIN_MANUAL,
}

func personPB(p book.Person) *adminv1.Person {
	pb := &adminv1.Person{
		ExternalDbId: p.ExternalDbID, FirstName: p.FirstName, LastName: p.LastName, Note: p.Note,
		OsFunctions: p.OSFunctions, OsGroups: p.OSGroups, AlarmGroups: p.AlarmGroups,
		Issi: p.ISSI, Xmpp: p.XMPP, APagerPro: p.APagerPro, Email: p.Email, Mobil: p.Mobil,
		Origin: origins[p.Origin], Deleted: p.Deleted, Token: p.Token,
	}
	for m, name := range fieldModes {
		if name == p.APagerProFieldMode {
			pb.APagerProFieldMode = m
		}
	}
	return pb
}

// snake names a person's field as the API does: externalDbId is
// external_db_id.
func snake(fe2 string) string {
	var b strings.Builder
	for _, r := range fe2 {
		if unicode.IsUpper(r) {
			b.WriteByte('_')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// bookErr answers a failure of the address book.
func bookErr(err error) error {
	if errors.Is(err, book.ErrLocked) {
		return status.Error(codes.Aborted, "a sync of the organisation is running and did not end within the sync lock wait; nothing was changed, retry")
	}
	return err
}

func checkExternalID(id string) error {
	// Counted in characters, as a sync counts the ids it takes.
	if id == "" || utf8.RuneCountInString(id) > book.MaxIDLen {
		return invalid("external_db_id", "is required, at most %d characters", book.MaxIDLen)
	}
	return nil
}

func (s *Service) ListPersons(ctx context.Context, req *adminv1.ListPersonsRequest) (*adminv1.ListPersonsResponse, error) {
	org := req.GetOrgId()
	if _, err := s.org(ctx, org); err != nil {
		return nil, err
	}
	resp := &adminv1.ListPersonsResponse{}
	next, err := s.readStream(ctx, bus.KVStream(bus.BucketPersons), bus.KVSubject(bus.BucketPersons, bus.PersonsOf(org)),
		req.GetPageSize(), req.GetPageToken(), nil, func(m jetstream.Msg) error {
			p, ok, err := book.Decode(m)
			if ok && (!p.Deleted || req.GetIncludeDeleted()) {
				resp.Persons = append(resp.Persons, personPB(p))
			}
			return err
		})
	if err != nil {
		return nil, err
	}
	resp.NextPageToken = next
	return resp, nil
}

func (s *Service) GetPerson(ctx context.Context, req *adminv1.GetPersonRequest) (*adminv1.Person, error) {
	if _, err := s.org(ctx, req.GetOrgId()); err != nil {
		return nil, err
	}
	if err := checkExternalID(req.GetExternalDbId()); err != nil {
		return nil, err
	}
	p, err := s.book.Get(ctx, req.GetOrgId(), req.GetExternalDbId())
	if errors.Is(err, book.ErrNotFound) {
		return nil, notFound("person", req.GetExternalDbId())
	}
	if err != nil {
		return nil, err
	}
	return personPB(p), nil
}

func (s *Service) CreatePerson(ctx context.Context, req *adminv1.CreatePersonRequest) (*adminv1.Person, error) {
	o, err := s.org(ctx, req.GetOrgId())
	if err != nil {
		return nil, err
	}
	in := req.GetPerson()
	if in == nil {
		return nil, invalid("person", "is required")
	}
	mode, ok := fieldModes[in.GetAPagerProFieldMode()]
	if !ok && in.GetAPagerProFieldMode() != adminv1.APagerProFieldMode_A_PAGER_PRO_FIELD_MODE_UNSPECIFIED {
		return nil, invalid("person.a_pager_pro_field_mode", "unknown mode %v", in.GetAPagerProFieldMode())
	}
	f := book.Fields{
		ExternalDbID: in.GetExternalDbId(), FirstName: in.GetFirstName(), LastName: in.GetLastName(), Note: in.GetNote(),
		OSFunctions: in.GetOsFunctions(), OSGroups: in.GetOsGroups(), AlarmGroups: in.GetAlarmGroups(),
		ISSI: in.GetIssi(), XMPP: in.GetXmpp(), APagerPro: in.GetAPagerPro(), Email: in.GetEmail(), Mobil: in.GetMobil(),
		APagerProFieldMode: mode,
	}
	if ferr := f.Check(); ferr != nil {
		return nil, invalid("person."+snake(ferr.Field), "%s", ferr.Message)
	}
	w, err := s.book.Lock(ctx, o.ID)
	if err != nil {
		return nil, bookErr(err)
	}
	defer w.Release()
	b, err := w.Book(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := b.Persons[f.ExternalDbID]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "org %s already has a person %q", o.ID, f.ExternalDbID)
	}
	if o.PersonQuota > 0 && b.Active() >= o.PersonQuota {
		return nil, status.Errorf(codes.ResourceExhausted, "org %s has %d persons, its quota", o.ID, b.Active())
	}
	p := book.NewPerson(f, book.OriginManual, nil)
	if err := w.Commit(ctx, []book.Change{b.Change(f.ExternalDbID, &p)}); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "person created", "org", o.ID)
	return personPB(p), nil
}

func (s *Service) DeletePerson(ctx context.Context, req *adminv1.DeletePersonRequest) (*adminv1.DeletePersonResponse, error) {
	org, id := req.GetOrgId(), req.GetExternalDbId()
	if _, err := s.org(ctx, org); err != nil {
		return nil, err
	}
	if err := checkExternalID(id); err != nil {
		return nil, err
	}
	// A person the org does not have is answered before the lock is
	// taken, so that asking for one neither waits for nor holds up a sync.
	if b, err := s.book.Read(ctx, org, id); err != nil {
		return nil, err
	} else if _, ok := b.Persons[id]; !ok {
		return nil, notFound("person", id)
	}
	w, err := s.book.Lock(ctx, org)
	if err != nil {
		return nil, bookErr(err)
	}
	defer w.Release()
	b, err := w.Read(ctx, id) // again: a sync may have changed it meanwhile
	if err != nil {
		return nil, err
	}
	if _, ok := b.Persons[id]; !ok {
		return nil, notFound("person", id)
	}
	if err := w.Commit(ctx, []book.Change{b.Change(id, nil)}); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "person deleted", "org", org)
	return &adminv1.DeletePersonResponse{}, nil
}

func (s *Service) GetAddressBook(ctx context.Context, req *adminv1.GetAddressBookRequest) (*adminv1.AddressBook, error) {
	org := req.GetOrgId()
	if _, err := s.org(ctx, org); err != nil {
		return nil, err
	}
	active, deleted, err := s.book.Count(ctx, org)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.AddressBook{OrgId: org, Persons: uint32(active), MarkedDeleted: uint32(deleted)}
	ls, ok, err := s.book.LastSync(ctx, org)
	if err != nil {
		return nil, err
	}
	if ok {
		resp.LastSync = &adminv1.AddressBookSync{
			Time: timestamppb.New(ls.Time), Source: ls.Source, Status: int32(ls.Status), Error: ls.Error, Field: ls.Field,
			Created: uint32(ls.Created), Updated: uint32(ls.Updated), Deleted: uint32(ls.Deleted),
			MarkedDeleted: uint32(ls.MarkedDeleted), Unchanged: uint32(ls.Unchanged),
		}
	}
	return resp, nil
}
