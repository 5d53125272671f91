package chartcheck

import (
	"bufio"
	"bytes"
	"encoding/json"
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
	mu     sync.Mutex
	logs   bytes.Buffer
	addrs  chan map[string]string // the listeners, once all wanted are logged
	exited chan struct{}
}

// startKurier starts kurier with exactly env and waits until it has logged
// the wanted listeners ("http", "grpc", "nats"), answering their
// addresses. It is stopped with SIGTERM when the test ends, and its log
// shown if the test failed.
func startKurier(t *testing.T, role string, env []string, want ...string) map[string]string {
	t.Helper()
	p := &process{addrs: make(chan map[string]string, 1), exited: make(chan struct{})}
	p.cmd = exec.Command(binary(t), role)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.readLogs(stderr, want)
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("kurier %s log:\n%s", role, p.log())
		}
	})
	select {
	case a := <-p.addrs:
		return a
	case <-p.exited:
		t.Fatalf("kurier %s exited at start: %v", role, p.cmd.ProcessState)
	case <-time.After(30 * time.Second):
		t.Fatalf("kurier %s logged no %v listener within 30s", role, want)
	}
	return nil
}

// readLogs keeps stderr and reports the listeners' addresses, which
// kurier logs as JSON lines {"msg":"<name> listening","addr":…}.
func (p *process) readLogs(r io.Reader, want []string) {
	found := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.logs.Write(sc.Bytes())
		p.logs.WriteByte('\n')
		p.mu.Unlock()
		var rec struct{ Msg, Addr string }
		if found == nil || json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if name, ok := strings.CutSuffix(rec.Msg, " listening"); ok {
			found[name] = rec.Addr
		}
		if hasAll(found, want) {
			p.addrs <- found
			found = nil
		}
	}
}

func hasAll(m map[string]string, keys []string) bool {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
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
