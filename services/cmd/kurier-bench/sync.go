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
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kurier.dev/services/bus"
	"kurier.dev/services/internal/book"
	"kurier.dev/services/internal/tenant"
)

// benchSync runs `kurier-bench sync`: full address-book syncs of
// growing books through the FE2 API of an addresssync service in its own
// process (`kurier addresssync`), so its peak memory is its own, beside the
// raw JetStream figure for writing that many persons.
func benchSync(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kurier-bench sync", flag.ContinueOnError)
	sizes := fs.String("persons", "10000,100000", "book sizes to sync, comma-separated")
	changed := fs.Float64("changed", 0.01, "share of the persons the third sync changes")
	kurier := fs.String("kurier", "", "the kurier binary that runs the addresssync service (default: built from this source tree)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ns []int
	for s := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-persons: %q is not a number of persons", s)
		}
		ns = append(ns, n)
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
	tenants, err := tenant.Open(ctx, conn.JS)
	if err != nil {
		return err
	}
	events, err := bus.Stream(ctx, conn.JS, bus.StreamEvents)
	if err != nil {
		return err
	}
	fmt.Printf("kurier-bench sync: books of %s persons, %.0f%% changed in the third sync, %d CPUs, Go %s\n\n",
		*sizes, 100**changed, runtime.NumCPU(), runtime.Version())
	fmt.Printf("%-8s %-34s %10s %9s %10s  %s\n", "persons", "run", "time", "vs raw", "events", "answer")

	for _, n := range ns {
		first, again, changes := syncBodies(n, *changed)

		// The reference: n person-sized messages published straight to a
		// stream, asynchronously, as fast as JetStream acknowledges them.
		start := time.Now()
		if err := rawPuts(ctx, conn.JS, first, n); err != nil {
			return fmt.Errorf("raw publish: %w", err)
		}
		raw := time.Since(start)
		fmt.Printf("%-8d %-34s %10v %8.0f%% %10s\n", n, "raw jetstream: n async publishes", raw.Round(time.Millisecond), 100.0, "-")

		org := "bench" + strconv.Itoa(n)
		if err := tenants.CreateOrg(ctx, tenant.Org{ID: org, Created: time.Now(), AddressbookSync: true}); err != nil {
			return err
		}
		id, secret := tenant.NewSecret()
		if err := tenants.CreateKey(ctx, tenant.Key{ID: id, Org: org, Scopes: []tenant.Scope{tenant.ScopeAddressbook}, Hash: tenant.HashSecret(secret), Created: time.Now()}); err != nil {
			return err
		}
		svc, url, err := startSyncService(ctx, bin, srv.ClientURL())
		if err != nil {
			return err
		}
		for _, run := range []struct {
			name string
			body []byte
		}{{"first sync", first}, {"identical second sync", again}, {fmt.Sprintf("%.0f%% changed", 100**changed), changes}} {
			before, err := events.Info(ctx)
			if err != nil {
				return err
			}
			start := time.Now()
			answer, err := postSync(ctx, url, secret, run.body)
			took := time.Since(start)
			if err != nil {
				_ = svc.Process.Kill()
				_ = svc.Wait()
				return fmt.Errorf("%d persons, %s: %w", n, run.name, err)
			}
			after, err := events.Info(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("%-8d %-34s %10v %8.0f%% %10d  %s\n", n, run.name, took.Round(time.Millisecond),
				100*took.Seconds()/raw.Seconds(), after.State.LastSeq-before.State.LastSeq, answer)
		}
		_ = svc.Process.Signal(syscall.SIGTERM)
		_ = svc.Wait()
		if ru, ok := svc.ProcessState.SysUsage().(*syscall.Rusage); ok {
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			fmt.Printf("%-8d %-34s %v CPU, peak RSS %d MiB\n\n", n, "addresssync process, all three", cpu.Round(time.Millisecond), ru.Maxrss/1024)
		}
	}
	return nil
}

// syncBodies builds the three request bodies before any clock runs: n
// persons, the same again, and the share changed. The ids differ by book
// size, as those of different orgs must.
func syncBodies(n int, changed float64) (first, again, changes []byte) {
	list := make([]book.Fields, n)
	for i := range list {
		mail := "person" + strconv.Itoa(i) + "@example.com"
		list[i] = book.Fields{ExternalDbID: strconv.Itoa(n) + "-" + strconv.Itoa(i), FirstName: "Max", LastName: "Mustermann " + strconv.Itoa(i),
			Note: "Zug " + strconv.Itoa(i%40), OSFunctions: []string{"AGT", "MA"}, OSGroups: []string{"Löschgruppe " + strconv.Itoa(i%12)},
			AlarmGroups: []string{"Alarm Gruppe", "Alarm Gruppe 2"}, APagerPro: mail, Email: mail,
			Mobil: "0049151" + strconv.Itoa(1000000+i), APagerProFieldMode: book.ModeLegacy}
	}
	body := func() []byte {
		b, _ := json.Marshal(map[string]any{"source": "bench", "personList": list})
		return b
	}
	first, again = body(), body()
	step := max(int(1/changed), 1)
	for i := 0; i < n; i += step {
		list[i].FirstName = "Moritz"
	}
	return first, again, body()
}

// rawPuts publishes one message per person of body's size to the
// persons bucket's stream, under keys no org has.
func rawPuts(ctx context.Context, js jetstream.JetStream, body []byte, n int) error {
	data := bytes.Repeat([]byte("x"), len(body)/n)
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		f, err := js.PublishAsync(bus.KVSubject(bus.BucketPersons, "raw."+strconv.Itoa(i)), data, jetstream.WithStallWait(10*time.Second))
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	return acked(ctx, futures)
}

// startSyncService runs `kurier addresssync` (bin is the kurier binary)
// against the bench's server and waits until it answers.
func startSyncService(ctx context.Context, bin, natsURL string) (*exec.Cmd, string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := lis.Addr().String()
	lis.Close()
	cmd := exec.CommandContext(ctx, bin, "addresssync")
	cmd.Env = append(os.Environ(), "KURIER_NATS_URL="+natsURL, "KURIER_HTTP_LISTEN="+addr, "KURIER_LOG_LEVEL=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd, "http://" + addr + "/rest/addressbook/sync", nil
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, "", errors.New("kurier addresssync did not get ready within 30s")
		}
	}
}

// postSync sends a sync and answers its counts as the service gave them.
func postSync(ctx context.Context, url, key string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(bytes.TrimSpace(b)), nil
}
