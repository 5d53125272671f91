package web

import (
	"net/http"
	"time"

	"kurier.dev/services/internal/ratelimit"
)

// Limit takes one request of key (a key id, or a queue's) from l: nil, or
// 429 with Retry-After in whole seconds. field names where the caller put
// its credential, such as a header.
func Limit(l *ratelimit.Limiter, key, field string) error {
	ok, wait := l.Allow(key)
	if ok {
		return nil
	}
	secs := int((wait + time.Second - 1) / time.Second)
	return &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Field: field, RetryAfter: secs,
		Message: "too many requests with this credential; retry after the seconds Retry-After says"}
}
