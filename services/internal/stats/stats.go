// Package stats is the delivery statistics: attempts rolled up per
// subscription and hour in STATS, and per subscription and minute in
// STATS_MINUTES. The dispatcher writes rollups (each replica its own, so a
// subscription whose partition moved has several); admin reads and sums
// them, which gives the same figures whichever replica reads.
//
// Latencies are counted in fixed log-spaced buckets, four to a doubling
// from 1 ms (each bucket 19% wider than the one before) up to 2^18 ms
// (about 4.4 min), so rollups add up exactly and a percentile of a sum is
// exact to its bucket: it is answered as the bucket's upper bound, at most
// 19% above the true value.
package stats

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Class is what an attempt came to.
type Class int

const (
	Success    Class = iota // answered 2xx
	Connection              // no connection: refused, DNS, TLS, a target not allowed, a request that could not be made
	Timeout                 // no answer in time
	Client                  // answered 4xx
	Server                  // answered 5xx
	Other                   // answered otherwise (1xx, 3xx): a failure of no class
)

// ClassOf classifies an answer's status, or an attempt without one (status
// 0) by whether it timed out.
func ClassOf(status int, timedOut bool) Class {
	switch {
	case status == 0 && timedOut:
		return Timeout
	case status == 0:
		return Connection
	case status >= 200 && status < 300:
		return Success
	case status >= 400 && status < 500:
		return Client
	case status >= 500 && status < 600:
		return Server
	}
	return Other
}

// Buckets is the number of latency buckets: under 1 ms, 72 of a quarter
// doubling each, and 2^18 ms or more. Changing it, or the bounds, misreads
// the rollups already stored.
const Buckets = 74

// bucketOf answers the bucket a latency falls in.
func bucketOf(d time.Duration) int {
	if d < time.Millisecond {
		return 0
	}
	i := 1 + int(4*math.Log2(float64(d)/float64(time.Millisecond)))
	return min(i, Buckets-1)
}

// upper is the latency a bucket is reported as: its upper bound (the
// last bucket's lower one, since it has none).
func upper(i int) time.Duration {
	return time.Duration(float64(time.Millisecond) * math.Exp2(float64(min(i, Buckets-2))/4)).Round(time.Microsecond)
}

// Rollup sums attempts over a span that starts at Start.
type Rollup struct {
	Start                    time.Time
	Attempts, Successes      uint64
	Connection, Timeout      uint64
	Client, Server           uint64
	LastSuccess, LastFailure time.Time
	Latency                  [Buckets]uint64 // of answered attempts
}

// Add counts an attempt made at at that took took.
func (r *Rollup) Add(c Class, at time.Time, took time.Duration) {
	r.Attempts++
	switch c {
	case Success:
		r.Successes++
	case Connection:
		r.Connection++
	case Timeout:
		r.Timeout++
	case Client:
		r.Client++
	case Server:
		r.Server++
	}
	if c == Success {
		r.LastSuccess = later(r.LastSuccess, at)
	} else {
		r.LastFailure = later(r.LastFailure, at)
	}
	if c != Connection && c != Timeout {
		r.Latency[bucketOf(took)]++
	}
}

// Merge adds o's attempts to r's.
func (r *Rollup) Merge(o *Rollup) {
	r.Attempts += o.Attempts
	r.Successes += o.Successes
	r.Connection += o.Connection
	r.Timeout += o.Timeout
	r.Client += o.Client
	r.Server += o.Server
	r.LastSuccess = later(r.LastSuccess, o.LastSuccess)
	r.LastFailure = later(r.LastFailure, o.LastFailure)
	for i, n := range o.Latency {
		r.Latency[i] += n
	}
}

// Failures counts the attempts that did not succeed, of any class.
func (r *Rollup) Failures() uint64 { return r.Attempts - r.Successes }

// Quantile answers the latency that a share q (0 to 1) of the answered
// attempts took at most, to its bucket; 0 when none was answered.
func (r *Rollup) Quantile(q float64) time.Duration {
	var total uint64
	for _, n := range r.Latency {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(total))), 1)
	var seen uint64
	for i, n := range r.Latency {
		if seen += n; seen >= rank {
			return upper(i)
		}
	}
	return upper(Buckets - 1)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// wire is a rollup as stored: latencies sparse, as [bucket, count] pairs,
// since an attempt's latencies fill few buckets.
type wire struct {
	Start       int64       `json:"start"` // Unix seconds
	Attempts    uint64      `json:"attempts,omitempty"`
	Successes   uint64      `json:"successes,omitempty"`
	Connection  uint64      `json:"connection,omitempty"`
	Timeout     uint64      `json:"timeout,omitempty"`
	Client      uint64      `json:"4xx,omitempty"`
	Server      uint64      `json:"5xx,omitempty"`
	LastSuccess int64       `json:"last_success,omitempty"` // Unix milliseconds
	LastFailure int64       `json:"last_failure,omitempty"`
	Latency     [][2]uint64 `json:"latency,omitempty"`
}

// Encode is the rollup as stored.
func (r *Rollup) Encode() ([]byte, error) {
	w := wire{Start: r.Start.Unix(), Attempts: r.Attempts, Successes: r.Successes, Connection: r.Connection,
		Timeout: r.Timeout, Client: r.Client, Server: r.Server, LastSuccess: unixMilli(r.LastSuccess), LastFailure: unixMilli(r.LastFailure)}
	for i, n := range r.Latency {
		if n > 0 {
			w.Latency = append(w.Latency, [2]uint64{uint64(i), n})
		}
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode rollup: %w", err)
	}
	return b, nil
}

// Decode reads a stored rollup.
func Decode(data []byte) (Rollup, error) {
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return Rollup{}, fmt.Errorf("decode rollup: %w", err)
	}
	r := Rollup{Start: time.Unix(w.Start, 0).UTC(), Attempts: w.Attempts, Successes: w.Successes, Connection: w.Connection,
		Timeout: w.Timeout, Client: w.Client, Server: w.Server, LastSuccess: fromMilli(w.LastSuccess), LastFailure: fromMilli(w.LastFailure)}
	for _, p := range w.Latency {
		if p[0] >= Buckets {
			return Rollup{}, fmt.Errorf("decode rollup: latency bucket %d of %d", p[0], Buckets)
		}
		r.Latency[p[0]] += p[1]
	}
	return r, nil
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
