package queues

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"kurier.dev/services/internal/event"
)

// MaxContent is the most characters a message may have: ComNorm limits a
// message to 16384 characters, and characters are runes, not bytes.
const MaxContent = 16384

// MaxContentBytes is the most bytes MaxContent characters of UTF-8 take.
const MaxContentBytes = MaxContent * utf8.UTFMax

// ContentError says why a message is refused.
type ContentError struct {
	TooLong bool // over MaxContent characters; otherwise not a JSON object
	Message string
}

func (e *ContentError) Error() string { return e.Message }

// CheckContent checks a message: a JSON object, in UTF-8, of at most
// MaxContent characters, counted as posted (white space included), nested
// no deeper than event.MaxDepth.
func CheckContent(b []byte) error {
	if n := utf8.RuneCount(b); n > MaxContent {
		return &ContentError{TooLong: true, Message: "the message has more than 16384 characters"}
	}
	if !utf8.Valid(b) || !json.Valid(b) {
		return &ContentError{Message: "the message is not valid JSON in UTF-8"}
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); t[0] != '{' {
		return &ContentError{Message: "the message must be a JSON object, not an array, string, number, boolean or null"}
	}
	if d := event.Depth(b); d > event.MaxDepth {
		return &ContentError{Message: fmt.Sprintf("the message nests %d levels of arrays and objects, at most %d are allowed", d, event.MaxDepth)}
	}
	return nil
}

// eventMessage is what queue delivery puts into a queue for an event.
type eventMessage struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Subject string `json:"subject"`
	Time    string `json:"time"`
	event.DataMembers
}

// EventContent is the message for an event: {"type","id","subject","time",
// "data"}, time being the event's own or, when it has none, when it was
// stored, and data that is not JSON carried as event.DataMembers says. An
// event whose message would have more than MaxContent characters goes
// without data, a thin message: the receiver learns what changed and
// reads the document itself.
func EventContent(e event.Event, stored time.Time) ([]byte, error) {
	m := eventMessage{Type: e.Type, ID: e.ID, Subject: e.Subject, Time: e.Time, DataMembers: e.Members()}
	if m.Time == "" {
		m.Time = stored.UTC().Format(time.RFC3339Nano)
	}
	b, err := Marshal(m)
	if err != nil || utf8.RuneCount(b) <= MaxContent {
		return b, err
	}
	m.DataMembers = event.DataMembers{}
	return Marshal(m)
}

// Marshal is json.Marshal without escaping <, > and &, so that messages
// reach receivers with the characters they were sent with.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
