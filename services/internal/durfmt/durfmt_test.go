package durfmt

import (
	"testing"
	"time"
)

func TestShort(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                             "0s",
		1500 * time.Millisecond:       "1.5s",
		15 * time.Second:              "15s",
		5 * time.Minute:               "5m",
		90 * time.Second:              "1m30s",
		2 * time.Hour:                 "2h",
		2*time.Hour + 30*time.Minute:  "2h30m",
		2*time.Hour + 5*time.Second:   "2h0m5s",
		26*time.Hour + 10*time.Minute: "26h10m",
	} {
		if got := Short(d); got != want {
			t.Errorf("Short(%v) = %q, want %q", d, got, want)
		}
	}
}
