package dispatcher

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"kurier.dev/services/internal/subs"
)

// limits keeps each rate-limited subscription's token bucket in this
// replica. Every request of a payload subscription is made by the owner
// of its partition (a digest by the one replica its due message is out
// to), so one bucket in that replica keeps the limit across replicas. A
// partition that moves starts with a full bucket in its new owner: the
// receiver may get one burst more at a hand-over, never a higher rate.
type limits struct {
	mu sync.Mutex
	by map[string]*rate.Limiter // subscription id -> its bucket
}

func newLimits() *limits { return &limits{by: map[string]*rate.Limiter{}} }

// rateOf answers a subscription's limit and burst; burst 0 means the
// limit itself, so a second's worth may go at once.
func rateOf(sub subs.Subscription) (rate.Limit, int) {
	if sub.Mode != subs.ModePayload || sub.RateLimit <= 0 {
		return rate.Inf, 0
	}
	burst := sub.RateBurst
	if burst <= 0 {
		burst = sub.RateLimit
	}
	return rate.Limit(sub.RateLimit), burst
}

// of answers the subscription's bucket as it is set now, nil without a
// limit. A changed limit applies to the bucket's next token at once.
func (l *limits) of(sub subs.Subscription) *rate.Limiter {
	limit, burst := rateOf(sub)
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.by[sub.ID]
	switch {
	case limit == rate.Inf:
		delete(l.by, sub.ID)
		return nil
	case lim == nil:
		lim = rate.NewLimiter(limit, burst)
		l.by[sub.ID] = lim
	case lim.Limit() != limit || lim.Burst() != burst:
		now := time.Now()
		lim.SetLimitAt(now, limit)
		lim.SetBurstAt(now, burst)
	}
	return lim
}

// forget drops a deleted subscription's bucket.
func (l *limits) forget(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.by, id)
}

// admit takes a token for a request now, or answers how long until one
// is there; nil lets every request go.
func admit(lim *rate.Limiter, now time.Time) time.Duration {
	if lim == nil || lim.AllowN(now, 1) {
		return 0
	}
	wait := time.Duration((1 - lim.TokensAt(now)) / float64(lim.Limit()) * float64(time.Second))
	return max(wait, time.Millisecond)
}

// await waits for a token, for the deliveries made one after another: an
// ordered walk, in a goroutine of its own, and a digest, whose first POST
// of the day finds a full bucket and whose further parts (past 10,000
// events) wait at most a second each in their digest's slot.
func await(ctx context.Context, l *limits, sub subs.Subscription) error {
	lim := l.of(sub)
	if lim == nil {
		return nil
	}
	return lim.Wait(ctx)
}
