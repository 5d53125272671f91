package natsd_test

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"kurier.dev/services/internal/natsd"
)

// TestTakenAddressFailsFast: a client address another process listens on
// is an error naming it within a second, not a 30 s wait for readiness.
func TestTakenAddressFailsFast(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	addr := lis.Addr().String()
	start := time.Now()
	srv, err := natsd.Start(natsd.Options{DataDir: t.TempDir(), Listen: addr})
	took := time.Since(start)
	if err == nil {
		srv.Shutdown()
		t.Fatalf("started on the taken address %s", addr)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not name the address %s and why", err, addr)
	}
	if took > time.Second {
		t.Errorf("failed after %v, want within a second", took)
	}
}

// TestLockDir: while a data directory's lock is held, another holder is
// refused, naming the directory and the holder; once released it is free.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	release, err := natsd.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = natsd.LockDir(dir)
	if err == nil {
		t.Fatal("a second lock of the same directory was granted")
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("error %q does not name the directory and the holder", err)
	}
	release()
	again, err := natsd.LockDir(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again()
}
