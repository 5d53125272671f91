package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// completionCases are command lines, the last word the one being
// completed, and what completing it offers.
var completionCases = []struct {
	line string
	want string // space-separated, in any order
}{
	{"kurierctl sub c", "create"},
	{"kurierctl sub create --mo", "--mode"},
	{"kurierctl sub create --mode ", "payload ping queue"},
	{"kurierctl --server x:1 --tls sub create --inactive --name n --mode p", "payload ping"},
	{"kurierctl -o ", "json table"},
	{"kurierctl key create --scope ", "addressbook changes ingest partner"},
	{"kurierctl sub update 0123 --format ", "flat standard"},
	{"kurierctl person create --mode ", "legacy token"},
	{"kurierctl org update acme --addressbook-sync --n", "--name"},
	{"kurierctl sub create --timeout 5s --ordered --in", "--inactive"},
	{"kurierctl completion ", "bash fish zsh"},
	{"kurierctl completion bash ", ""},
	{"kurierctl apply -f no", "notes.csv"},
	{"kurierctl deliv", "deliveries"},
	{"kurierctl deliveries list --org acme --outcome d", "dead delivered disabled dropped"},
	{"kurierctl deliveries tail --outcome ", "dead delivered disabled dropped retry test"},
	{"kurierctl deliveries list --un", "--until"},
	{"kurierctl person b", "book"},
}

// completionDir is a directory with one file, notes.csv, for the cases
// that complete file names.
func completionDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.csv"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runShell runs script in shell, in dir, and answers its output lines.
func runShell(t *testing.T, shell, dir, script string) []string {
	t.Helper()
	path, err := exec.LookPath(shell)
	if err != nil {
		t.Skipf("%s is not installed", shell)
	}
	cmd := exec.Command(path, "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", shell, err, out)
	}
	return lines(string(out))
}

// checkCompletions compares what a shell offered, a line per case, with
// the cases.
func checkCompletions(t *testing.T, shell string, got []string) {
	t.Helper()
	if len(got) != len(completionCases) {
		t.Fatalf("%s answered %d lines for %d cases:\n%s", shell, len(got), len(completionCases), strings.Join(got, "\n"))
	}
	for i, c := range completionCases {
		offered := strings.Fields(got[i])
		slices.Sort(offered)
		if strings.Join(offered, " ") != c.want {
			t.Errorf("%s: %q offers %q, want %q", shell, c.line, strings.Join(offered, " "), c.want)
		}
	}
}

// script writes kurierctl's completion script for shell to a file.
func script(t *testing.T, shell string) string {
	t.Helper()
	r := ctl(t, "completion", shell).ok(t)
	path := filepath.Join(t.TempDir(), "kurierctl."+shell)
	if err := os.WriteFile(path, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Bash runs the completion function as it does on Tab, with the words as
// bash splits them (at "=" too).
func TestCompletionBash(t *testing.T) {
	var s strings.Builder
	s.WriteString("source " + shq(script(t, "bash")) + " || exit 1\n" +
		`c() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _kurierctl; echo "${COMPREPLY[*]}"; }` + "\n")
	line := func(l string) {
		words := strings.Split(l, " ")
		s.WriteString("c " + strings.Join(quote(shq, words), " ") + "\n")
	}
	for _, c := range completionCases {
		line(c.line)
	}
	checkCompletions(t, "bash", runShell(t, "bash", completionDir(t), s.String()))

	// --mode=p arrives as --mode, =, p.
	got := runShell(t, "bash", t.TempDir(), s.String()[:strings.Index(s.String(), "\nc ")+1]+
		"c kurierctl sub create --mode = p\nc kurierctl sub create --mode =\nc kurierctl sub create --inactive = false --mo\n")
	if strings.Join(got, "|") != "ping payload|ping payload queue|--mode" {
		t.Errorf("bash with --flag=value: %q", got)
	}
}

// Zsh: sourced after compinit, the script registers its function; the
// function, with the completion builtins it calls stood in for, offers
// what the cases want.
func TestCompletionZsh(t *testing.T) {
	path := script(t, "zsh")
	got := runShell(t, "zsh", t.TempDir(), "autoload -U compinit && compinit -u -D && source "+shq(path)+" && print -r -- $_comps[kurierctl]")
	if strings.Join(got, "|") != "_kurierctl" {
		t.Fatalf("zsh after sourcing: kurierctl completes with %q", got)
	}
	var s strings.Builder
	s.WriteString(`compdef() { :; }
source ` + shq(path) + ` || exit 1
offer() { local w; for w in "$@"; do [[ $w == $PREFIX* ]] && print -rn -- "$w "; done; }
_describe() { local -a l; l=("${(@P)4}"); offer "${(@)l%%:*}"; }
compadd() { local -a l; l=("${(@P)2}"); offer "${l[@]}"; }
_files() { offer *(N); }
compset() { PREFIX=${PREFIX#*=}; }
c() { words=("$@"); CURRENT=$#; PREFIX=${words[CURRENT]}; _kurierctl; print; }
`)
	for _, c := range completionCases {
		s.WriteString("c " + strings.Join(quote(shq, strings.Split(c.line, " ")), " ") + "\n")
	}
	checkCompletions(t, "zsh", runShell(t, "zsh", completionDir(t), s.String()))
	if got := runShell(t, "zsh", t.TempDir(), s.String()[:strings.Index(s.String(), "\nc ")+1]+"c kurierctl sub create --mode=p\n"); strings.Join(got, "|") != "ping payload " {
		t.Errorf("zsh with --mode=p: %q", got)
	}
}

// Fish completes the cases itself, from the script's complete commands.
func TestCompletionFish(t *testing.T) {
	var s strings.Builder
	s.WriteString("source " + fishq(script(t, "fish")) + "; or exit 1\n")
	for _, c := range completionCases {
		s.WriteString("set -l r (complete -C " + fishq(c.line) + " | string replace -r '\\t.*' ''); echo \"$r\"\n")
	}
	checkCompletions(t, "fish", runShell(t, "fish", completionDir(t), s.String()))
}

// The words of flags name flags there are.
func TestCompletionWordsNameFlags(t *testing.T) {
	for path, words := range flagWords {
		fs := newFlagSet(path)
		if path == "" {
			var g globals
			g.bind(fs)
		} else {
			i := slices.IndexFunc(commands, func(c *command) bool { return c.path == path })
			if i < 0 {
				t.Errorf("flagWords names command %q, which there is not", path)
				continue
			}
			commands[i].setup(fs)
		}
		for name := range words {
			if fs.Lookup(name) == nil {
				t.Errorf("flagWords names --%s of %q, which it does not have", name, path)
			}
		}
	}
	for path := range argWords {
		if !slices.ContainsFunc(commands, func(c *command) bool { return c.path == path && len(c.args) == 1 }) {
			t.Errorf("argWords names %q, which is no command of one argument", path)
		}
	}
}
