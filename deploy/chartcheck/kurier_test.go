package chartcheck

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the kurier binary the tests build; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "chartcheck-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// kurierBinary builds kurier from this repository, in its workspace, once.
var kurierBinary = sync.OnceValues(func() (string, error) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(binDir, "kurier")
	cmd := exec.Command("go", "build", "-o", bin, "./services/cmd/kurier")
	cmd.Dir = root
	// GOWORK=off is this module's setting, not the repository's: the
	// services build in the workspace.
	cmd.Env = append(os.Environ(), "GOWORK=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build kurier: %w\n%s", err, out)
	}
	return bin, nil
})

func binary(t *testing.T) string {
	t.Helper()
	bin, err := kurierBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// flagEnv matches a flag's help: its variable and default, as
// config.withEnv and package flag print them.
var flagEnv = regexp.MustCompile(`\(env ([A-Z0-9_]+)\)(?: \(default (.*)\))?$`)

// roleFlags maps each role to the variables it reads and their defaults
// ("" where none is printed), from `kurier <role> -h`.
var (
	roleFlagsMu sync.Mutex
	roleFlagsOf = map[string]map[string]string{}
)

func roleFlags(t *testing.T, role string) map[string]string {
	t.Helper()
	roleFlagsMu.Lock()
	defer roleFlagsMu.Unlock()
	if f, ok := roleFlagsOf[role]; ok {
		return f
	}
	cmd := exec.Command(binary(t), role, "-h")
	// Defaults as printed are the environment's values: none may leak in.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kurier %s -h: %v (is %q a role?)\n%s", role, err, role, out)
	}
	flags := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if m := flagEnv.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			def := m[2]
			if s, err := strconv.Unquote(def); err == nil {
				def = s
			}
			flags[m[1]] = def
		}
	}
	if len(flags) == 0 {
		t.Fatalf("kurier %s -h lists no variable:\n%s", role, out)
	}
	roleFlagsOf[role] = flags
	return flags
}

// process is a started kurier.
type process struct {
	cmd    *exec.Cmd
	logs   syncBuffer // stderr: JSON lines
	exited chan struct{}
}

// syncBuffer is a buffer the process's output is copied into while the
// test may read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// freeAddr is a loopback address no one listens on now, for a process to
// listen on: the test then knows where it is without reading its log.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startKurier starts kurier with exactly env and waits until it answers
// /healthz at httpAddr, its HTTP listener (which env must set). It is
// stopped with SIGTERM when the test ends, and its log shown if the test
// failed.
func startKurier(t *testing.T, role, httpAddr string, env []string) {
	t.Helper()
	p := &process{exited: make(chan struct{})}
	p.cmd = exec.Command(binary(t), role)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, &p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("kurier %s log:\n%s", role, p.log())
		}
	})
	up := make(chan error, 1)
	go func() { up <- getOK(httpAddr, "/healthz", 30*time.Second) }()
	select {
	case err := <-up:
		if err != nil {
			t.Fatalf("kurier %s at %s: %v", role, httpAddr, err)
		}
	case <-p.exited:
		t.Fatalf("kurier %s exited at start: %v", role, p.cmd.ProcessState)
	}
}

func (p *process) log() string {
	p.logs.mu.Lock()
	defer p.logs.mu.Unlock()
	return p.logs.b.String()
}

// stop ends the process as Kubernetes does: SIGTERM, then SIGKILL.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(40 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("kurier did not stop within 40s of SIGTERM")
	}
}

// portOf answers the port of a listen address such as ":8080".
func portOf(addr string) (int32, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("port of %q: %w", addr, err)
	}
	return int32(n), nil
}
