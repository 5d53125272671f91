package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/ingest"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
)

// benchIngest runs `kurier-bench ingest`: the raw JetStream publish rate
// and Kurier's ingest paths, measured in one run on one embedded server, so
// the ratio between them holds whatever the machine.
func benchIngest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kurier-bench ingest", flag.ContinueOnError)
	events := fs.Int("events", 100000, "events per measured path")
	conc := fs.Int("concurrency", 32, "concurrent senders")
	size := fs.Int("size", 256, "bytes of data per event")
	batch := fs.Int("batch", 100, "events per batch request")
	profile := cpuProfile(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	stop, err := profile()
	if err != nil {
		return err
	}
	defer stop()
	conn, _, done, err := benchBus(ctx, "")
	if err != nil {
		return err
	}
	defer done()
	log := benchLog()
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		return err
	}
	if err := tenants.CreateOrg(ctx, tenant.Org{ID: "bench", Created: time.Now()}); err != nil {
		return err
	}
	id, secret := tenant.NewSecret()
	if err := tenants.CreateKey(ctx, tenant.Key{ID: id, Org: "bench", Scopes: []tenant.Scope{tenant.ScopeIngest}, Hash: tenant.HashSecret(secret), Created: time.Now()}); err != nil {
		return err
	}
	svc, err := ingest.New(ctx, ingest.DefaultConfig(), conn, log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = web.Serve(sctx, lis, mux, time.Second, log) }()
	go func() { _ = svc.Run(sctx) }()

	// Every payload is built before any clock runs, so each path measures
	// the server's work and not the sender's JSON encoding.
	data, _ := json.Marshal(map[string]string{"fill": string(bytes.Repeat([]byte("x"), max(*size-11, 0)))})
	payloads := func(prefix string) [][]byte {
		out := make([][]byte, *events)
		for i := range out {
			e := event.Event{ID: prefix + strconv.Itoa(i), Source: "/bench", Type: "invoice.changed", Subject: "INV-" + strconv.Itoa(i%1000), Data: data}
			out[i], _ = e.MarshalJSON()
		}
		return out
	}
	batches := func(evs [][]byte) [][]byte {
		var out [][]byte
		for i := 0; i < len(evs); i += *batch {
			out = append(out, append(append([]byte("["), bytes.Join(evs[i:min(i+*batch, len(evs))], []byte(","))...), ']'))
		}
		return out
	}
	rawEvents, batchBodies := payloads("raw-"), batches(payloads("batch-"))
	singles, natsSingles := payloads("single-"), payloads("nats-")
	subject := bus.EventsSubject("bench", "invoice.changed")
	url := "http://" + lis.Addr().String() + "/v1/events"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc}, Timeout: 30 * time.Second}
	post := func(ctx context.Context, ct string, body []byte) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}

	fmt.Printf("kurier-bench ingest: %d events per path, %d senders, %d B data, %s/%s, %d CPUs, Go %s\n\n",
		*events, *conc, *size, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	fmt.Printf("%-24s %10s %12s %10s %10s %8s\n", "path", "events", "events/s", "p50", "p99", "vs raw")

	var raw float64
	report := func(name string, r result) {
		rate := float64(r.events) / r.elapsed.Seconds()
		if raw == 0 {
			raw = rate
		}
		fmt.Printf("%-24s %10d %12.0f %10s %10s %7.0f%%\n", name, r.events, rate, r.p(0.50), r.p(0.99), 100*rate/raw)
	}

	// The reference: the same messages published straight to the stream,
	// asynchronously, as fast as JetStream acknowledges them.
	r, err := run(ctx, *events / *batch, *conc, *batch, func(ctx context.Context, i int) error {
		futures := make([]jetstream.PubAckFuture, *batch)
		for j := range futures {
			m := nats.NewMsg(subject)
			m.Data = rawEvents[i**batch+j]
			m.Header.Set(jetstream.MsgIDHeader, bus.EventMsgID("bench", "/bench", "raw-"+strconv.Itoa(i**batch+j)))
			f, err := conn.JS.PublishMsgAsync(m, jetstream.WithStallWait(5*time.Second))
			if err != nil {
				return err
			}
			futures[j] = f
		}
		return acked(ctx, futures)
	})
	if err != nil {
		return fmt.Errorf("raw publish: %w", err)
	}
	report("raw jetstream async", r)

	r, err = run(ctx, len(batchBodies), *conc, *batch, func(ctx context.Context, i int) error {
		return post(ctx, event.MediaBatch, batchBodies[i])
	})
	if err != nil {
		return fmt.Errorf("http batch: %w", err)
	}
	report(fmt.Sprintf("http batch of %d", *batch), r)

	r, err = run(ctx, *events, *conc, 1, func(ctx context.Context, i int) error {
		return post(ctx, event.MediaStructured, singles[i])
	})
	if err != nil {
		return fmt.Errorf("http single: %w", err)
	}
	report("http single", r)

	r, err = run(ctx, *events, *conc, 1, func(ctx context.Context, i int) error {
		m := nats.NewMsg(bus.IngestSubject("bench"))
		m.Data = natsSingles[i]
		m.Header.Set(ingest.KeyHeader, secret)
		resp, err := conn.NC.RequestMsgWithContext(ctx, m)
		if err != nil {
			return err
		}
		if st := resp.Header.Get(ingest.StatusHeader); st != "202" {
			return fmt.Errorf("status %s: %s", st, resp.Data)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("nats single: %w", err)
	}
	report("nats single", r)
	return nil
}
