// Package filter compiles and evaluates subscription filters: CEL
// expressions (cel.dev/cel-go) over an event that decide whether it is
// delivered.
//
// An expression sees these variables:
//
//	id, type, subject, source  string: the event's CloudEvents attributes
//	time                       timestamp: the event's time attribute, or
//	                           when its producer gave none, when Kurier
//	                           stored it
//	data                       the event's data: JSON data as its value
//	                           (objects are maps, numbers doubles); text
//	                           data of another type (XML, CSV) as one
//	                           string; binary data or none as null
//
// It must be of type bool. Optional fields are reached with has() or
// optional syntax (data.?total.orValue(0.0) > 1000.0); a field the data
// lacks is otherwise an error at run time, and an error counts as no match.
package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"kurier.dev/services/internal/event"
)

// MaxLen bounds an expression, in bytes: a filter is a condition, not a
// program, and it is stored with the subscription.
const MaxLen = 2048

// costLimit bounds the work of one evaluation, in cel-go's cost units
// (about one per operation, comprehension step or few bytes compared). A
// typical filter costs under 20; data.lines.exists(l, l.sku == "X") over
// 1,000 lines about 7,000. At the limit an evaluation stops after a few
// milliseconds (TestHostileExpressionStops), so a filter cannot stall a
// dispatcher, whatever the data.
const costLimit = 20_000

// env declares the variables; one for the process, as cel.Env is safe for
// concurrent use.
var env = func() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable("id", cel.StringType),
		cel.Variable("type", cel.StringType),
		cel.Variable("subject", cel.StringType),
		cel.Variable("source", cel.StringType),
		cel.Variable("time", cel.TimestampType),
		cel.Variable("data", cel.DynType),
		cel.OptionalTypes(),
		// JSON numbers are doubles: data.total > 1000 should work as
		// data.total > 1000.0 does.
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		cel.ParserExpressionSizeLimit(MaxLen),
		cel.ParserRecursionLimit(64),
	)
	if err != nil {
		panic(fmt.Sprintf("filter environment: %v", err))
	}
	return e
}()

// Error is an expression refused: why, and where (1-based; 0 when the
// reason is not at one place).
type Error struct {
	Line, Column int
	Message      string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Message
	}
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Message)
}

// Program is a compiled filter, safe for concurrent use.
type Program struct {
	prg cel.Program
}

// Compile checks an expression and prepares it for evaluation. A refused
// expression is an *Error.
func Compile(expr string) (*Program, error) {
	if len(expr) > MaxLen {
		return nil, &Error{Message: fmt.Sprintf("is %d bytes, at most %d are allowed", len(expr), MaxLen)}
	}
	if strings.TrimSpace(expr) == "" {
		return nil, &Error{Message: "is empty"}
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		// The first issue is where the reader should look; the rest
		// often follow from it.
		first := iss.Errors()[0]
		loc := first.Location
		return nil, &Error{Line: loc.Line(), Column: loc.Column() + 1, Message: first.Message}
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		return nil, &Error{Line: 1, Column: 1, Message: fmt.Sprintf("must be true or false for an event, but is of type %s (compare it, as in data.flag == true)", cel.FormatCELType(t))}
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		// Planning checks what compiling did not, such as a regular
		// expression's syntax.
		return nil, &Error{Message: err.Error()}
	}
	return &Program{prg: prg}, nil
}

// Match evaluates the filter for an event. An error (a field the data
// lacks, a type mismatch, the cost limit) is answered with false.
func (p *Program) Match(in *Input) (bool, error) {
	out, _, err := p.prg.Eval(in)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("filter answered %s, not a bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// Input is an event as filters see it. The data is decoded once, when a
// filter first reads it, and kept for the next filter of the same event;
// an Input is therefore not safe for concurrent use.
type Input struct {
	id, typ, subject, source types.String
	time                     types.Timestamp
	raw                      json.RawMessage
	data                     any
	decoded                  bool
}

// NewInput makes the input of an event stored at stored.
func NewInput(e event.Event, stored time.Time) *Input {
	in := &Input{id: types.String(e.ID), typ: types.String(e.Type), subject: types.String(e.Subject),
		source: types.String(e.Source), raw: e.Data}
	t, err := time.Parse(time.RFC3339Nano, e.Time)
	if err != nil {
		t = stored
	}
	in.time = types.Timestamp{Time: t.UTC()}
	return in
}

// ParseInput reads a stored event (its JSON form) into an input. It reads
// only the attributes filters see, in one pass over the text: decoding the
// whole event cost several times what a typical filter does.
func ParseInput(stored []byte, at time.Time) (*Input, error) {
	var e event.Event
	var data []byte
	ok := members(stored, func(name []byte, escaped bool, value []byte) {
		var dst *string
		switch string(name) {
		case "id":
			dst = &e.ID
		case "type":
			dst = &e.Type
		case "subject":
			dst = &e.Subject
		case "source":
			dst = &e.Source
		case "time":
			dst = &e.Time
		case "data":
			data = value
		}
		if dst == nil || escaped {
			return // an attribute's name has no escapes in the stored form
		}
		if s, isString := jsonValue(value).(types.String); isString {
			*dst = string(s)
		} else {
			_ = json.Unmarshal(value, dst) // a string with escapes
		}
	})
	if !ok {
		if err := e.UnmarshalJSON(stored); err != nil {
			return nil, fmt.Errorf("decode event: %w", err)
		}
		data = e.Data
	}
	e.Data = data
	return NewInput(e, at), nil
}

// ResolveName implements interpreter.Activation.
func (in *Input) ResolveName(name string) (any, bool) {
	switch name {
	case "id":
		return in.id, true
	case "type":
		return in.typ, true
	case "subject":
		return in.subject, true
	case "source":
		return in.source, true
	case "time":
		return in.time, true
	case "data":
		if !in.decoded {
			in.decoded = true
			in.data = jsonValue(in.raw)
		}
		return in.data, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (in *Input) Parent() interpreter.Activation { return nil }

// IsCostLimit tells whether err stopped an evaluation at the cost limit.
func IsCostLimit(err error) bool {
	var ce interpreter.EvalCancelledError
	return errors.As(err, &ce) && ce.Cause == interpreter.CostLimitExceeded
}
