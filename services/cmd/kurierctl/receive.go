package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxReceived bounds the body of a request receive reads: well above a
// daily digest of many events.
const maxReceived = 64 << 20

// receiveCommand is a webhook receiver for trying subscriptions out, which
// needs nothing but kurierctl on the machine.
var receiveCommand = &command{
	path:     "receive",
	args:     []string{"host:port"},
	synopsis: "receive [--count n] <host:port>",
	about: "Listens on host:port and prints every HTTP request it gets (request line, headers,\n" +
		"body), answering 204 No Content: a receiver for trying payload subscriptions out.\n" +
		"Kurier reaches it on loopback or a private address only when it runs with\n" +
		"KURIER_ALLOW_PRIVATE_TARGETS=true. It runs until stopped, or until it has printed\n" +
		"--count requests.",
	stream: true,
	setup: func(fs *flag.FlagSet) runFunc {
		count := fs.Int("count", 0, "end after `n` requests (default: run until stopped)")
		return func(ctx context.Context, s *session, args []string) error {
			if *count < 0 {
				return usageErrorf("--count must not be negative, not %d", *count)
			}
			ln, err := net.Listen("tcp", args[0])
			if err != nil {
				return err
			}
			ctx, done := context.WithCancel(ctx)
			defer done()
			var (
				mu      sync.Mutex
				n       int
				printed error // the first failure to print, which ends the command
			)
			srv := &http.Server{
				ReadHeaderTimeout: 10 * time.Second,
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReceived))
					if err != nil {
						http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if *count > 0 && n == *count {
						http.Error(w, "kurierctl receive has had its --count requests", http.StatusServiceUnavailable)
						return
					}
					n++
					if printed = printRequest(s.out.w, r, body); printed != nil {
						http.Error(w, "kurierctl receive cannot print", http.StatusInternalServerError)
						done()
						return
					}
					w.WriteHeader(http.StatusNoContent)
					if n == *count {
						done()
					}
				}),
			}
			// Shutdown lets the last request's answer go out before
			// Serve's caller returns.
			shut := make(chan error, 1)
			go func() {
				<-ctx.Done()
				grace, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				shut <- srv.Shutdown(grace)
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			err = <-shut
			mu.Lock()
			defer mu.Unlock()
			return errors.Join(printed, err)
		}
	},
}

// printRequest writes a request as it came, its headers sorted, followed
// by an empty line.
func printRequest(w io.Writer, r *http.Request, body []byte) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\n", r.Method, r.RequestURI, r.Proto)
	fmt.Fprintf(&b, "Host: %s\n", r.Host)
	for _, name := range slices.Sorted(maps.Keys(r.Header)) {
		for _, v := range r.Header[name] {
			fmt.Fprintf(&b, "%s: %s\n", name, v)
		}
	}
	b.WriteString("\n")
	if len(body) > 0 {
		b.Write(body)
		if body[len(body)-1] != '\n' {
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
