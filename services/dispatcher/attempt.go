package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"kurier.dev/services/internal/dlog"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/stats"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/telemetry"
	"kurier.dev/services/internal/webhook"
)

// responseKeep is how much of an answer's body the log keeps.
const responseKeep = 4 << 10

// call is one request to a receiver: a ping, a payload or a digest.
type call struct {
	sub     subs.Subscription
	mode    subs.Mode
	method  string
	url     string
	body    []byte // nil for a GET
	msgID   string // webhook-id: the same on every attempt
	timeout time.Duration
	// since is when the oldest change the call tells of was stored, where
	// the delivery's lag starts.
	since time.Time
	// rec is the log record so far (event, attempt); send fills in the
	// rest.
	rec dlog.Record
	// err: the request could not be made (its URL or body); send records
	// that instead.
	err error
	// test: a test event's request, whose answer is kept even for a GET
	// and which the figures of real deliveries do not count.
	test bool
}

// outcome is what one attempt came to.
type outcome struct {
	status    int
	err       error
	retryWait time.Duration // the receiver's Retry-After
	body      []byte
}

func (o outcome) ok() bool { return o.err == nil && o.status >= 200 && o.status < 300 }

// sender is the one place that makes an attempt: it signs, sends,
// classifies the answer, times it, and logs and counts what the caller
// made of it.
type sender struct {
	client    *http.Client // no overall timeout: each call sets its own
	userAgent string
	log       *slog.Logger
	m         *metrics
	journal   *journal
	stats     *tally
}

// send makes the request and describes it in the log record, whose
// outcome the caller decides.
func (s *sender) send(ctx context.Context, c call) (outcome, dlog.Record) {
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "webhook "+string(c.mode), trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	start := time.Now()
	rec := c.rec
	rec.Time, rec.Org, rec.Subscription, rec.System, rec.Mode = start.UTC(), c.sub.Org, c.sub.ID, c.sub.System, string(c.mode)
	if rec.URL == "" {
		rec.URL = c.url
	}
	o := outcome{err: c.err}
	if c.err == nil {
		o = s.do(ctx, c, start)
	}
	took := time.Since(start)
	if !c.test {
		s.stats.add(c.sub, start, took, stats.ClassOf(o.status, o.err != nil && timedOut(o.err)))
		s.m.duration.WithLabelValues(string(c.mode)).Observe(took.Seconds())
		if o.ok() && !c.since.IsZero() {
			s.m.lag.WithLabelValues(string(c.mode)).Observe(time.Since(c.since).Seconds())
		}
	}
	rec.LatencyMS = float64(took.Microseconds()) / 1000
	rec.Status, rec.Response = o.status, string(o.body)
	if o.err != nil {
		rec.Error = describe(o.err)
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.String("kurier.subscription.id", c.sub.ID), attribute.String("kurier.delivery.mode", string(c.mode)),
			attribute.Int("kurier.delivery.attempt", rec.Attempt), attribute.String("http.request.method", c.method))
		if o.status != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", o.status))
		}
		if !o.ok() {
			span.SetStatus(codes.Error, failure(o, rec))
		}
	}
	if !o.ok() {
		s.log.DebugContext(ctx, "attempt failed", "subscription", c.sub.ID, "mode", string(c.mode), "attempt", rec.Attempt, "status", o.status, "err", rec.Error)
	}
	return o, rec
}

// failure says why an attempt failed, for its span.
func failure(o outcome, rec dlog.Record) string {
	if rec.Error != "" {
		return rec.Error
	}
	return "status " + strconv.Itoa(o.status)
}

func (s *sender) do(ctx context.Context, c call, now time.Time) outcome {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, body)
	if err != nil {
		return outcome{err: err}
	}
	for _, h := range c.sub.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", s.userAgent)
	// The attempt's span, so the receiver's spans join the trace.
	telemetry.ToHTTP(ctx, req.Header)
	if err := webhook.Sign(req.Header, c.msgID, now, c.body, c.sub.Secrets(now)...); err != nil {
		return outcome{err: err}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	kept, _ := io.ReadAll(io.LimitReader(resp.Body, responseKeep))
	// Read a little more of the answer so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	o := outcome{status: resp.StatusCode, body: kept}
	if c.body == nil && !c.test {
		o.body = nil // a ping's answer is not kept
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 {
			o.retryWait = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			o.retryWait = time.Until(t)
		}
	}
	return o
}

// record counts a delivery by its outcome and logs it, beside the next
// deliveries rather than before them.
func (s *sender) record(rec dlog.Record, outcome string) {
	s.m.deliveries.WithLabelValues(rec.Mode, outcome).Inc()
	s.journal.add(rec)
}

// journal writes the delivery log in the background: one goroutine takes
// the records as they come and stores each batch with one wait.
type journal struct {
	js   jetstream.JetStream
	log  *slog.Logger
	in   chan dlog.Record
	done chan struct{}
	// stop is closed by close; from then on a batch the log cannot take
	// is tried until giveUp, no longer.
	stop   chan struct{}
	giveUp time.Time
}

// journalGrace bounds how long a stopping dispatcher keeps trying to log
// what it holds while the log cannot take it.
const journalGrace = 10 * time.Second

func newJournal(js jetstream.JetStream, log *slog.Logger) *journal {
	return &journal{js: js, log: log, in: make(chan dlog.Record, 4096), done: make(chan struct{}), stop: make(chan struct{})}
}

// add queues a record; a full queue holds the delivery back.
func (j *journal) add(rec dlog.Record) { j.in <- rec }

// close writes what is queued and stops; nothing may be added after it.
func (j *journal) close() {
	close(j.stop)
	close(j.in)
	<-j.done
}

// run writes until close.
func (j *journal) run() {
	defer close(j.done)
	for rec := range j.in {
		batch := []dlog.Record{rec}
	more:
		for len(batch) < 256 {
			select {
			case r, ok := <-j.in:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		msgs := make([]*nats.Msg, 0, len(batch))
		for _, r := range batch {
			m, err := dlog.Message(r)
			if err != nil {
				j.log.Warn("delivery not logged", "subscription", r.Subscription, "err", err)
				continue
			}
			msgs = append(msgs, m)
		}
		j.write(msgs)
	}
}

// write stores a batch, trying again for as long as the log cannot take
// it (NATS away for a moment, a stream without a leader): dropped, those
// attempts would be missing from the log for good. Records queue up
// behind it meanwhile, and a full queue holds the deliveries back, so
// memory stays bounded. Only what was not stored is sent again.
func (j *journal) write(msgs []*nats.Msg) {
	for wait := 100 * time.Millisecond; len(msgs) > 0; wait = min(2*wait, 5*time.Second) {
		limit := jet.PublishTimeout
		select {
		case <-j.stop:
			if j.giveUp.IsZero() {
				j.giveUp = time.Now().Add(journalGrace)
			}
			if limit = time.Until(j.giveUp); limit <= 0 {
				j.log.Warn("deliveries not logged", "records", len(msgs))
				return
			}
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		failed, err := jet.PublishEach(ctx, j.js, msgs)
		cancel()
		if err == nil {
			return
		}
		msgs = failed
		j.log.Warn("deliveries not logged yet, trying again", "records", len(msgs), "err", err)
		if !j.giveUp.IsZero() {
			time.Sleep(min(wait, max(time.Until(j.giveUp), 0)))
			continue
		}
		pause := time.NewTimer(wait)
		select {
		case <-pause.C:
		case <-j.stop: // the next round sets when to give up
			pause.Stop()
		}
	}
}

// describe says why a request failed without quoting the URL, which the
// record holds already.
func describe(err error) string {
	if errors.Is(err, webhook.ErrForbiddenTarget) {
		return "target address is not allowed (loopback, private or link-local; KURIER_ALLOW_PRIVATE_TARGETS=true allows it)"
	}
	if timedOut(err) {
		return "timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// timedOut tells a request that got no answer in time from one that got
// no connection.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
