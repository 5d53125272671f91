package admin

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/filter"
	"kurier.dev/services/internal/subs"
)

// checkFilter refuses a filter that does not compile, naming where it
// goes wrong.
func checkFilter(expr string) error {
	if expr == "" {
		return nil
	}
	if !utf8.ValidString(expr) {
		return invalid("filter", "must be valid UTF-8")
	}
	_, err := filter.Compile(expr)
	var fe *filter.Error
	switch {
	case errors.As(err, &fe):
		return invalid("filter", "%s", fe.Error())
	case err != nil:
		return invalid("filter", "%v", err)
	}
	return nil
}

// maxSample bounds a preview's sample event; it is a document to look at,
// not one to store.
const maxSample = 256 << 10

// sampleEvent reads a preview's sample event, refusing one that ingest
// would refuse.
func sampleEvent(raw string) (event.Event, error) {
	if len(raw) > maxSample {
		return event.Event{}, invalid("sample_event", "is %d bytes, at most %d are allowed", len(raw), maxSample)
	}
	ev, err := event.Decode([]byte(raw), event.Limits{MaxData: maxSample})
	var ee *event.Error
	switch {
	case errors.As(err, &ee):
		return event.Event{}, invalid("sample_event", "%s: %s", ee.Field, ee.Message)
	case err != nil:
		return event.Event{}, invalid("sample_event", "%v", err)
	}
	return ev, nil
}

// passes tells whether the subscription's filter lets an event stored at
// stored through, as the dispatcher would judge it: an event it cannot
// judge does not pass.
func passes(sub subs.Subscription, ev event.Event, stored time.Time) (bool, error) {
	if sub.Filter == "" {
		return true, nil
	}
	prg, err := filter.Compile(sub.Filter)
	if err != nil {
		return false, fmt.Errorf("filter of %s: %w", sub.ID, err)
	}
	return prg.Match(filter.NewInput(ev, stored))
}
