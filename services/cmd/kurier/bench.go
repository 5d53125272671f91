package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/ingest"
	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/natsd"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
)

// bench runs `kurier bench ingest`: the raw JetStream publish rate and
// Kurier's ingest paths, measured in one run on one embedded server, so the
// ratio between them holds whatever the machine.
func bench(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "ping" {
		return benchPing(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "deliver" {
		return benchDeliver(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "queue" {
		return benchQueue(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "sync" {
		return benchSync(ctx, args[1:])
	}
	if len(args) == 0 || args[0] != "ingest" {
		return errors.New("usage: kurier bench ingest|ping|deliver|sync|queue [flags]; -h lists a benchmark's flags")
	}
	fs := flag.NewFlagSet("kurier bench ingest", flag.ContinueOnError)
	events := fs.Int("events", 100000, "events per measured path")
	conc := fs.Int("concurrency", 32, "concurrent senders")
	size := fs.Int("size", 256, "bytes of data per event")
	batch := fs.Int("batch", 100, "events per batch request")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if stop, err := parse(fs, args[1:]); stop {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
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

	fmt.Printf("kurier bench ingest: %d events per path, %d senders, %d B data, %s/%s, %d CPUs, Go %s\n\n",
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
			m.Header.Set(jetstream.MsgIDHeader, bus.EventMsgID("bench", "raw-"+strconv.Itoa(i**batch+j)))
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

// result is one measured path: how many events in how long, and the
// latency of each request.
type result struct {
	events  int
	elapsed time.Duration
	lat     []time.Duration
}

func (r result) p(q float64) string {
	if len(r.lat) == 0 {
		return "-"
	}
	d := r.lat[min(int(q*float64(len(r.lat))), len(r.lat)-1)]
	return d.Round(10 * time.Microsecond).String()
}

// run calls op for requests 0..n-1 from conc goroutines; each request
// carries per events.
func run(ctx context.Context, n, conc, per int, op func(context.Context, int) error) (result, error) {
	var next atomic.Int64
	lats := make([][]time.Duration, conc)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				t := time.Now()
				if err := op(ctx, i); err != nil {
					errs[w] = err
					return
				}
				lats[w] = append(lats[w], time.Since(t))
			}
		})
	}
	wg.Wait()
	r := result{events: n * per, elapsed: time.Since(start), lat: slices.Concat(lats...)}
	slices.Sort(r.lat)
	return r, errors.Join(errs...)
}

// benchLog discards: a benchmark prints its figures, not the services' logs.
func benchLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// benchBus runs an embedded server in a temporary folder with every stream
// and bucket in place, connected in-process; listen, when set, also opens
// a client port for other processes. done stops it and removes the folder.
func benchBus(ctx context.Context, listen string) (conn *bus.Conn, srv *server.Server, done func(), err error) {
	dir, err := os.MkdirTemp("", "kurier-bench-")
	if err != nil {
		return nil, nil, nil, err
	}
	srv, err = natsd.Start(natsd.Options{DataDir: dir, Listen: listen})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	done = func() {
		if conn != nil {
			conn.NC.Close()
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		os.RemoveAll(dir)
	}
	if conn, err = bus.Connect("", "kurier-bench", benchLog(), nats.InProcessServer(srv)); err == nil {
		err = bus.Ensure(ctx, conn.JS, bus.DefaultLimits())
	}
	if err != nil {
		done()
		return nil, nil, nil, err
	}
	return conn, srv, done, nil
}

// acked waits for every publication's acknowledgement.
func acked(ctx context.Context, futures []jetstream.PubAckFuture) error {
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
