package admin

import (
	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/subs"
)

// maxRate bounds rate_limit_per_second and rate_limit_burst: one
// dispatcher replica delivers about 11,000 requests a second in all
// (BENCHMARKS.md), so a higher limit would limit nothing.
const maxRate = 10000

// checkRate checks a payload subscription's rate limit.
func checkRate(sub subs.Subscription) error {
	switch {
	case sub.RateLimit < 0 || sub.RateLimit > maxRate:
		return invalid("rate_limit_per_second", "must be from 0 (no limit) to %d", maxRate)
	case sub.RateBurst < 0 || sub.RateBurst > maxRate:
		return invalid("rate_limit_burst", "must be from 0 (the limit itself) to %d", maxRate)
	case sub.RateBurst > 0 && sub.RateLimit == 0:
		return invalid("rate_limit_burst", "needs rate_limit_per_second: without a limit there is nothing to burst past")
	}
	return nil
}

// rateOfMode refuses a rate limit on a ping subscription, which makes at
// most one request per notify delay already, and on a queue one, which
// makes no requests; read from the request, as such fields are not
// otherwise taken from it for those modes.
func rateOfMode(mode subs.Mode, in *adminv1.Subscription) error {
	if mode == subs.ModePayload {
		return nil
	}
	why := "a ping subscription is called at most once per notify delay already"
	if mode == subs.ModeQueue {
		why = "a queue subscription makes no requests: its events go into its queue"
	}
	switch {
	case in.GetRateLimitPerSecond() != 0:
		return invalid("rate_limit_per_second", "%s", why)
	case in.GetRateLimitBurst() != 0:
		return invalid("rate_limit_burst", "%s", why)
	}
	return nil
}
