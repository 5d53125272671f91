//go:build unix

package natsd

import (
	"os"
	"syscall"
)

// errTaken: another process holds the lock.
var errTaken = syscall.EWOULDBLOCK

// lockFile locks f for this process, without waiting; the lock ends with
// the process, however it ends.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
