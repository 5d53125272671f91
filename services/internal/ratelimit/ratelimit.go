// Package ratelimit limits the requests of each API key (or queue secret)
// with a token bucket per key, held in the process's memory. Nothing is
// shared between processes: each replica of a service, and each service
// of `kurier all`, lets a key through at the full rate on its own.
package ratelimit

import (
	"errors"
	"math"
	"sync"
	"time"
)

// Rate is how fast one key may send requests.
type Rate struct {
	PerSecond int // requests per second, sustained; 0 turns limiting off
	Burst     int // requests a key that was quiet may send at once
}

// Default is the rate Kurier runs with unless told otherwise: generous
// enough that only a runaway client meets it.
var Default = Rate{PerSecond: 1000, Burst: 2000}

// sweepEvery is how often buckets that have filled up again are dropped:
// a full bucket is what a key without one gets, so dropping it loses
// nothing and keeps the map to the keys in use.
const sweepEvery = time.Minute

// Limiter holds one token bucket per key. A nil *Limiter lets everything
// through, which is what a zero Rate makes.
type Limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex // guards buckets and swept
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

// New makes a limiter for r; nil (no limit) when r.PerSecond is 0.
func New(r Rate) (*Limiter, error) {
	switch {
	case r.PerSecond == 0:
		return nil, nil
	case r.PerSecond < 0:
		return nil, errors.New("rate limit: requests per second must be 0 (off) or more")
	case r.Burst < 1:
		return nil, errors.New("rate limit: the burst must be at least 1 request")
	}
	return &Limiter{rate: float64(r.PerSecond), burst: float64(r.Burst), now: time.Now,
		buckets: map[string]*bucket{}}, nil
}

// Allow takes one request of key. When the key has none left it answers
// false and how long until it has one again.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration(math.Ceil((1 - b.tokens) / l.rate * float64(time.Second)))
}

// sweep drops the buckets that are full again, at most once a sweepEvery.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.swept) < sweepEvery {
		return
	}
	l.swept = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}
