package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/jet"
	"kurier.dev/services/internal/natsd"
)

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
func benchBus(ctx context.Context, listen string) (conn *jet.Conn, srv *server.Server, done func(), err error) {
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
	if conn, err = jet.Connect("", "kurier-bench", benchLog(), nats.InProcessServer(srv)); err == nil {
		err = bus.Ensure(ctx, conn.JS, bus.DefaultLimits())
	}
	if err != nil {
		done()
		return nil, nil, nil, err
	}
	return conn, srv, done, nil
}

// dialer is benchBus, or, with url set, the same on a NATS server of its
// own: conn, with every stream laid down, and dial for further
// connections, as each replica of a service has its own.
func dialer(ctx context.Context, url string) (conn *jet.Conn, dial func(name string) (*jet.Conn, error), done func(), err error) {
	if url == "" {
		conn, srv, done, err := benchBus(ctx, "")
		if err != nil {
			return nil, nil, nil, err
		}
		return conn, func(name string) (*jet.Conn, error) {
			return jet.Connect("", name, benchLog(), nats.InProcessServer(srv))
		}, done, nil
	}
	dial = func(name string) (*jet.Conn, error) { return jet.Connect(url, name, benchLog()) }
	if conn, err = dial("kurier-bench"); err != nil {
		return nil, nil, nil, err
	}
	if err := bus.Ensure(ctx, conn.JS, bus.DefaultLimits()); err != nil {
		conn.NC.Close()
		return nil, nil, nil, err
	}
	return conn, dial, conn.NC.Close, nil
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

// gauge reads a gauge's value from a registry.
func gauge(g prometheus.Gatherer, name string) (float64, error) {
	families, err := g.Gather()
	if err != nil {
		return 0, err
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetGauge().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("no gauge %s", name)
}

// counterSum adds up a counter's series in a registry whose labels have
// the given values; found says whether the registry has the counter at all.
func counterSum(g prometheus.Gatherer, name string, labels map[string]string) (sum float64, found bool, err error) {
	families, err := g.Gather()
	if err != nil {
		return 0, false, err
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		found = true
		for _, m := range f.GetMetric() {
			matched := 0
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
					matched++
				}
			}
			if matched == len(labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum, found, nil
}

// thousands writes a rate as 12,300.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// kurierBinary answers the kurier binary that the benchmarks running a
// service in a process of its own start: path when given, else kurier built
// from this source tree (kurier.dev/services/cmd/kurier, which the go
// command finds from within the repository) into a temporary folder that
// done removes. The build is done before any clock runs.
func kurierBinary(ctx context.Context, path string) (bin string, done func(), err error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", nil, fmt.Errorf("-kurier: %w", err)
		}
		return path, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "kurier-bench-bin-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "kurier")
	fmt.Fprintln(os.Stderr, "building kurier (kurier.dev/services/cmd/kurier) ...")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "kurier.dev/services/cmd/kurier").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build kurier (run from within the repository, or give -kurier PATH): %w\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// hangingReceiver listens on loopback as receivers that take a request and
// never answer: each connection is read, so the request goes through, and
// held open until its client gives up or stop is called. held counts the
// connections taken; an unanswered HTTP/1.1 connection carries one request.
func hangingReceiver() (addr string, held *atomic.Int64, stop func(), err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	held = new(atomic.Int64)
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stopped := false
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			held.Add(1)
			mu.Lock()
			if stopped {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = struct{}{}
			mu.Unlock()
			go func() {
				_, _ = io.Copy(io.Discard, c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			lis.Close()
			mu.Lock()
			stopped = true
			for c := range conns {
				c.Close()
			}
			mu.Unlock()
		})
	}
	return lis.Addr().String(), held, stop, nil
}

// cpuProfile adds -cpuprofile to fs; once fs is parsed, the answer starts
// the profile it asks for, and answers what stops it.
func cpuProfile(fs *flag.FlagSet) func() (func(), error) {
	path := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	return func() (func(), error) {
		if *path == "" {
			return func() {}, nil
		}
		f, err := os.Create(*path)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		return func() { pprof.StopCPUProfile(); f.Close() }, nil
	}
}
