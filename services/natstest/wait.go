package natstest

import (
	"errors"
	"testing"
	"time"
)

// pollEvery is how often the waits look again: often enough that a test
// waits little longer than the state takes to change.
const pollEvery = 20 * time.Millisecond

// WaitFor polls done until it holds, failing the test with what it waited
// for if that takes longer than within.
func WaitFor(t testing.TB, within time.Duration, what string, done func() bool) {
	t.Helper()
	WaitForErr(t, within, what, func() error {
		if done() {
			return nil
		}
		return errNotYet
	})
}

// errNotYet is WaitFor's answer while done does not hold: it has nothing
// to add to what was waited for.
var errNotYet = errors.New("not yet")

// WaitForErr polls check until it returns nil, failing the test if that
// takes longer than within. The failure names what it waited for and the
// last error, so a check that says what it saw ("3 of 5 deliveries")
// tells how far the wait got.
func WaitForErr(t testing.TB, within time.Duration, what string, check func() error) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(pollEvery) {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			if errors.Is(err, errNotYet) {
				t.Fatalf("waited %v for %s", within, what)
			}
			t.Fatalf("waited %v for %s: %v", within, what, err)
		}
	}
}
