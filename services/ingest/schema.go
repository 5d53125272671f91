package ingest

import (
	"net/http"
	"strconv"

	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/web"
)

// conform refuses a request one of whose events has data that its org's
// schema for the event's type does not match, naming where in the data
// ("data.items[0].price"; "[3].data.total" and index 3 in a batch). Data
// that is not JSON (text such as XML, or bytes) cannot match a schema,
// which describes JSON, and is refused too. Types without a schema cost
// one lookup in memory per event.
func (s *Service) conform(org string, events []event.Event, batch bool) error {
	for i, e := range events {
		sch, ok := s.schemas.For(org, e.Type)
		if !ok {
			continue
		}
		var we *web.Error
		switch {
		case e.Binary != nil:
			we = &web.Error{Field: "data_base64", Message: notJSON(e.Type, "bytes")}
		case e.Text():
			we = &web.Error{Field: "data", Message: notJSON(e.Type, e.DataContentType)}
		default:
			v := sch.Check(e.Data)
			if v == nil {
				continue
			}
			we = &web.Error{Field: "data" + v.Path, Message: "does not match the org's schema for " + e.Type + ": " + v.Message}
		}
		we.Status, we.Code = http.StatusBadRequest, "schema_mismatch"
		if batch {
			index := i // a pointer to i itself would move it to the heap on every event
			we.Index = &index
			we.Field = "[" + strconv.Itoa(i) + "]." + we.Field
		}
		return we
	}
	return nil
}

func notJSON(typ, what string) string {
	return "data of type " + typ + " must be JSON, which the org's schema for the type describes, not " + what
}
