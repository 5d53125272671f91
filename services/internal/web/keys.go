package web

import (
	"errors"
	"fmt"
	"net/http"

	"kurier.dev/services/internal/tenant"
)

// KeyError turns the outcome of a key check (tenant.Authenticate) into its
// answer: 401, 403, or 503 when the keys cannot be read. field, when set,
// names where the key was looked for, such as a header.
func KeyError(err error, field string) error {
	var e *Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tenant.ErrUnauthenticated):
		e = ErrUnauthenticated
	case errors.Is(err, tenant.ErrForbidden):
		e = ErrForbidden
	default:
		return fmt.Errorf("%w (%w)", &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Field: field,
			Message: "keys cannot be checked right now, retry later", RetryAfter: 1}, err)
	}
	if field == "" {
		return e
	}
	named := *e
	named.Field = field
	return &named
}
