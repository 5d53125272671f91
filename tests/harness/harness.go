// Package harness runs the real kurier binary for end-to-end tests: built
// once per test run (with the race detector when the tests have it),
// started as a subprocess on loopback ports it picks itself, and stopped
// with real signals.
package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/contract"
)

// build is a command of kurier.dev/services/cmd, built once per test run.
type build struct {
	name string
	once sync.Once
	path string
	err  error
}

var kurierBuild, kurierctlBuild = &build{name: "kurier"}, &build{name: "kurierctl"}

// Binary builds kurier once and answers its path.
func Binary(t testing.TB) string {
	t.Helper()
	return kurierBuild.binary(t)
}

// Kurierctl builds kurierctl once and answers its path.
func Kurierctl(t testing.TB) string {
	t.Helper()
	return kurierctlBuild.binary(t)
}

func (b *build) binary(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", b.name+"-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, b.name)
		args := []string{"build", "-o", b.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "kurier.dev/services/cmd/"+b.name)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", b.name, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Kurier is a running `kurier all`.
type Kurier struct {
	HTTP    string // base URL of the HTTP APIs, http://127.0.0.1:port
	GRPC    string // host:port of the admin API
	NATS    string // nats://127.0.0.1:port of the embedded server
	DataDir string
	Token   string // the admin token

	opts   Options // as started, for Restart
	cmd    *exec.Cmd
	mu     sync.Mutex
	logs   bytes.Buffer // stderr, JSON lines
	stdout bytes.Buffer
	exited chan struct{}
	err    error // the process's exit, once exited is closed
}

// Options tune a started kurier.
type Options struct {
	// Role is the command: "all" (the default) or one service, which
	// then needs NATSURL.
	Role    string
	NATSURL string
	DataDir string   // default: a new temporary folder
	Token   string   // default: a fixed test token; "-" lets kurier make one
	Env     []string // extra KEY=value settings
}

// listeners names what each role logs as listening.
var listeners = map[string][]string{
	"all":         {"http", "grpc", "nats"},
	"admin":       {"http", "grpc"},
	"ingest":      {"http"},
	"dispatcher":  {"http"},
	"addresssync": {"http"},
	"gateway":     {"http", "grpc"},
	"queue":       {"http"},
}

// TestToken is the admin token tests use unless told otherwise.
const TestToken = "test-admin-token-0123456789"

// Start starts kurier and waits until its listeners are up. It is stopped
// when the test ends, if the test has not stopped it.
func Start(t testing.TB, o Options) *Kurier {
	t.Helper()
	if o.Role == "" {
		o.Role = "all"
	}
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.Token == "" {
		o.Token = TestToken
	}
	k := &Kurier{DataDir: o.DataDir, opts: o, exited: make(chan struct{})}
	k.cmd = exec.Command(Binary(t), o.Role)
	k.cmd.Env = append(os.Environ(),
		"KURIER_HTTP_LISTEN=127.0.0.1:0",
		"KURIER_GRPC_LISTEN=127.0.0.1:0",
		"KURIER_NATS_LISTEN=127.0.0.1:0",
		"KURIER_NATS_URL="+o.NATSURL,
		"KURIER_DATA_DIR="+o.DataDir,
		"KURIER_LOG_LEVEL=debug",
		// Test receivers listen on loopback.
		"KURIER_ALLOW_PRIVATE_TARGETS=true",
	)
	if o.Token != "-" {
		k.Token = o.Token
		k.cmd.Env = append(k.cmd.Env, "KURIER_ADMIN_TOKEN="+o.Token)
	}
	k.cmd.Env = append(k.cmd.Env, o.Env...)
	stderr, err := k.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	k.cmd.Stdout = &syncWriter{mu: &k.mu, w: &k.stdout}
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan map[string]string, 1)
	go k.readLogs(stderr, listeners[o.Role], addrs)
	go func() {
		err := k.cmd.Wait()
		k.mu.Lock()
		k.err = err
		k.mu.Unlock()
		close(k.exited)
	}()
	t.Cleanup(func() {
		k.Stop(t, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("kurier log:\n%s", k.Logs())
		}
	})
	select {
	case a := <-addrs:
		k.HTTP, k.GRPC, k.NATS = "http://"+a["http"], a["grpc"], "nats://"+a["nats"]
		if o.Role != "all" {
			k.NATS = o.NATSURL
		}
	case <-k.exited:
		t.Fatalf("kurier exited at start: %v\n%s", k.err, k.Logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("kurier did not start within 60s\n%s", k.Logs())
	}
	if k.Token == "" {
		b, err := os.ReadFile(filepath.Join(o.DataDir, "admin-token"))
		if err != nil {
			t.Fatal(err)
		}
		k.Token = strings.TrimSpace(string(b))
	}
	return k
}

// readLogs keeps stderr and reports the listeners' addresses once all the
// wanted ones have been logged.
func (k *Kurier) readLogs(r io.Reader, want []string, addrs chan<- map[string]string) {
	found := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		k.mu.Lock()
		k.logs.Write(line)
		k.logs.WriteByte('\n')
		k.mu.Unlock()
		var rec struct{ Msg, Addr string }
		if json.Unmarshal(line, &rec) != nil || found == nil {
			continue
		}
		if name, ok := strings.CutSuffix(rec.Msg, " listening"); ok {
			found[name] = rec.Addr
		}
		if len(found) == len(want) {
			addrs <- found
			found = nil
		}
	}
}

// Logs answers what kurier has written to stderr so far.
func (k *Kurier) Logs() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.logs.String()
}

// Stdout answers what kurier has written to stdout so far.
func (k *Kurier) Stdout() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.stdout.String()
}

// Stop sends sig and waits for the process to end, answering its exit
// code (-1 when killed by a signal).
func (k *Kurier) Stop(t testing.TB, sig syscall.Signal) int {
	t.Helper()
	select {
	case <-k.exited:
	default:
		_ = k.cmd.Process.Signal(sig)
		select {
		case <-k.exited:
		case <-time.After(60 * time.Second):
			_ = k.cmd.Process.Kill()
			<-k.exited
			t.Errorf("kurier did not stop within 60s of %v", sig)
		}
	}
	return k.cmd.ProcessState.ExitCode()
}

// Restart starts a kurier that has stopped again, with the options and
// data folder it had. Its listeners get new ports.
func (k *Kurier) Restart(t testing.TB) *Kurier {
	t.Helper()
	if ended, _ := k.Exited(); !ended {
		t.Fatal("harness: Restart of a kurier that still runs; Stop it first")
	}
	return Start(t, k.opts)
}

// Exited tells whether the process has ended, and how.
func (k *Kurier) Exited() (bool, error) {
	select {
	case <-k.exited:
		k.mu.Lock()
		defer k.mu.Unlock()
		return true, k.err
	default:
		return false, nil
	}
}

// Admin dials the admin API with the admin token.
func (k *Kurier) Admin(t testing.TB) adminv1.AdminServiceClient {
	t.Helper()
	return k.AdminWith(t, k.Token)
}

// AdminWith dials the admin API with the given token.
func (k *Kurier) AdminWith(t testing.TB, token string) adminv1.AdminServiceClient {
	t.Helper()
	return contract.Dial(t, k.GRPC, token)
}

// Conn dials the embedded NATS server.
func (k *Kurier) Conn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(k.NATS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
