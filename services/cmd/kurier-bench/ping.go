package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/subs"
	"kurier.dev/services/internal/web"
)

// benchPing runs `kurier-bench ping`: many ping subscriptions, a burst of
// changes, and a dispatcher in its own process (`kurier dispatcher`) so its
// CPU time and memory are its own. It checks the ping rules on everything
// the healthy receivers got, and reports how late their pings came.
//
// With -hang, that many subscriptions have a receiver that takes the ping
// and never answers (until the bench ends), each holding its request for
// the ping timeout. Target: 10,000 ping subscriptions of which 1,000 hang,
// the healthy ones pinged on time: within the delay plus 2 s of the change
// that started their timer.
func benchPing(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kurier-bench ping", flag.ContinueOnError)
	nSubs := fs.Int("subs", 10000, "ping subscriptions")
	nEvents := fs.Int("events", 1000000, "changes in the burst")
	nTypes := fs.Int("types", 1000, "event types the subscriptions spread over")
	delay := fs.Duration("delay", time.Second, "notify delay")
	nHang := fs.Int("hang", 0, "subscriptions whose receiver takes the ping and never answers; the others are healthy")
	pingTimeout := fs.Duration("ping-timeout", 30*time.Second, "the dispatcher's ping timeout (KURIER_PING_TIMEOUT): how long a hung receiver holds its ping")
	kurier := fs.String("kurier", "", "the kurier binary that runs the dispatcher (default: built from this source tree)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nHang < 0 || *nHang > *nSubs {
		return fmt.Errorf("-hang: %d is not between 0 and -subs %d", *nHang, *nSubs)
	}
	bin, rmBin, err := kurierBinary(ctx, *kurier)
	if err != nil {
		return err
	}
	defer rmBin()
	conn, srv, done, err := benchBus(ctx, "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer done()
	log := benchLog()

	// The receiver: every subscription's URL, noting when each ping came.
	var mu sync.Mutex
	got := map[string][]time.Time{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	rctx, stopRcv := context.WithCancel(ctx)
	defer stopRcv()
	go func() {
		_ = web.Serve(rctx, lis, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			now := time.Now()
			mu.Lock()
			got[r.URL.Path[1:]] = append(got[r.URL.Path[1:]], now)
			mu.Unlock()
		}), time.Second, log)
	}()

	// The hung receivers, for the last -hang subscriptions: as subscription
	// i has type i%types, they spread over the types, beside healthy ones.
	hangAddr, held, stopHang, err := hangingReceiver()
	if err != nil {
		return err
	}
	defer stopHang()
	hung := func(i int) bool { return i >= *nSubs-*nHang }

	store, err := subs.Open(ctx, conn.JS)
	if err != nil {
		return err
	}
	typeOf := func(i int) string { return "doc" + strconv.Itoa(i%*nTypes) + ".changed" }
	ids := make([]string, *nSubs)
	for i := range ids {
		id := subs.NewID()
		addr := lis.Addr().String()
		if hung(i) {
			addr = hangAddr
		}
		sub := subs.Subscription{ID: id, Org: "bench", System: "s" + strconv.Itoa(i), EventTypes: []string{typeOf(i)},
			Mode: subs.ModePing, URL: "http://" + addr + "/" + id, Active: true, Secret: subs.NewSecret(), Created: time.Now()}
		if err := store.Create(ctx, sub); err != nil {
			return err
		}
		ids[i] = id
	}

	disp := exec.CommandContext(ctx, bin, "dispatcher")
	disp.Env = append(os.Environ(), "KURIER_NATS_URL="+srv.ClientURL(), "KURIER_HTTP_LISTEN=127.0.0.1:0",
		"KURIER_NOTIFY_DELAY="+delay.String(), "KURIER_PING_TIMEOUT="+pingTimeout.String(), "KURIER_LOG_LEVEL=warn", "KURIER_ALLOW_PRIVATE_TARGETS=true")
	disp.Stderr = os.Stderr
	if err := disp.Start(); err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = disp.Process.Kill()
			_ = disp.Wait()
		}
	}()
	// The dispatcher is ready for the burst once it asks its consumer for
	// events.
	for {
		if c, err := conn.JS.Consumer(ctx, bus.StreamEvents, bus.DispatchConsumer().Durable); err == nil && c.CachedInfo().NumWaiting > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}

	fmt.Printf("kurier-bench ping: %d subscriptions over %d types (%d hang, ping timeout %v), %d changes in a burst, delay %v, %d CPUs, Go %s\n\n",
		*nSubs, *nTypes, *nHang, *pingTimeout, *nEvents, *delay, runtime.NumCPU(), runtime.Version())
	// When each type's changes were stored (their acknowledgements seen),
	// in order.
	changes := make([][]time.Time, *nTypes)
	firstChange := time.Now()
	var sent atomic.Int64
	pingCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, p := range got {
			n += len(p)
		}
		return n
	}
	// Progress on stderr, so a long run shows where it is.
	pctx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			pending := uint64(0)
			if c, err := conn.JS.Consumer(pctx, bus.StreamEvents, bus.DispatchConsumer().Durable); err == nil {
				if info, err := c.Info(pctx); err == nil {
					pending = info.NumPending + uint64(info.NumAckPending)
				}
			}
			fmt.Fprintf(os.Stderr, "%6.0fs: %d changes published, %d not yet dispatched, %d pings, %d held by hung receivers\n",
				time.Since(firstChange).Seconds(), sent.Load(), pending, pingCount(), held.Load())
		}
	}()
	const window = 1000
	futures := make([]jetstream.PubAckFuture, 0, window)
	body := []byte(`{"specversion":"1.0","id":"x","source":"/bench","type":"doc.changed","subject":"d"}`)
	for i := 0; i < *nEvents; i++ {
		f, err := conn.JS.PublishAsync(bus.EventsSubject("bench", typeOf(i)), body, jetstream.WithStallWait(10*time.Second))
		if err != nil {
			return err
		}
		futures = append(futures, f)
		if len(futures) == window || i == *nEvents-1 {
			for j, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					return err
				}
				t := (i - len(futures) + 1 + j) % *nTypes
				changes[t] = append(changes[t], time.Now())
			}
			sent.Add(int64(len(futures)))
			futures = futures[:0]
		}
	}
	published := time.Since(firstChange)

	cons, err := conn.JS.Consumer(ctx, bus.StreamEvents, bus.DispatchConsumer().Durable)
	if err != nil {
		return err
	}
	var dispatched time.Duration
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			dispatched = time.Since(firstChange)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Trailing pings: quiet for two delays, then count.
	for last := -1; ; {
		time.Sleep(2 * *delay)
		n := pingCount()
		if n == last {
			break
		}
		last = n
	}
	stopProgress()
	// The bench ends: the hung requests fail now, so the dispatcher's stop
	// need not wait out their timeout.
	stopHang()
	_ = disp.Process.Signal(syscall.SIGTERM)
	_ = disp.Wait()
	stopped = true
	ru, _ := disp.ProcessState.SysUsage().(*syscall.Rusage)

	mu.Lock()
	defer mu.Unlock()
	// The rules are checked, and lateness measured, on the healthy
	// subscriptions.
	var total, violations, missing, unpinged int
	var longest, firstPing time.Duration
	var late []time.Duration
	for i, id := range ids {
		if hung(i) {
			continue
		}
		p := got[id]
		total += len(p)
		if len(p) == 0 {
			missing++
			unpinged++
			continue
		}
		late = append(late, lateness(p, changes[i%*nTypes], *delay)...)
		firstPing = max(firstPing, p[0].Sub(firstChange))
		for j := 1; j < len(p); j++ {
			if p[j].Sub(p[j-1]) < *delay {
				violations++
			}
		}
		var lc time.Time
		if ch := changes[i%*nTypes]; len(ch) > 0 {
			lc = ch[len(ch)-1]
		}
		k, found := slices.BinarySearchFunc(p, lc, func(a, b time.Time) int { return a.Compare(b) })
		if found {
			k++
		}
		if k == len(p) {
			missing++
			continue
		}
		longest = max(longest, p[k].Sub(lc))
	}
	rate := func(n int, d time.Duration) string { return strconv.FormatFloat(float64(n)/d.Seconds(), 'f', 0, 64) }
	fmt.Printf("%-44s %s events/s (%v)\n", "raw jetstream publish of the burst", rate(*nEvents, published), published.Round(time.Millisecond))
	fmt.Printf("%-44s %s events/s (%v)\n", "dispatcher, burst matched and timers set", rate(*nEvents, dispatched), dispatched.Round(time.Millisecond))
	healthy := *nSubs - *nHang
	if *nHang == 0 {
		fmt.Printf("%-44s %d (%.1f per subscription)\n", "pings sent", total, float64(total)/float64(healthy))
	} else {
		fmt.Printf("%-44s %d (%.1f per subscription)\n", "pings to the healthy subscriptions", total, float64(total)/float64(max(healthy, 1)))
		fmt.Printf("%-44s %d to %d subscriptions, each held until the timeout (%v) or the end\n", "pings held by hung receivers", held.Load(), *nHang, *pingTimeout)
	}
	fmt.Printf("%-44s %v\n", "latest first ping after the burst began", firstPing.Round(time.Millisecond))
	fmt.Printf("%-44s %v\n", "longest wait from a last change to its ping", longest.Round(time.Millisecond))
	fmt.Printf("%-44s %d\n", "subscriptions without a ping after their last change", missing)
	fmt.Printf("%-44s %d\n", "pings closer than the delay", violations)
	slices.Sort(late)
	tooLate := 0
	for _, d := range late {
		if d > pingOnTime {
			tooLate++
		}
	}
	lr := result{lat: late}
	fmt.Printf("%-44s p50 %s  p99 %s  max %s  (%d pings, %d later than %v)\n", "healthy pings' lateness after change + delay",
		lr.p(0.5), lr.p(0.99), lr.p(1), len(late), tooLate, pingOnTime)
	fmt.Printf("%-44s %d of %d\n", "healthy subscriptions without any ping", unpinged, healthy)
	if ru != nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		fmt.Printf("%-44s %v CPU, peak RSS %d MiB\n", "dispatcher process", cpu.Round(time.Millisecond), ru.Maxrss/1024)
	}
	if violations > 0 || missing > 0 {
		return fmt.Errorf("ping rules broken: %d pings too close, %d subscriptions without a trailing ping", violations, missing)
	}
	return nil
}

// pingOnTime is how late after its change and the delay a ping may come
// and still count as on time.
const pingOnTime = 2 * time.Second

// lateness answers, for each ping of a subscription (arrivals p, in
// order), how late it came: its arrival minus the change that started its
// timer plus the delay. changes are the times of its type's changes, in
// order. A ping tells of the changes since the one before it, so its timer
// was started by the first change after the previous ping; unless the ping
// came sooner than the delay after that change: a timer runs the whole
// delay, so it was then started by the latest change before the previous
// ping, after that ping's own timer had fired.
func lateness(p, changes []time.Time, delay time.Duration) []time.Duration {
	if len(changes) == 0 {
		return nil
	}
	late := make([]time.Duration, 0, len(p))
	var prev time.Time // the previous ping; zero before the first
	for _, a := range p {
		j, _ := slices.BinarySearchFunc(changes, prev, func(c, t time.Time) int {
			if c.After(t) {
				return 1
			}
			return -1
		})
		if j == len(changes) || (j > 0 && a.Before(changes[j].Add(delay))) {
			j--
		}
		late = append(late, a.Sub(changes[j].Add(delay)))
		prev = a
	}
	return late
}
