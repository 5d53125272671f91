// Package durfmt shows durations of the admin API the same way in the
// console and in kurierctl.
package durfmt

import (
	"strings"
	"time"
)

// Short formats a duration without the zero units time.Duration.String
// adds: 5m rather than 5m0s, 2h rather than 2h0m0s.
func Short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
