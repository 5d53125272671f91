package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/telemetry"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
)

// Over NATS, a request on kurier.ingest.<org> carries the key in KeyHeader
// and one structured event or a batch (a JSON array) as its body. The
// answer is the HTTP answer's JSON, with its status code in StatusHeader.
const (
	KeyHeader    = "Kurier-Key"
	StatusHeader = "Kurier-Status"
	queueGroup   = "kurier-ingest"
)

// Run serves NATS ingest requests until ctx ends, then finishes the
// requests it has taken before returning.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	slots := make(chan struct{}, s.cfg.Workers)
	sub, err := s.conn.NC.QueueSubscribe(bus.IngestWildcard, queueGroup, func(m *nats.Msg) {
		// Waiting for a slot here holds back the subscription, so a burst
		// queues in the client's bounded pending buffer, not in goroutines.
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			s.serveMsg(ctx, m)
		})
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", bus.IngestWildcard, err)
	}
	<-ctx.Done()
	// Drain delivers what is already buffered and stops taking more.
	if err := sub.Drain(); err != nil {
		s.log.Warn("drain ingest subscription", "err", err)
	}
	for deadline := time.Now().Add(30 * time.Second); sub.IsValid() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	return nil
}

func (s *Service) serveMsg(ctx context.Context, m *nats.Msg) {
	start := time.Now()
	// Requests taken before shutdown are finished even as ctx ends.
	ctx = context.WithoutCancel(ctx)
	// An id as HTTP requests have, for the logs and the reply.
	id := telemetry.RequestIDOf(m.Header.Get(telemetry.RequestIDHeader))
	ctx = telemetry.WithRequestID(ctx, id)
	ctx, span, traced := startSpan(telemetry.FromNATS(ctx, m.Header), "kurier.ingest process", "nats")
	defer span.End()
	status, retryAfter := http.StatusAccepted, 0
	var body []byte
	res, err := s.ingestMsg(ctx, m, traced)
	if err == nil {
		body, _ = json.Marshal(res)
	} else {
		var we *web.Error
		if !errors.As(err, &we) {
			we = &web.Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
		}
		if we.Status >= 500 {
			s.log.WarnContext(ctx, "nats ingest failed", "subject", m.Subject, "err", err)
		}
		withID := *we
		withID.RequestID = id
		status, retryAfter, body = we.Status, we.RetryAfter, withID.Body()
	}
	endSpan(span, status, err)
	s.m.requests.WithLabelValues("nats", strconv.Itoa(status)).Inc()
	s.m.latency.WithLabelValues("nats").Observe(time.Since(start).Seconds())
	if m.Reply == "" {
		return
	}
	reply := nats.NewMsg(m.Reply)
	reply.Header.Set(StatusHeader, strconv.Itoa(status))
	reply.Header.Set(telemetry.RequestIDHeader, id)
	if retryAfter > 0 {
		reply.Header.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	reply.Data = body
	if err := m.RespondMsg(reply); err != nil {
		s.log.WarnContext(ctx, "nats ingest reply", "err", err)
	}
}

func (s *Service) ingestMsg(ctx context.Context, m *nats.Msg, traced bool) (Result, error) {
	org := bus.IngestOrg(m.Subject)
	// The subject names the org; a key of another one is answered as an
	// unknown key, before its rate is counted.
	key, err := s.tenants.AuthenticateOrg(ctx, org, m.Header.Get(KeyHeader), tenant.ScopeIngest)
	if err := s.admit(key, err, KeyHeader); err != nil {
		return Result{}, err
	}
	lim := event.Limits{MaxData: s.cfg.MaxData}
	var events []event.Event
	batch := false
	if b := bytes.TrimLeft(m.Data, " \t\r\n"); len(b) > 0 && b[0] == '[' {
		batch = true
		if len(m.Data) > s.cfg.MaxBatchBytes {
			return Result{}, tooLarge("body", s.cfg.MaxBatchBytes)
		}
		events, err = event.DecodeBatch(m.Data, s.cfg.MaxBatchEvents, lim)
	} else {
		if len(m.Data) > s.cfg.MaxStructured() {
			return Result{}, tooLarge("body", s.cfg.MaxStructured())
		}
		var e event.Event
		e, err = event.Decode(m.Data, lim)
		events = []event.Event{e}
	}
	if err != nil {
		return Result{}, invalid(err)
	}
	if err := s.conform(org, events, batch); err != nil {
		return Result{}, err
	}
	res, err := s.store(ctx, org, events, traced)
	return res, storeErr(err, batch)
}
