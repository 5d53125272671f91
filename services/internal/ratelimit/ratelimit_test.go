package ratelimit

import (
	"testing"
	"time"
)

// clock is a limiter's time, moved by the test.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func limiter(t *testing.T, r Rate) (*Limiter, *clock) {
	t.Helper()
	l, err := New(r)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l.now = c.now
	return l, c
}

// near allows for the rounding of float token counts.
func near(got, want time.Duration) bool { return got >= want && got-want < time.Microsecond }

func TestBurstThenRate(t *testing.T) {
	l, c := limiter(t, Rate{PerSecond: 4, Burst: 3})
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || !near(wait, 250*time.Millisecond) {
		t.Fatalf("past the burst: %v, wait %v; want refused, 250ms", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key is held up by the first")
	}
	c.t = c.t.Add(249 * time.Millisecond)
	if ok, wait := l.Allow("a"); ok || !near(wait, time.Millisecond) {
		t.Fatalf("1ms before the next token: %v, wait %v", ok, wait)
	}
	c.t = c.t.Add(time.Millisecond)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused once a token was due")
	}
	// A long quiet time refills no more than the burst.
	c.t = c.t.Add(time.Hour)
	n := 0
	for ok, _ := l.Allow("a"); ok; ok, _ = l.Allow("a") {
		n++
	}
	if n != 3 {
		t.Fatalf("after an hour %d requests went through at once, want the burst of 3", n)
	}
}

func TestSweepDropsFullBuckets(t *testing.T) {
	l, c := limiter(t, Rate{PerSecond: 1, Burst: 100})
	l.Allow("quiet") // the first call sweeps the empty map
	c.t = c.t.Add(sweepEvery - time.Second)
	for range 100 {
		l.Allow("busy")
	}
	c.t = c.t.Add(2 * time.Second)
	l.Allow("other") // sweeps: quiet is full again, busy has 2 of 100
	if _, ok := l.buckets["quiet"]; ok {
		t.Fatal("a bucket that filled up again was kept")
	}
	if b, ok := l.buckets["busy"]; !ok || b.tokens != 0 {
		t.Fatalf("the bucket in use was dropped or refilled: %+v", b)
	}
}

func TestOffAndInvalid(t *testing.T) {
	l, err := New(Rate{})
	if err != nil || l != nil {
		t.Fatalf("rate 0: %v %v, want no limiter", l, err)
	}
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("a nil limiter refused")
	}
	for _, r := range []Rate{{PerSecond: -1, Burst: 1}, {PerSecond: 1, Burst: 0}} {
		if _, err := New(r); err == nil {
			t.Errorf("%+v accepted", r)
		}
	}
}
