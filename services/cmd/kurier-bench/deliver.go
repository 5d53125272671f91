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
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/dispatcher"
	"kurier.dev/services/internal/event"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/payload"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/web"
	"kurier.dev/services/internal/webhook"
)

// deliveriesMetric counts a dispatcher's deliveries, by mode and outcome.
const deliveriesMetric = "kurier_deliveries_total"

// benchMaxInFlight is each bench subscription's in-flight limit: with
// the payload requests one replica makes at once (dispatcher.Config's
// Deliveries), the dispatcher's limit on the HTTP path.
const benchMaxInFlight = 10

// benchDeliver runs `kurier-bench deliver`: payload deliveries from events
// stored in EVENTS to POSTs received on loopback, with the dispatcher
// replicas in this process. The references are the raw publish rate of the
// same events and, for each throughput run, the same signed POSTs sent
// straight to the receiver by a plain net/http client at the concurrency
// the dispatcher is allowed in that run.
//
// With -retries, the latency runs are made twice: without, then with that
// many failed deliveries of another subscription waiting for their retry
// (an hour away) as scheduled messages in DELIVERIES; each rate's p99 is
// reported beside the one without. Target: with 100,000 retries scheduled,
// the healthy subscriptions' p99 moves by less than 10%. -retries-succeed
// is the control: the same events delivered at the first attempt, so that
// what the retries cost is told apart from what the events did.
//
// directMax bounds the direct-POST reference's requests at once.
const directMax = 4096

func benchDeliver(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kurier-bench deliver", flag.ContinueOnError)
	total := fs.Int("deliveries", 20000, "deliveries per throughput run")
	fanouts := fs.String("subs", "1,100,10000", "subscription counts of the throughput runs")
	rates := fs.String("rates", "100,1000,5000", "event rates of the latency runs, per second")
	span := fs.Duration("span", 5*time.Second, "length of each latency run")
	nRetries := fs.Int("retries", 0, "failed deliveries that wait for their retry as scheduled messages during a second round of the latency runs")
	succeed := fs.Bool("retries-succeed", false, "with -retries: the failing subscription's receiver answers 200 instead, so the same events leave no retry waiting (the control)")
	natsURL := fs.String("nats", "", "a NATS server of its own to run against (its streams are laid down as the services would), instead of one embedded in this process: so that the server's work and garbage collection are not the dispatcher's")
	replicas := fs.Int("dispatchers", 1, "dispatcher replicas on the same server, each with its own connection and registry; with more than one, each one's share of the deliveries is reported")
	profile := cpuProfile(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	stop, err := profile()
	if err != nil {
		return err
	}
	defer stop()
	fanoutList, err := splitInts(*fanouts)
	if err != nil {
		return fmt.Errorf("-subs: %w", err)
	}
	rateList, err := splitInts(*rates)
	if err != nil {
		return fmt.Errorf("-rates: %w", err)
	}
	for _, r := range rateList {
		if r < 10 {
			return fmt.Errorf("-rates: %d is below 10, and ten subscriptions share each rate", r)
		}
	}
	if *replicas < 1 {
		return errors.New("-dispatchers: at least 1")
	}
	if *nRetries < 0 {
		return errors.New("-retries: not negative")
	}
	conn, dial, done, err := dialer(ctx, *natsURL)
	if err != nil {
		return err
	}
	defer done()
	store, err := subs.Open(ctx, conn.JS)
	if err != nil {
		return err
	}

	// The receiver: notes, per request, how long since its event was stored;
	// on failPath it answers 500, and only counts.
	const failPath = "/fail"
	var mu sync.Mutex
	var lat []time.Duration
	var got, failed atomic.Int64
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hang, _, stopHang, err := hangingReceiver() // the dead receiver: takes requests, never answers
	if err != nil {
		return err
	}
	defer stopHang()
	rctx, stopRcv := context.WithCancel(ctx)
	defer stopRcv()
	go func() {
		_ = web.Serve(rctx, lis, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == failPath {
				failed.Add(1)
				if !*succeed {
					w.WriteHeader(http.StatusInternalServerError)
				}
				return
			}
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

	// The dispatcher replicas, each as a replica of its own would run: its
	// own connection and registry.
	cfg := dispatcher.DefaultConfig()
	cfg.AllowPrivate = true
	regs := make([]*prometheus.Registry, *replicas)
	var conns []*jet.Conn
	dctx, stopDisp := context.WithCancel(ctx)
	var dispatching sync.WaitGroup
	defer func() {
		stopDisp()
		dispatching.Wait()
		for _, c := range conns {
			c.NC.Close()
		}
	}()
	for i := range regs {
		rc, err := dial("kurier-bench-dispatcher-" + strconv.Itoa(i+1))
		if err != nil {
			return err
		}
		conns = append(conns, rc)
		regs[i] = prometheus.NewRegistry()
		svc, err := dispatcher.New(ctx, cfg, rc, benchLog(), regs[i])
		if err != nil {
			return err
		}
		dispatching.Go(func() { _ = svc.Run(dctx) })
	}

	var runs int
	org := func() string { runs++; return "b" + strconv.Itoa(runs) }
	// mkSubs makes n payload subscriptions; retry, when given, is their
	// retry schedule.
	mkSubs := func(org, typ string, n int, url string, retry ...time.Duration) ([]subs.Subscription, error) {
		made := make([]subs.Subscription, 0, n)
		for i := range n {
			sub := subs.Subscription{ID: subs.NewID(), Org: org, System: "s" + strconv.Itoa(i), EventTypes: []string{typ},
				Mode: subs.ModePayload, URL: url, Active: true, Secret: subs.NewSecret(), Created: time.Now(),
				Timeout: 15 * time.Second, MaxInFlight: benchMaxInFlight, Format: "standard", RetrySchedule: retry}
			if err := store.Create(ctx, sub); err != nil {
				return nil, err
			}
			made = append(made, sub)
		}
		return made, nil
	}
	// mkEvent is the i-th event of a run; its data is the time it is made.
	mkEvent := func(org, typ string, i int) event.Event {
		data := []byte(`{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}`)
		return event.Event{ID: org + "-" + strconv.Itoa(i), Source: "/bench", Type: typ, Subject: "D" + strconv.Itoa(i%100), Data: data}
	}
	publish := func(org, typ string, i int) error {
		e := mkEvent(org, typ, i)
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
	// delivered reads each replica's successful deliveries so far; found
	// says whether any replica has the counter.
	delivered := func() (per []float64, found bool) {
		per = make([]float64, len(regs))
		for i, reg := range regs {
			v, ok, err := counterSum(reg, deliveriesMetric, map[string]string{"outcome": "success"})
			if err == nil && ok {
				per[i], found = v, true
			}
		}
		return per, found
	}
	// shares is the line of each replica's part of the n deliveries made
	// since before, once the counters have them all (they are counted just
	// after the receiver's answer) or a second has passed; none for a
	// single replica.
	shares := func(before []float64, n int) string {
		if len(regs) < 2 {
			return ""
		}
		const label = "  shares of the replicas"
		var after []float64
		var sum float64
		for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
			var found bool
			after, found = delivered()
			sum = 0
			for i := range after {
				sum += after[i] - before[i]
			}
			if found && sum >= float64(n) {
				break
			}
			if time.Now().After(deadline) {
				if !found {
					return fmt.Sprintf("%-46s share unknown (metric missing)\n", label)
				}
				break
			}
		}
		parts := make([]string, len(after))
		for i := range after {
			d := after[i] - before[i]
			parts[i] = fmt.Sprintf("replica %d: %s (%.0f%%)", i+1, thousands(d), 100*d/max(sum, 1))
		}
		return fmt.Sprintf("%-46s %s\n", label, strings.Join(parts, ", "))
	}
	// direct sends the requests the dispatcher made for events of org to
	// list straight to the receiver: the same URLs, bodies and Standard
	// Webhooks headers, from a plain net/http client at conc requests at
	// once. Bodies are made before the clock runs; signing, as in the
	// dispatcher, is part of each request.
	direct := func(org, typ string, list []subs.Subscription, events, conc int) (float64, error) {
		type request struct {
			url, id string
			body    []byte
			sub     *subs.Subscription
		}
		reqs := make([]request, 0, events*len(list))
		stored := time.Now()
		for i := range events {
			ev := mkEvent(org, typ, i)
			for j := range list {
				spec := list[j].Spec()
				url, err := payload.RequestURL(spec, typ)
				if err != nil {
					return 0, err
				}
				body, err := payload.Body(spec, ev, stored)
				if err != nil {
					return 0, err
				}
				reqs = append(reqs, request{url: url, id: "msg_" + list[j].ID + "_" + strconv.Itoa(i), body: body, sub: &list[j]})
			}
		}
		client := &http.Client{Transport: &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc}, Timeout: 30 * time.Second}
		defer client.CloseIdleConnections()
		r, err := run(ctx, len(reqs), conc, 1, func(ctx context.Context, k int) error {
			q := reqs[k]
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.url, bytes.NewReader(q.body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Agent", cfg.UserAgent)
			now := time.Now()
			if err := webhook.Sign(req.Header, q.id, now, q.body, q.sub.Secrets(now)...); err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		return float64(r.events) / r.elapsed.Seconds(), nil
	}
	fmt.Printf("kurier-bench deliver: payload deliveries to a receiver on loopback, %d dispatcher replica(s), %d CPUs, Go %s\n\n",
		len(regs), runtime.NumCPU(), runtime.Version())

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
		list, err := mkSubs(o, typ, f, "http://"+lis.Addr().String()+"/")
		if err != nil {
			return err
		}
		// Measure deliveries, not setting up: wait until every replica
		// knows every subscription.
		for _, reg := range regs {
			if err := waitKnown(reg, f, 10*time.Minute); err != nil {
				return err
			}
		}
		reset()
		before, _ := delivered()
		events := max(*total/f, 1)
		start := time.Now()
		for i := range events {
			if err := publish(o, typ, i); err != nil {
				return err
			}
		}
		label := fmt.Sprintf("sustained, %d subscription(s)", f)
		_, err = waitFor(int64(events*f), 5*time.Minute)
		rate := float64(events*f) / time.Since(start).Seconds()
		p50, p99 := percentiles()
		if err != nil {
			// A figure all the same: how far it got.
			fmt.Printf("%-46s %v\n", label, err)
		} else {
			fmt.Printf("%-46s %10.0f deliveries/s  p50 %v  p99 %v  (%d events, setup %v)\n", label,
				rate, p50.Round(time.Millisecond), p99.Round(time.Millisecond), events, time.Since(setup).Round(time.Second))
		}
		share := shares(before, events*f)

		// The limit of the HTTP path: the same requests sent straight, as
		// many at once as the dispatcher may have in this run (every
		// subscription's in-flight limit, within the replicas' bound).
		// Each connection has two ends in this process, beside the
		// dispatchers' idle ones: past 4,096 at once the process would run
		// out of file descriptors.
		conc := min(f*benchMaxInFlight, cfg.Deliveries*len(regs), directMax)
		reset()
		directRate, derr := direct(o, typ, list, events, conc)
		if derr != nil {
			all := strings.Split(derr.Error(), "\n")
			fmt.Printf("%-46s failed: %s (%d requests failed)\n", "  direct POST (reference)", all[0], len(all))
		} else {
			fmt.Printf("%-46s %10.0f deliveries/s  (%d at once, as the dispatcher may)\n", "  direct POST, same requests (reference)", directRate, conc)
			if err == nil {
				fmt.Printf("%-46s %s/s, %.2f of direct POST %s/s\n", "  dispatcher vs direct POST", thousands(rate), rate/directRate, thousands(directRate))
			}
		}
		fmt.Print(share)
		// Clear them away, so they do not weigh on the next runs.
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
	if _, err := mkSubs(live, "bench.paced", 10, "http://"+lis.Addr().String()+"/"); err != nil {
		return err
	}
	time.Sleep(time.Second)
	report := func(label string) time.Duration {
		p50, p99 := percentiles()
		fmt.Printf("%-46s p50 %v  p99 %v\n", label, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond))
		return p99
	}
	// latencyRuns makes a latency run at each rate and answers their p99s;
	// note is added to each line.
	latencyRuns := func(note string) ([]time.Duration, error) {
		p99s := make([]time.Duration, len(rateList))
		for i, rate := range rateList {
			// Let the last run's log records be written; ten subscriptions
			// make rate/10 events a second rate deliveries.
			time.Sleep(2 * time.Second)
			before, _ := delivered()
			if err := paced(live, "bench.paced", rate/10); err != nil {
				return nil, err
			}
			p99s[i] = report(fmt.Sprintf("latency at %d deliveries/s (10 subscriptions)%s", rate, note))
			fmt.Print(shares(before, int(got.Load())))
		}
		return p99s, nil
	}
	without, err := latencyRuns("")
	if err != nil {
		return err
	}
	var retryNote string
	if *nRetries > 0 {
		// One subscription whose receiver always answers 500, retried an
		// hour later at every step: each of its events leaves a retry
		// waiting as a scheduled message.
		setup := time.Now()
		fo, ftyp := org(), "bench.failing"
		known := make([]float64, len(regs))
		for i, reg := range regs {
			if known[i], err = gauge(reg, "kurier_dispatch_subscriptions"); err != nil {
				return err
			}
		}
		hourly := slices.Repeat([]time.Duration{time.Hour}, len(dispatcher.DefaultRetrySchedule))
		failing, err := mkSubs(fo, ftyp, 1, "http://"+lis.Addr().String()+failPath, hourly...)
		if err != nil {
			return err
		}
		for i, reg := range regs {
			if err := waitKnown(reg, int(known[i])+1, time.Minute); err != nil {
				return err
			}
		}
		for i := range *nRetries {
			if err := publish(fo, ftyp, i); err != nil {
				return err
			}
		}
		<-conn.JS.PublishAsyncComplete()
		waiting, err := waitRetries(ctx, conn, failing[0].ID, *nRetries, &failed, *succeed)
		if err != nil {
			return err
		}
		// What the measurement is about is retries waiting, not the burst
		// of failures that made them: its delivery log records are written
		// first, and the server is given a moment to put away what the
		// failed attempts left.
		if err := waitLogged(ctx, conn, fo, failing[0].ID, *nRetries); err != nil {
			return err
		}
		time.Sleep(5 * time.Second)
		what := "retries waiting"
		if *succeed {
			what = "control"
			fmt.Printf("%-46s none: the control, %s events delivered to 1 more subscription at the first attempt (setup %v)\n",
				"retries scheduled", thousands(float64(failed.Load())), time.Since(setup).Round(time.Second))
			retryNote = ", control: " + thousands(float64(*nRetries)) + " events delivered, no retry waiting"
		} else {
			fmt.Printf("%-46s %s retries waiting (1 subscription answering 500, next attempt in 1 h; %d attempts, setup %v)\n",
				"retries scheduled", thousands(float64(waiting)), failed.Load(), time.Since(setup).Round(time.Second))
			retryNote = ", " + thousands(float64(waiting)) + " retries waiting"
		}
		with, err := latencyRuns(retryNote)
		if err != nil {
			return err
		}
		for i, rate := range rateList {
			fmt.Printf("%-46s p99 %v with, %v without: %+.1f%%\n", fmt.Sprintf("  p99 at %d deliveries/s, %s", rate, what),
				with[i].Round(100*time.Microsecond), without[i].Round(100*time.Microsecond),
				100*(with[i].Seconds()-without[i].Seconds())/max(without[i].Seconds(), 1e-9))
		}
	}
	// The lowest rate again with a dead receiver among the live ones: their
	// latency must stay as it was.
	dead := org()
	if _, err := mkSubs(dead, "bench.paced", 1, "http://"+hang+"/"); err != nil {
		return err
	}
	if _, err := mkSubs(dead, "bench.paced", 10, "http://"+lis.Addr().String()+"/"); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	before, _ := delivered()
	if err := paced(dead, "bench.paced", rateList[0]/10); err != nil {
		return err
	}
	report(fmt.Sprintf("latency at %d deliveries/s, plus a dead receiver%s", rateList[0], retryNote))
	fmt.Print(shares(before, int(got.Load())))
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

// waitLogged waits until the delivery log holds n records of the
// subscription's.
func waitLogged(ctx context.Context, conn *jet.Conn, org, sub string, n int) error {
	st, err := conn.JS.Stream(ctx, bus.StreamDeliveryLog)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(bus.DeliveryLogSubject(org, sub)))
		if err == nil && info.State.Subjects[bus.DeliveryLogSubject(org, sub)] >= uint64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the delivery log does not hold the %d failed attempts within a minute", n)
		}
	}
}

// waitRetries waits until the subscription has n retries waiting as
// scheduled messages in DELIVERIES (one subject each under
// kurier.retry.<sub>), once its receiver has had n attempts (attempts);
// it gives up when neither moves for a minute. It answers how many wait.
// With none (the control, whose attempts succeed), n attempts are enough.
func waitRetries(ctx context.Context, conn *jet.Conn, sub string, n int, attempts *atomic.Int64, none bool) (int, error) {
	deliveries, err := bus.Stream(ctx, conn.JS, bus.StreamDeliveries)
	if err != nil {
		return 0, err
	}
	filter := bus.RetrySubject(sub, ">")
	waiting, lastAttempts := 0, int64(-1)
	moved, report := time.Now(), time.Now()
	for {
		a := attempts.Load()
		if a != lastAttempts {
			lastAttempts, moved = a, time.Now()
		}
		if none && a >= int64(n) {
			return 0, nil
		}
		// Reading the subjects of a large stream costs: only once every
		// task has been attempted.
		if a >= int64(n) {
			info, err := deliveries.Info(ctx, jetstream.WithSubjectFilter(filter))
			if err != nil {
				return 0, err
			}
			if w := len(info.State.Subjects); w != waiting {
				waiting, moved = w, time.Now()
			}
			if waiting >= n {
				return waiting, nil
			}
		}
		if time.Since(moved) > time.Minute {
			return waiting, fmt.Errorf("retries: %d of %d attempts made, %d of %d retries waiting, no progress for a minute", a, n, waiting, n)
		}
		if time.Since(report) >= 5*time.Second {
			fmt.Fprintf(os.Stderr, "retries: %d of %d attempts made, %d retries waiting\n", a, n, waiting)
			report = time.Now()
		}
		select {
		case <-ctx.Done():
			return waiting, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
