// Package config binds command-line flags to environment variables, so that
// every setting can come from either: a flag given on the command line wins,
// then the variable, then the default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Set is a flag set whose flags also read environment variables.
type Set struct {
	fs   *flag.FlagSet
	errs []error // malformed environment values, reported by Parse
}

// New makes an empty set for the named command.
func New(name string) *Set {
	return &Set{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
}

// FlagSet gives the underlying flag set, for usage output.
func (s *Set) FlagSet() *flag.FlagSet { return s.fs }

func (s *Set) env(env string) (string, bool) {
	if env == "" {
		return "", false
	}
	return os.LookupEnv(env)
}

func (s *Set) bad(env, v string, err error) {
	s.errs = append(s.errs, fmt.Errorf("%s=%q: %w", env, v, err))
}

// String defines a string setting.
func (s *Set) String(p *string, name, env, def, usage string) {
	if v, ok := s.env(env); ok {
		def = v
	}
	s.fs.StringVar(p, name, def, withEnv(usage, env))
}

// Secret defines a string setting whose value is never shown: usage
// output (-h, or after a mistyped flag) gives no default for it.
func (s *Set) Secret(p *string, name, env, usage string) {
	s.String(p, name, env, "", usage)
	s.fs.Lookup(name).DefValue = ""
}

// Count defines an integer setting of at least min, from the environment
// as from a flag.
func (s *Set) Count(p *int, name, env string, def, min int, usage string) {
	*p = def
	c := &count{p: p, min: min}
	if v, ok := s.env(env); ok {
		if err := c.Set(v); err != nil {
			s.bad(env, v, err)
		}
	}
	s.fs.Var(c, name, withEnv(usage, env))
}

type count struct {
	p   *int
	min int
}

func (c *count) String() string {
	if c == nil || c.p == nil {
		return "0"
	}
	return strconv.Itoa(*c.p)
}

func (c *count) Set(v string) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	switch {
	case err != nil:
		return errors.New("must be a whole number")
	case n < c.min:
		return fmt.Errorf("must be at least %d", c.min)
	}
	*c.p = n
	return nil
}

// Bool defines a switch: true, false, 1 or 0.
func (s *Set) Bool(p *bool, name, env string, def bool, usage string) {
	if v, ok := s.env(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.bad(env, v, err)
		}
		def = b
	}
	s.fs.BoolVar(p, name, def, withEnv(usage, env))
}

// Duration defines a positive duration setting such as "90s" or "1m":
// every duration Kurier takes is a wait, a lifetime or an interval, which
// zero or less would turn off or make fire at once.
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	*p = def
	if v, ok := s.env(env); ok {
		if err := (*duration)(p).Set(v); err != nil {
			s.bad(env, v, err)
		}
	}
	s.fs.Var((*duration)(p), name, withEnv(usage, env))
}

type duration time.Duration

func (d *duration) String() string { return time.Duration(*d).String() }

func (d *duration) Set(v string) error {
	n, err := time.ParseDuration(strings.TrimSpace(v))
	switch {
	case err != nil:
		return errors.New(`must be a duration such as "90s", "15m" or "24h"`)
	case n <= 0:
		return errors.New("must be positive")
	}
	*d = duration(n)
	return nil
}

// Bytes defines a positive size in bytes: a whole number, optionally
// followed by K, M, G or T (each may be followed by "i", "iB" or "B"), which are
// powers of 1024 as in nats-server's configuration.
func (s *Set) Bytes(p *int64, name, env string, def int64, usage string) {
	*p = def
	if v, ok := s.env(env); ok {
		if err := (*byteSize)(p).Set(v); err != nil {
			s.bad(env, v, err)
		}
	}
	s.fs.Var((*byteSize)(p), name, withEnv(usage, env))
}

type byteSize int64

// units are the suffixes a size may have, by their upper-case spelling.
var units = map[string]int64{
	"": 1, "B": 1,
	"K": 1 << 10, "KB": 1 << 10, "KI": 1 << 10, "KIB": 1 << 10,
	"M": 1 << 20, "MB": 1 << 20, "MI": 1 << 20, "MIB": 1 << 20,
	"G": 1 << 30, "GB": 1 << 30, "GI": 1 << 30, "GIB": 1 << 30,
	"T": 1 << 40, "TB": 1 << 40, "TI": 1 << 40, "TIB": 1 << 40,
}

func (b *byteSize) String() string {
	for _, u := range []string{"T", "G", "M", "K"} {
		if n := int64(*b); n != 0 && n%units[u] == 0 {
			return strconv.FormatInt(n/units[u], 10) + u + "iB"
		}
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(v string) error {
	v = strings.TrimSpace(v)
	unit := strings.TrimLeft(v, "0123456789")
	mult, ok := units[strings.ToUpper(unit)]
	n, err := strconv.ParseInt(v[:len(v)-len(unit)], 10, 64)
	switch {
	case !ok, err != nil && !errors.Is(err, strconv.ErrRange):
		return errors.New("must be a whole number of bytes, optionally followed by K, M, G or T")
	case err != nil, n > math.MaxInt64/mult:
		return errors.New("is too large")
	case n == 0:
		return errors.New("must be positive")
	}
	*b = byteSize(n * mult)
	return nil
}

// Parse reads the arguments; it reports malformed environment values too.
func (s *Set) Parse(args []string) error {
	if len(s.errs) > 0 {
		return s.errs[0]
	}
	return s.fs.Parse(args)
}

func withEnv(usage, env string) string {
	if env == "" {
		return usage
	}
	return usage + " (env " + env + ")"
}
