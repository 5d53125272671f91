package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"kurier.dev/tests/harness"
)

// TestReadmeQuickstart runs README.md's quickstart as a reader pastes it:
// every block of its Quickstart section fenced as "```sh tested", in
// order, in one bash, with bin/kurierctl built from the tree, against a
// fresh `kurier all` whose data folder is ./kurier-data. Blocks fenced
// as plain "```sh" are not run: starting Kurier (the harness starts it,
// with KURIER_ALLOW_PRIVATE_TARGETS=true from the start rather than
// after a restart) and the nats CLI.
//
// A comment line right under a command, or under such a line, is output
// the command prints: each must match a line of what the commands since
// the last shown output printed, in order, with … standing for anything.
// Other comment lines (after an empty line, or the block's first) explain.
//
// The README's addresses become the test's: localhost:8080 that of the
// HTTP APIs, 127.0.0.1:9999 a free port for the webhook receiver; the
// admin API's comes as KURIER_ADMIN_SERVER.
func TestReadmeQuickstart(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the quickstart needs %s: %v", tool, err)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(harness.Kurierctl(t), filepath.Join(dir, "bin", "kurierctl")); err != nil {
		t.Fatal(err)
	}
	k := harness.Start(t, harness.Options{DataDir: filepath.Join(dir, "kurier-data"), Token: "-"})
	addresses := strings.NewReplacer(
		"localhost:8080", strings.TrimPrefix(k.HTTP, "http://"),
		"127.0.0.1:9999", freeAddr(t))
	steps := quickstart(t, addresses.Replace(string(readme)))

	// The script prints a mark after each step, so that the output of
	// each step can be told apart.
	var script strings.Builder
	script.WriteString("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n")
	for i, s := range steps {
		fmt.Fprintf(&script, "%s\nprintf '\\n%s\\n'\n", s.commands, stepMark(i))
	}
	if err := os.WriteFile(filepath.Join(dir, "quickstart.sh"), []byte(script.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "quickstart.sh")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + filepath.Join(dir, "bin") + string(os.PathListSeparator) + os.Getenv("PATH"),
		"KURIER_ADMIN_SERVER=" + k.GRPC,
		// kurierctl with the race detector would wait a second as it
		// exits, each time.
		"GORACE=atexit_sleep_ms=0 " + os.Getenv("GORACE")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KURIER_") && !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "GORACE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// SIGTERM lets bash end its background jobs, a receiver among them.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("the quickstart ran in %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("the quickstart failed: %v\nscript:\n%s\noutput:\n%s", err, script.String(), out.String())
	}

	printed := out.String()
	for i, s := range steps {
		got, rest, ok := strings.Cut(printed, "\n"+stepMark(i)+"\n")
		if !ok {
			t.Fatalf("no mark after step %d in the output:\n%s", i+1, out.String())
		}
		printed = rest
		if missing := unmatched(s.shown, strings.Split(got, "\n")); missing != "" {
			t.Errorf("README.md shows %q under\n%s\nbut the commands printed:\n%s", missing, s.commands, got)
		}
	}
}

// step is commands of the quickstart and the output the README shows
// under them.
type step struct {
	commands string
	shown    []string
}

func stepMark(i int) string { return fmt.Sprintf("--- end of quickstart step %d ---", i+1) }

// quickstart parses the tested blocks of the Quickstart section of readme
// into steps. A comment under a command, or under such a comment, is
// output; a step ends with the last of them, or with its block.
func quickstart(t *testing.T, readme string) []step {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## Quickstart\n")
	if !ok {
		t.Fatal("README.md has no section ## Quickstart")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var (
		steps           []step
		cur             step
		inBlock, tested bool
		prev            string // "command", "output", or "" for an empty or explaining line
	)
	flush := func() {
		if cur.commands != "" || cur.shown != nil {
			steps = append(steps, cur)
		}
		cur = step{}
	}
	sc := bufio.NewScanner(strings.NewReader(section))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case !inBlock && strings.HasPrefix(line, "```"):
			inBlock, prev = true, ""
			tested = strings.Join(strings.Fields(line[3:]), " ") == "sh tested"
		case inBlock && trimmed == "```":
			inBlock = false
			flush()
		case !inBlock || !tested:
		case strings.HasPrefix(trimmed, "#") && prev != "":
			cur.shown = append(cur.shown, strings.TrimSpace(trimmed[1:]))
			prev = "output"
		default:
			if prev == "output" {
				flush()
			}
			prev = "command"
			if trimmed == "" || strings.HasPrefix(trimmed, "#") {
				prev = ""
			}
			cur.commands += line + "\n"
		}
	}
	if len(steps) == 0 {
		t.Fatal("README.md's Quickstart has no ```sh tested blocks")
	}
	return steps
}

// unmatched answers the first of the shown lines that the printed lines
// lack, in order, with … in a shown line standing for anything; "" when
// all are there.
func unmatched(shown, printed []string) string {
	i := 0
	for _, want := range shown {
		parts := strings.Split(want, "…")
		for j, p := range parts {
			parts[j] = regexp.QuoteMeta(p)
		}
		re := regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
		for i < len(printed) && !re.MatchString(strings.TrimRight(printed[i], " ")) {
			i++
		}
		if i == len(printed) {
			return want
		}
		i++
	}
	return ""
}

// freeAddr answers a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}
