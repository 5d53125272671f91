// Package dlog is the delivery log: one JSON record per delivery attempt in
// the DELIVERY_LOG stream, written by the dispatcher and read by admin.
package dlog

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
)

// Record is one delivery attempt. It never holds a secret.
type Record struct {
	Time         time.Time `json:"time"`
	Org          string    `json:"org_id"`
	Subscription string    `json:"subscription_id"`
	System       string    `json:"system,omitempty"`
	EventTypes   []string  `json:"event_types,omitempty"`
	Mode         string    `json:"mode"`
	URL          string    `json:"url,omitempty"`
	Status       int       `json:"status,omitempty"` // HTTP status, 0 when none came
	Error        string    `json:"error,omitempty"`
	LatencyMS    float64   `json:"latency_ms"`
	Unacked      int       `json:"unacked,omitempty"`
	// Payload and queue deliveries; a queue has no answer and no retry.
	EventID     string     `json:"event_id,omitempty"`
	Attempt     int        `json:"attempt,omitempty"`
	Response    string     `json:"response,omitempty"` // the first 4 KiB of the answer's body
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	Outcome     string     `json:"outcome,omitempty"` // delivered, retry, dead, disabled; queue: delivered, dropped
	// Sequence is the record's position in the stream; set when read.
	Sequence uint64 `json:"-"`
}

// Message is the stream message that logs an attempt.
func Message(r Record) (*nats.Msg, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode delivery record: %w", err)
	}
	return &nats.Msg{Subject: bus.DeliveryLogSubject(r.Org, r.Subscription), Data: b}, nil
}

// Decode reads a record from a stream message.
func Decode(m jetstream.Msg) (Record, error) {
	var r Record
	if err := json.Unmarshal(m.Data(), &r); err != nil {
		return r, fmt.Errorf("decode delivery record: %w", err)
	}
	if md, err := m.Metadata(); err == nil {
		r.Sequence = md.Sequence.Stream
	}
	return r, nil
}

// Outcomes are the ways an attempt ends, as Record.Outcome says.
var Outcomes = []string{"delivered", "retry", "dead", "disabled", "dropped", "test"}

// Ended answers how an attempt ended: its logged outcome, or for a ping,
// which logs none, delivered when answered 2xx and dropped otherwise (a
// failed ping is not repeated), as kurier_deliveries_total counts it.
func Ended(ping bool, outcome string, status int) string {
	switch {
	case outcome != "" || !ping:
		return outcome
	case status >= 200 && status < 300:
		return "delivered"
	}
	return "dropped"
}
