package config_test

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"kurier.dev/services/internal/config"
)

// setEnv sets or (with unset) removes a variable for the test's duration.
func setEnv(t *testing.T, name, value string, unset bool) {
	t.Helper()
	t.Setenv(name, value) // restores the old state at the end of the test
	if unset {
		if err := os.Unsetenv(name); err != nil {
			t.Fatal(err)
		}
	}
}

func newSet() *config.Set {
	s := config.New("test")
	s.FlagSet().SetOutput(io.Discard)
	return s
}

// precedence is one row of the flag > env > default table; env "" with
// unset false means the variable is set to the empty string.
type precedence struct {
	name  string
	env   string
	unset bool
	args  []string
}

var precedenceCases = []struct {
	precedence
	want string // "default", "env" or "flag"
}{
	{precedence{name: "default only", unset: true}, "default"},
	{precedence{name: "env beats default", env: "ENV"}, "env"},
	{precedence{name: "flag beats default", unset: true, args: []string{"-x=FLAG"}}, "flag"},
	{precedence{name: "flag beats env", env: "ENV", args: []string{"-x=FLAG"}}, "flag"},
	{precedence{name: "flag beats env, two-argument form", env: "ENV", args: []string{"-x", "FLAG"}}, "flag"},
	{precedence{name: "last flag wins", env: "ENV", args: []string{"-x=OTHER", "--x=FLAG"}}, "flag"},
}

func TestStringPrecedence(t *testing.T) {
	values := map[string]string{"default": "from-default", "ENV": "from-env", "FLAG": "from-flag", "OTHER": "other"}
	want := map[string]string{"default": "from-default", "env": "from-env", "flag": "from-flag"}
	for _, tt := range precedenceCases {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, "KURIER_TEST_STRING", values[tt.env], tt.unset)
			s := newSet()
			var got string
			s.String(&got, "x", "KURIER_TEST_STRING", values["default"], "a string")
			if err := s.Parse(subst(tt.args, values)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != want[tt.want] {
				t.Errorf("got %q, want %q (the %s value)", got, want[tt.want], tt.want)
			}
		})
	}
}

func TestCountPrecedence(t *testing.T) {
	values := map[string]string{"default": "1", "ENV": "22", "FLAG": "333", "OTHER": "4"}
	want := map[string]int{"default": 1, "env": 22, "flag": 333}
	for _, tt := range precedenceCases {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, "KURIER_TEST_INT", values[tt.env], tt.unset)
			s := newSet()
			var got int
			s.Count(&got, "x", "KURIER_TEST_INT", 1, 0, "an int")
			if err := s.Parse(subst(tt.args, values)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != want[tt.want] {
				t.Errorf("got %d, want %d (the %s value)", got, want[tt.want], tt.want)
			}
		})
	}
}

func TestDurationPrecedence(t *testing.T) {
	values := map[string]string{"default": "1s", "ENV": "90s", "FLAG": "2m30s", "OTHER": "1h"}
	want := map[string]time.Duration{"default": time.Second, "env": 90 * time.Second, "flag": 150 * time.Second}
	for _, tt := range precedenceCases {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, "KURIER_TEST_DURATION", values[tt.env], tt.unset)
			s := newSet()
			var got time.Duration
			s.Duration(&got, "x", "KURIER_TEST_DURATION", time.Second, "a duration")
			if err := s.Parse(subst(tt.args, values)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != want[tt.want] {
				t.Errorf("got %v, want %v (the %s value)", got, want[tt.want], tt.want)
			}
		})
	}
}

func TestBytesPrecedence(t *testing.T) {
	values := map[string]string{"default": "1", "ENV": "2K", "FLAG": "3MiB", "OTHER": "4"}
	want := map[string]int64{"default": 1 << 30, "env": 2 << 10, "flag": 3 << 20}
	for _, tt := range precedenceCases {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, "KURIER_TEST_BYTES", values[tt.env], tt.unset)
			s := newSet()
			var got int64
			s.Bytes(&got, "x", "KURIER_TEST_BYTES", 1<<30, "a size")
			if err := s.Parse(subst(tt.args, values)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != want[tt.want] {
				t.Errorf("got %d, want %d (the %s value)", got, want[tt.want], tt.want)
			}
		})
	}
}

// TestBytesUnits: sizes read as nats-server reads them, in powers of 1024,
// and the default is shown in the largest unit that holds it whole.
func TestBytesUnits(t *testing.T) {
	for in, want := range map[string]int64{
		"1": 1, "1500": 1500, "7B": 7, "64k": 64 << 10, "64KB": 64 << 10, "64KiB": 64 << 10,
		"512M": 512 << 20, "512mib": 512 << 20, " 1G ": 1 << 30, "1GB": 1 << 30, "2GiB": 2 << 30, "1T": 1 << 40, "3TiB": 3 << 40,
	} {
		setEnv(t, "KURIER_TEST_BYTES", in, false)
		s := newSet()
		var got int64
		s.Bytes(&got, "x", "KURIER_TEST_BYTES", 1, "")
		if err := s.Parse(nil); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for def, shown := range map[int64]string{1 << 30: "1GiB", 512 << 20: "512MiB", 1536 << 20: "1536MiB", 1000: "1000", 3 << 40: "3TiB"} {
		s := newSet()
		var v int64
		s.Bytes(&v, "x", "", def, "")
		if got := s.FlagSet().Lookup("x").DefValue; got != shown {
			t.Errorf("default %d shown as %q, want %q", def, got, shown)
		}
	}
}

// TestBadBytes: a size that is not one, or not positive, is an error that
// names the variable (or the flag) and changes nothing.
func TestBadBytes(t *testing.T) {
	for _, v := range []string{"", "abc", "-1", "0", "0K", "1.5G", "1 G", "1P", "1KiBB", "G", "1e9", "9223372036854775808", "8388608T"} {
		setEnv(t, "KURIER_X", v, false)
		s := newSet()
		var got int64
		s.Bytes(&got, "n", "KURIER_X", 5, "")
		err := s.Parse(nil)
		if err == nil || !strings.Contains(err.Error(), "KURIER_X") {
			t.Errorf("KURIER_X=%q: Parse gave %v, want an error naming KURIER_X", v, err)
		}
		if got != 5 {
			t.Errorf("KURIER_X=%q: value %d, want the default 5 untouched", v, got)
		}
		s = newSet()
		s.Bytes(&got, "n", "", 5, "")
		if err := s.Parse([]string{"-n=" + v}); err == nil || !strings.Contains(err.Error(), "-n") {
			t.Errorf("-n=%q: Parse gave %v, want an error naming -n", v, err)
		}
	}
}

// subst replaces the placeholders FLAG and OTHER in args.
func subst(args []string, values map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		a = strings.ReplaceAll(a, "FLAG", values["FLAG"])
		out[i] = strings.ReplaceAll(a, "OTHER", values["OTHER"])
	}
	return out
}

// TestSeveralSettings: settings of each kind side by side, each from its
// own source.
func TestSeveralSettings(t *testing.T) {
	setEnv(t, "KURIER_TEST_ADDR", ":9000", false)
	setEnv(t, "KURIER_TEST_WORKERS", "8", false)
	setEnv(t, "KURIER_TEST_TIMEOUT", "", true)
	s := newSet()
	var (
		addr    string
		workers int
		timeout time.Duration
		name    string
	)
	s.String(&addr, "addr", "KURIER_TEST_ADDR", ":8080", "listen address")
	s.Count(&workers, "workers", "KURIER_TEST_WORKERS", 2, 0, "workers")
	s.Duration(&timeout, "timeout", "KURIER_TEST_TIMEOUT", 5*time.Second, "timeout")
	s.String(&name, "name", "", "kurier", "no variable")
	if err := s.Parse([]string{"-workers=16", "rest", "-addr=:1"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if addr != ":9000" { // "-addr=:1" comes after a positional argument
		t.Errorf("addr = %q, want :9000 from the environment", addr)
	}
	if workers != 16 {
		t.Errorf("workers = %d, want 16 from the flag", workers)
	}
	if timeout != 5*time.Second {
		t.Errorf("timeout = %v, want the default 5s", timeout)
	}
	if name != "kurier" {
		t.Errorf("name = %q, want the default", name)
	}
	if got := s.FlagSet().Args(); len(got) != 2 || got[0] != "rest" {
		t.Errorf("Args() = %q, want [rest -addr=:1]", got)
	}
}

func TestMalformedEnv(t *testing.T) {
	tests := []struct {
		name   string
		value  string
		define func(s *config.Set, env string)
	}{
		{"int abc", "abc", func(s *config.Set, env string) { var v int; s.Count(&v, "n", env, 3, 0, "") }},
		{"int float", "1.5", func(s *config.Set, env string) { var v int; s.Count(&v, "n", env, 3, 0, "") }},
		{"int empty", "", func(s *config.Set, env string) { var v int; s.Count(&v, "n", env, 3, 0, "") }},
		{"int overflow", "99999999999999999999", func(s *config.Set, env string) { var v int; s.Count(&v, "n", env, 3, 0, "") }},
		{"duration abc", "abc", func(s *config.Set, env string) { var v time.Duration; s.Duration(&v, "d", env, time.Second, "") }},
		{"duration without unit", "90", func(s *config.Set, env string) { var v time.Duration; s.Duration(&v, "d", env, time.Second, "") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const env = "KURIER_X"
			setEnv(t, env, tt.value, false)
			s := newSet()
			tt.define(s, env)
			err := s.Parse(nil)
			if err == nil {
				t.Fatalf("%s=%q: Parse gave no error", env, tt.value)
			}
			if !strings.Contains(err.Error(), env) {
				t.Errorf("error %q does not name %s", err, env)
			}
			if tt.value != "" && !strings.Contains(err.Error(), tt.value) {
				t.Errorf("error %q does not quote the value %q", err, tt.value)
			}
		})
	}
}

// TestMalformedEnvNamesTheRightVariable: with a good and a bad variable,
// the error is about the bad one.
func TestMalformedEnvNamesTheRightVariable(t *testing.T) {
	setEnv(t, "KURIER_GOOD", "5", false)
	setEnv(t, "KURIER_BAD", "five", false)
	s := newSet()
	var a, b int
	s.Count(&a, "a", "KURIER_GOOD", 0, 0, "")
	s.Count(&b, "b", "KURIER_BAD", 0, 0, "")
	err := s.Parse(nil)
	if err == nil {
		t.Fatal("Parse gave no error")
	}
	if !strings.Contains(err.Error(), "KURIER_BAD") || strings.Contains(err.Error(), "KURIER_GOOD") {
		t.Errorf("error %q should name KURIER_BAD only", err)
	}
}

func TestBadFlag(t *testing.T) {
	for _, args := range [][]string{{"-n=abc"}, {"-d=abc"}, {"-unknown"}} {
		s := newSet()
		var n int
		var d time.Duration
		s.Count(&n, "n", "", 0, 0, "")
		s.Duration(&d, "d", "", 0, "")
		if err := s.Parse(args); err == nil {
			t.Errorf("Parse(%q): no error", args)
		}
	}
}

// TestUsageNamesVariable: the usage text tells which variable a flag reads,
// and the default shown is the one in effect.
func TestUsageNamesVariable(t *testing.T) {
	setEnv(t, "KURIER_TEST_PORT", "7000", false)
	s := newSet()
	var port int
	var name string
	s.Count(&port, "port", "KURIER_TEST_PORT", 8080, 0, "port to listen on")
	s.String(&name, "name", "", "x", "a name")
	f := s.FlagSet().Lookup("port")
	if f == nil {
		t.Fatal("no flag port")
	}
	if f.Usage != "port to listen on (env KURIER_TEST_PORT)" {
		t.Errorf("usage = %q", f.Usage)
	}
	if f.DefValue != "7000" {
		t.Errorf("DefValue = %q, want 7000 from the environment", f.DefValue)
	}
	if u := s.FlagSet().Lookup("name").Usage; u != "a name" {
		t.Errorf("usage without a variable = %q, want %q", u, "a name")
	}
}
