package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/dispatcher"
	"kurier.dev/services/internal/bus"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/web"
)

// benchDeliver runs `kurier bench deliver`: payload deliveries from events
// stored in EVENTS to POSTs received on loopback, with the dispatcher in
// this process; the raw publish rate of the same events is the reference.
func benchDeliver(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kurier bench deliver", flag.ContinueOnError)
	total := fs.Int("deliveries", 20000, "deliveries per throughput run")
	fanouts := fs.String("subs", "1,100,10000", "subscription counts of the throughput runs")
	rates := fs.String("rates", "100,1000,5000", "event rates of the latency runs, per second")
	span := fs.Duration("span", 5*time.Second, "length of each latency run")
	if stop, err := parse(fs, args); stop {
		return err
	}
	fanoutList, err := splitInts(*fanouts)
	if err != nil {
		return fmt.Errorf("-subs: %w", err)
	}
	rateList, err := splitInts(*rates)
	if err != nil {
		return fmt.Errorf("-rates: %w", err)
	}
	conn, _, done, err := benchBus(ctx, "")
	if err != nil {
		return err
	}
	defer done()
	store, err := subs.Open(ctx, conn.JS)
	if err != nil {
		return err
	}

	// The receiver: notes, per request, how long since its event was stored.
	var mu sync.Mutex
	var lat []time.Duration
	var got atomic.Int64
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hang, err := net.Listen("tcp", "127.0.0.1:0") // the dead receiver: takes connections, never answers
	if err != nil {
		return err
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	rctx, stopRcv := context.WithCancel(ctx)
	defer stopRcv()
	go func() {
		_ = web.Serve(rctx, lis, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var ev struct {
				Data struct{ T int64 } `json:"data"`
			}
			_ = json.NewDecoder(r.Body).Decode(&ev)
			d := time.Since(time.Unix(0, ev.Data.T))
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
			got.Add(1)
		}), time.Second, benchLog())
	}()
	reset := func() {
		mu.Lock()
		lat = lat[:0]
		mu.Unlock()
		got.Store(0)
	}

	cfg := dispatcher.DefaultConfig()
	cfg.AllowPrivate = true
	reg := prometheus.NewRegistry()
	svc, err := dispatcher.New(ctx, cfg, conn, benchLog(), reg)
	if err != nil {
		return err
	}
	dctx, stopDisp := context.WithCancel(ctx)
	dispDone := make(chan struct{})
	go func() { _ = svc.Run(dctx); close(dispDone) }()
	defer func() { stopDisp(); <-dispDone }()

	var runs int
	org := func() string { runs++; return "b" + strconv.Itoa(runs) }
	mkSubs := func(org, typ string, n int, url string) error {
		for i := range n {
			sub := subs.Subscription{ID: subs.NewID(), Org: org, System: "s" + strconv.Itoa(i), EventTypes: []string{typ},
				Mode: subs.ModePayload, URL: url, Active: true, Secret: subs.NewSecret(), Created: time.Now(),
				Timeout: 15 * time.Second, MaxInFlight: 10, Format: "standard"}
			if err := store.Create(ctx, sub); err != nil {
				return err
			}
		}
		return nil
	}
	publish := func(org, typ string, i int) error {
		data := []byte(`{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}`)
		e := event.Event{ID: org + "-" + strconv.Itoa(i), Source: "/bench", Type: typ, Subject: "D" + strconv.Itoa(i%100), Data: data}
		b, _ := e.MarshalJSON()
		_, err := conn.JS.PublishAsync(bus.EventsSubject(org, typ), b, jetstream.WithStallWait(10*time.Second))
		return err
	}
	waitFor := func(n int64, limit time.Duration) (time.Duration, error) {
		start := time.Now()
		for got.Load() < n {
			if time.Since(start) > limit {
				return 0, fmt.Errorf("%d of %d deliveries within %v", got.Load(), n, limit)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start), nil
	}
	percentiles := func() (time.Duration, time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		l := slices.Clone(lat)
		slices.Sort(l)
		if len(l) == 0 {
			return 0, 0
		}
		return l[len(l)/2], l[min(len(l)*99/100, len(l)-1)]
	}
	fmt.Printf("kurier bench deliver: payload deliveries to a receiver on loopback, %d CPUs, Go %s\n\n", runtime.NumCPU(), runtime.Version())

	// The reference: the same events published raw into EVENTS.
	refOrg := org()
	start := time.Now()
	for i := range *total {
		if err := publish(refOrg, "ref.raw", i); err != nil {
			return err
		}
	}
	<-conn.JS.PublishAsyncComplete()
	fmt.Printf("%-46s %10.0f events/s\n", "raw jetstream async publish (reference)", float64(*total)/time.Since(start).Seconds())

	for _, f := range fanoutList {
		o, typ := org(), "bench.fanout"
		setup := time.Now()
		if err := mkSubs(o, typ, f, "http://"+lis.Addr().String()+"/"); err != nil {
			return err
		}
		// Measure deliveries, not setting up: wait until the dispatcher
		// knows every subscription.
		if err := waitKnown(reg, f, 10*time.Minute); err != nil {
			return err
		}
		reset()
		events := max(*total/f, 1)
		start := time.Now()
		for i := range events {
			if err := publish(o, typ, i); err != nil {
				return err
			}
		}
		label := fmt.Sprintf("sustained, %d subscription(s)", f)
		_, err := waitFor(int64(events*f), 5*time.Minute)
		p50, p99 := percentiles()
		if err != nil {
			// A figure all the same: how far it got.
			fmt.Printf("%-46s %v\n", label, err)
		} else {
			fmt.Printf("%-46s %10.0f deliveries/s  p50 %v  p99 %v  (%d events, setup %v)\n", label,
				float64(events*f)/time.Since(start).Seconds(), p50.Round(time.Millisecond), p99.Round(time.Millisecond), events, time.Since(setup).Round(time.Second))
		}
		// Clear them away, so they do not weigh on the next runs.
		list, _ := store.List(ctx, o)
		for _, s := range list {
			_, _ = store.Delete(ctx, s.ID)
		}
	}

	paced := func(o, typ string, rate int) error {
		reset()
		n := int(float64(rate) * span.Seconds())
		tick := time.Second / time.Duration(rate)
		start := time.Now()
		for i := range n {
			if d := time.Until(start.Add(time.Duration(i) * tick)); d > 0 {
				time.Sleep(d)
			}
			if err := publish(o, typ, i); err != nil {
				return err
			}
		}
		_, err := waitFor(int64(n), time.Minute)
		return err
	}
	live := org()
	if err := mkSubs(live, "bench.paced", 10, "http://"+lis.Addr().String()+"/"); err != nil {
		return err
	}
	time.Sleep(time.Second)
	report := func(label string) {
		p50, p99 := percentiles()
		fmt.Printf("%-46s p50 %v  p99 %v\n", label, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond))
	}
	for _, rate := range rateList {
		// Let the last run's log records be written; ten subscriptions make
		// rate/10 events a second rate deliveries.
		time.Sleep(2 * time.Second)
		if err := paced(live, "bench.paced", rate/10); err != nil {
			return err
		}
		report(fmt.Sprintf("latency at %d deliveries/s (10 subscriptions)", rate))
	}
	// The lowest rate again with a dead receiver among the live ones: their
	// latency must stay as it was.
	dead := org()
	if err := mkSubs(dead, "bench.paced", 1, "http://"+hang.Addr().String()+"/"); err != nil {
		return err
	}
	if err := mkSubs(dead, "bench.paced", 10, "http://"+lis.Addr().String()+"/"); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	if err := paced(dead, "bench.paced", rateList[0]/10); err != nil {
		return err
	}
	report(fmt.Sprintf("latency at %d deliveries/s, plus a dead receiver", rateList[0]))
	return nil
}

// waitKnown waits until the dispatcher knows at least n subscriptions.
func waitKnown(reg prometheus.Gatherer, n int, limit time.Duration) error {
	for start := time.Now(); time.Since(start) < limit; time.Sleep(100 * time.Millisecond) {
		known, err := gauge(reg, "kurier_dispatch_subscriptions")
		if err != nil {
			return err
		}
		if int(known) >= n {
			return nil
		}
	}
	return fmt.Errorf("the dispatcher knows fewer than %d subscriptions after %v", n, limit)
}

// splitInts reads a comma-separated list of positive counts.
func splitInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a list of positive numbers", s)
		}
		out = append(out, n)
	}
	return out, nil
}
