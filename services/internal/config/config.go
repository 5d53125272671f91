// Package config binds command-line flags to environment variables, so that
// every setting can come from either: a flag given on the command line wins,
// then the variable, then the default.
package config

import (
	"flag"
	"fmt"
	"os"
	"strconv"
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

// Int defines an integer setting.
func (s *Set) Int(p *int, name, env string, def int, usage string) {
	if v, ok := s.env(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.bad(env, v, err)
		}
		def = n
	}
	s.fs.IntVar(p, name, def, withEnv(usage, env))
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

// Duration defines a duration setting such as "90s" or "1m".
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, ok := s.env(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.bad(env, v, err)
		}
		def = d
	}
	s.fs.DurationVar(p, name, def, withEnv(usage, env))
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
