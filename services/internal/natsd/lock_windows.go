package natsd

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// errTaken: another process holds the lock.
var errTaken = windows.ERROR_LOCK_VIOLATION

// lockFile locks f for this process, without waiting; the lock ends with
// the process, however it ends.
func lockFile(f *os.File) error {
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &windows.Overlapped{})
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return errTaken
	}
	return err
}
