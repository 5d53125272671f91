package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/queues"
	"kurier.dev/services/internal/tenant"
	"kurier.dev/services/internal/web"
	"kurier.dev/services/queue"
)

// benchQueue runs `kurier-bench queue`: the queue API over HTTP with two
// queue service replicas on one embedded server, each on its own
// connection, against raw JetStream publishing into the same stream.
func benchQueue(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kurier-bench queue", flag.ContinueOnError)
	messages := fs.Int("messages", 20000, "messages per measured run")
	conc := fs.Int("concurrency", 32, "concurrent senders, and receivers at most")
	size := fs.Int("size", 256, "characters per message")
	batch := fs.Int("batch", 10, "messages a receiver peeks at once before deleting them")
	rounds := fs.Int("rounds", 500, "wake-ups measured per queue count")
	counts := fs.String("queues", "1,1000", "queue counts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	queueCounts, err := splitInts(*counts)
	if err != nil {
		return fmt.Errorf("-queues: %w", err)
	}
	conn, srv, done, err := benchBus(ctx, "")
	if err != nil {
		return err
	}
	defer done()
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		return err
	}
	keyID, key := tenant.NewSecret()
	if err := tenants.CreateKey(ctx, tenant.Key{ID: keyID, Org: "bench", Scopes: []tenant.Scope{tenant.ScopePartner}, Hash: tenant.HashSecret(key), Created: time.Now()}); err != nil {
		return err
	}

	// Two replicas, each with its own connection, listener and registry.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var replicas [2]string
	var waitingOf [2]prometheus.Gatherer
	for i := range replicas {
		rc, err := jet.Connect("", "kurier-bench-queue", benchLog(), nats.InProcessServer(srv))
		if err != nil {
			return err
		}
		defer rc.NC.Close()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		cfg := queue.DefaultConfig()
		cfg.PublicURL = "http://" + lis.Addr().String()
		cfg.MaxPerOrg = slices.Max(queueCounts)
		reg := prometheus.NewRegistry()
		svc, err := queue.New(ctx, cfg, rc, benchLog(), reg)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		svc.Routes(mux)
		go func() { _ = web.Serve(sctx, lis, mux, time.Second, benchLog()) }()
		go func() { _ = svc.Run(sctx) }()
		replicas[i], waitingOf[i] = cfg.PublicURL, reg
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2000}, Timeout: time.Minute}
	call := func(ctx context.Context, method, url string, hdr map[string]string, body []byte, want int) ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != want {
			err = fmt.Errorf("%s %s: status %d: %s", method, url, resp.StatusCode, b)
		}
		return b, err
	}
	partner := map[string]string{queue.PartnerKeyHeader: key}

	// Every message is made before any clock runs.
	content := func(i int) []byte {
		fill := strings.Repeat("x", max(*size-len(`{"i":,"fill":""}`)-len(strconv.Itoa(i)), 0))
		return []byte(`{"i":` + strconv.Itoa(i) + `,"fill":"` + fill + `"}`)
	}
	bodies := make([][]byte, *messages)
	for i := range bodies {
		bodies[i] = content(i)
	}

	fmt.Printf("kurier-bench queue: %d messages of %d characters per run, %d senders, peeks of %d, two queue replicas on one embedded server, %d CPUs, Go %s\n\n",
		*messages, *size, *conc, *batch, runtime.NumCPU(), runtime.Version())

	perSecond := func(n int, d time.Duration) string { return fmt.Sprintf("%.0f msgs/s", float64(n)/d.Seconds()) }

	// The reference: the same messages published straight into QUEUES.
	rawQueue := queues.NewID()
	r, err := run(ctx, *messages / *batch, *conc, *batch, func(ctx context.Context, i int) error {
		futures := make([]jetstream.PubAckFuture, *batch)
		for j := range futures {
			f, err := conn.JS.PublishAsync(bus.QueueSubject(rawQueue), bodies[i**batch+j], jetstream.WithStallWait(5*time.Second))
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
	fmt.Printf("%-44s %18s\n\n", "raw jetstream async publish (reference)", perSecond(r.events, r.elapsed))
	fmt.Printf("%-44s %18s %10s %10s\n", "run", "rate", "p50", "p99")
	line := func(label, rate string, r result) {
		fmt.Printf("%-44s %18s %10s %10s\n", label, rate, r.p(0.50), r.p(0.99))
	}

	for _, n := range queueCounts {
		created := make([]struct{ id, secret string }, n)
		if _, err := run(ctx, n, *conc, 1, func(ctx context.Context, i int) error {
			b, err := call(ctx, http.MethodPost, replicas[i%2]+"/api/queues", partner, nil, http.StatusOK)
			if err != nil {
				return err
			}
			var q struct{ QueueID, NotificationSecret string }
			err = json.Unmarshal(b, &q)
			created[i].id, created[i].secret = q.QueueID, q.NotificationSecret
			return err
		}); err != nil {
			return fmt.Errorf("create queues: %w", err)
		}

		// Posts, spread over the queues and both replicas.
		r, err := run(ctx, *messages, *conc, 1, func(ctx context.Context, i int) error {
			q := created[i%n]
			_, err := call(ctx, http.MethodPost, replicas[i%2]+"/api/queues/"+q.id+"/messages",
				map[string]string{queue.SecretHeader: q.secret}, bodies[i], http.StatusOK)
			return err
		})
		if err != nil {
			return fmt.Errorf("post: %w", err)
		}
		line(fmt.Sprintf("post, %d queue(s)", n), perSecond(r.events, r.elapsed), r)

		// Receivers: each works through its share of the queues, peeking
		// a batch and deleting each message of it, until they are empty.
		// Latencies are per peek and per delete.
		workers := min(*conc, n)
		var mu sync.Mutex
		var lat []time.Duration
		var handled int
		r, err = run(ctx, workers, workers, 0, func(ctx context.Context, w int) error {
			for i := w; i < n; i += workers {
				base := replicas[i%2] + "/api/queues/" + created[i].id + "/messages"
				for {
					t := time.Now()
					b, err := call(ctx, http.MethodGet, base+"?count="+strconv.Itoa(*batch), partner, nil, http.StatusOK)
					if err != nil {
						return err
					}
					var msgs []struct{ MessageID string }
					if err := json.Unmarshal(b, &msgs); err != nil {
						return err
					}
					took := []time.Duration{time.Since(t)}
					if len(msgs) == 0 {
						break
					}
					for _, m := range msgs {
						t := time.Now()
						if _, err := call(ctx, http.MethodDelete, replicas[(i+1)%2]+"/api/queues/"+created[i].id+"/messages/"+m.MessageID, partner, nil, http.StatusOK); err != nil {
							return err
						}
						took = append(took, time.Since(t))
					}
					mu.Lock()
					lat = append(lat, took...)
					handled += len(msgs)
					mu.Unlock()
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("peek and delete: %w", err)
		}
		if handled != *messages {
			return fmt.Errorf("peek and delete: %d of %d messages handled", handled, *messages)
		}
		slices.Sort(lat)
		r.lat = lat
		line(fmt.Sprintf("peek %d + delete each, %d queue(s)", *batch, n), perSecond(handled, r.elapsed), r)

		wake, err := wakeUps(ctx, call, replicas, waitingOf[0], partner, created, *rounds)
		if err != nil {
			return fmt.Errorf("wake-ups: %w", err)
		}
		// One post at a time: a latency, not a rate.
		line(fmt.Sprintf("wake-up, %d queue(s) waiting", n), "-", wake)

		for i, q := range created {
			if _, err := call(ctx, http.MethodDelete, replicas[i%2]+"/api/queues/"+q.id, partner, nil, http.StatusOK); err != nil {
				return err
			}
		}
	}
	return nil
}

// wakeUps keeps a peek waiting on replica a on every queue, posts to
// replica b one message at a time, to queue after queue, and measures from
// just before each post to the waiting peek's answer.
func wakeUps(ctx context.Context, call func(context.Context, string, string, map[string]string, []byte, int) ([]byte, error),
	replicas [2]string, waitingOnA prometheus.Gatherer, partner map[string]string, created []struct{ id, secret string }, rounds int) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := len(created)
	answered := make([]chan time.Time, n)
	errs := make(chan error, n)
	for i := range created {
		answered[i] = make(chan time.Time, 1)
		go func() {
			url := replicas[0] + "/api/queues/" + created[i].id + "/messages?timeout=60"
			for ctx.Err() == nil {
				b, err := call(ctx, http.MethodGet, url, partner, nil, http.StatusOK)
				if err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				at := time.Now()
				var msgs []struct{ MessageID string }
				if err := json.Unmarshal(b, &msgs); err != nil || len(msgs) != 1 {
					errs <- fmt.Errorf("woken peek answered %s", b)
					return
				}
				if _, err := call(ctx, http.MethodDelete, replicas[0]+"/api/queues/"+created[i].id+"/messages/"+msgs[0].MessageID, partner, nil, http.StatusOK); err != nil {
					errs <- err
					return
				}
				answered[i] <- at
			}
		}()
	}
	// Measure only once every peek waits; a queue's peek waits again
	// before the next post to it.
	armed := func() error {
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			if v, err := gauge(waitingOnA, "kurier_queue_waiting"); err != nil || int(v) == n {
				return err
			}
			if time.Now().After(deadline) {
				return errors.New("peeks not waiting after a minute")
			}
		}
	}
	if err := armed(); err != nil {
		return result{}, err
	}
	var res result
	for r := range rounds {
		i := r % n
		if n == 1 && r > 0 {
			if err := armed(); err != nil {
				return res, err
			}
		}
		sent := time.Now()
		if _, err := call(ctx, http.MethodPost, replicas[1]+"/api/queues/"+created[i].id+"/messages",
			map[string]string{queue.SecretHeader: created[i].secret}, []byte(`{"round":`+strconv.Itoa(r)+`}`), http.StatusOK); err != nil {
			return res, err
		}
		select {
		case at := <-answered[i]:
			res.lat = append(res.lat, at.Sub(sent))
		case err := <-errs:
			return res, err
		case <-time.After(30 * time.Second):
			return res, fmt.Errorf("round %d: no answer within 30s", r)
		}
	}
	slices.Sort(res.lat)
	return res, nil
}
