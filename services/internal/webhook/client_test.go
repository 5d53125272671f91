package webhook

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestForbidden(t *testing.T) {
	// Each IPv4 entry is also checked in its IPv4-mapped, IPv4-compatible
	// and NAT64 forms, which must classify the same way.
	v4 := []struct {
		addr      string
		forbidden bool
	}{
		// 0.0.0.0/8, unspecified included
		{"0.0.0.0", true}, {"0.1.2.3", true}, {"0.255.255.255", true},
		// loopback
		{"127.0.0.0", true}, {"127.0.0.1", true}, {"127.12.34.56", true}, {"127.255.255.255", true},
		// RFC 1918
		{"10.0.0.0", true}, {"10.1.2.3", true}, {"10.255.255.255", true},
		{"172.16.0.0", true}, {"172.20.1.1", true}, {"172.31.255.255", true},
		{"192.168.0.0", true}, {"192.168.1.1", true}, {"192.168.255.255", true},
		// link-local, including cloud metadata
		{"169.254.0.0", true}, {"169.254.169.254", true}, {"169.254.255.255", true},
		// CGNAT
		{"100.64.0.0", true}, {"100.100.100.100", true}, {"100.127.255.255", true},
		// IETF protocol assignments
		{"192.0.0.0", true}, {"192.0.0.8", true}, {"192.0.0.255", true},
		// benchmarking
		{"198.18.0.0", true}, {"198.18.200.1", true}, {"198.19.255.255", true},
		// multicast, link-local multicast first
		{"224.0.0.0", true}, {"224.0.0.251", true}, {"230.1.2.3", true}, {"239.255.255.255", true},
		// reserved and limited broadcast
		{"240.0.0.0", true}, {"248.1.2.3", true}, {"255.255.255.254", true}, {"255.255.255.255", true},

		// public, including the neighbours of each range's edges
		{"8.8.8.8", false}, {"1.1.1.1", false}, {"9.255.255.255", false}, {"11.0.0.0", false},
		{"172.15.255.255", false}, {"172.32.0.0", false}, {"192.167.255.255", false}, {"192.169.0.0", false},
		{"169.253.255.255", false}, {"169.255.0.0", false}, {"100.63.255.255", false}, {"100.128.0.0", false},
		{"126.255.255.255", false}, {"128.0.0.0", false}, {"1.0.0.0", false},
		{"192.0.1.0", false}, {"191.255.255.255", false}, {"198.17.255.255", false}, {"198.20.0.0", false},
		{"223.255.255.255", false}, {"93.184.216.34", false},
	}
	for _, tc := range v4 {
		ip := netip.MustParseAddr(tc.addr)
		b := ip.As4()
		forms := map[string]netip.Addr{
			"ipv4":       ip,
			"mapped":     netip.AddrFrom16(ip.As16()),
			"nat64":      netip.AddrFrom16([16]byte{0, 0x64, 0xff, 0x9b, 12: b[0], 13: b[1], 14: b[2], 15: b[3]}),
			"compatible": netip.AddrFrom16([16]byte{12: b[0], 13: b[1], 14: b[2], 15: b[3]}),
		}
		for form, a := range forms {
			if got := Forbidden(a); got != tc.forbidden {
				t.Errorf("Forbidden(%s) [%s of %s] = %v, want %v", a, form, tc.addr, got, tc.forbidden)
			}
		}
	}

	v6 := []struct {
		addr      string
		forbidden bool
	}{
		{"::", true}, {"::1", true},
		// unique local
		{"fc00::", true}, {"fd12:3456:789a::1", true}, {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
		// link-local unicast, with and without a zone
		{"fe80::", true}, {"fe80::1", true}, {"fe80::1%eth0", true}, {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
		// multicast of every scope
		{"ff00::", true}, {"ff01::1", true}, {"ff02::1", true}, {"ff05::2", true}, {"ff0e::1", true},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
		// textual forms of embedded IPv4
		{"::ffff:127.0.0.1", true}, {"::ffff:169.254.169.254", true}, {"::ffff:10.0.0.1", true},
		{"64:ff9b::127.0.0.1", true}, {"64:ff9b::a9fe:a9fe", true}, {"::127.0.0.1", true},
		{"64:ff9b::127.0.0.1%eth0", true}, {"::ffff:127.0.0.1%eth0", true},

		// public
		{"2606:4700:4700::1111", false}, {"2001:4860:4860::8888", false}, {"2a00:1450:4001::1", false},
		{"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false}, {"feff::1", false},
		{"::ffff:8.8.8.8", false}, {"64:ff9b::8.8.8.8", false}, {"64:ff9b::1.1.1.1", false},
	}
	for _, tc := range v6 {
		if got := Forbidden(netip.MustParseAddr(tc.addr)); got != tc.forbidden {
			t.Errorf("Forbidden(%s) = %v, want %v", tc.addr, got, tc.forbidden)
		}
	}

	if !Forbidden(netip.Addr{}) {
		t.Error("Forbidden(zero Addr) = false, want true (fail closed)")
	}
}

func TestGuardDial(t *testing.T) {
	for _, tc := range []struct {
		address string
		allowed bool
	}{
		{"8.8.8.8:443", true},
		{"[2606:4700:4700::1111]:443", true},
		{"127.0.0.1:80", false},
		{"[::1]:80", false},
		{"[::ffff:127.0.0.1]:80", false},
		{"[fe80::1%lo]:80", false},
		{"not-an-address", false},
		{"", false},
	} {
		err := guardDial("tcp", tc.address, nil)
		if tc.allowed && err != nil {
			t.Errorf("guardDial(%q) = %v, want nil", tc.address, err)
		}
		if !tc.allowed && !errors.Is(err, ErrForbiddenTarget) {
			t.Errorf("guardDial(%q) = %v, want ErrForbiddenTarget", tc.address, err)
		}
	}
}

func TestNewClientTransport(t *testing.T) {
	guarded := NewClient(ClientOptions{Timeout: 7 * time.Second})
	tr := guarded.Transport.(*http.Transport)
	if tr.Proxy != nil {
		t.Error("guarded client has a Proxy; the dial guard would only see the proxy")
	}
	if tr.MaxIdleConnsPerHost != 1024 || tr.MaxIdleConns != 4096 {
		t.Errorf("idle conns = %d per host, %d total; want 1024, 4096", tr.MaxIdleConnsPerHost, tr.MaxIdleConns)
	}
	if tr.ResponseHeaderTimeout != 7*time.Second || guarded.Timeout != 7*time.Second {
		t.Errorf("timeouts = %v header, %v client; want 7s both", tr.ResponseHeaderTimeout, guarded.Timeout)
	}
	if tr.IdleConnTimeout != 90*time.Second || tr.TLSHandshakeTimeout != 10*time.Second || !tr.ForceAttemptHTTP2 {
		t.Errorf("transport = idle %v, tls %v, h2 %v", tr.IdleConnTimeout, tr.TLSHandshakeTimeout, tr.ForceAttemptHTTP2)
	}

	open := NewClient(ClientOptions{AllowPrivate: true, MaxIdlePerHost: 5})
	otr := open.Transport.(*http.Transport)
	if otr.Proxy == nil {
		t.Error("AllowPrivate client dropped the environment proxy")
	}
	if otr.MaxIdleConnsPerHost != 5 {
		t.Errorf("MaxIdleConnsPerHost = %d, want 5", otr.MaxIdleConnsPerHost)
	}
}

// countingListener counts accepted connections, i.e. connects that reached
// the server's socket, whether or not any HTTP followed.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

func newCountingServer(t *testing.T, network, addr string, h http.Handler) (*httptest.Server, *countingListener) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen %s %s: %v", network, addr, err)
	}
	cl := &countingListener{Listener: ln}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = cl
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, cl
}

func TestClientRefusesPrivateTargets(t *testing.T) {
	var handled atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		io.WriteString(w, "ok")
	})
	srv, ln := newCountingServer(t, "tcp4", "127.0.0.1:0", h)
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	guarded := NewClient(ClientOptions{Timeout: 5 * time.Second})
	for _, url := range []string{
		srv.URL,                          // by IP
		"http://localhost:" + port + "/", // by a name that resolves to loopback
		"http://[::ffff:127.0.0.1]:" + port + "/",
	} {
		resp, err := guarded.Get(url)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET %s: got %s, want refusal", url, resp.Status)
		}
		if !errors.Is(err, ErrForbiddenTarget) {
			t.Fatalf("GET %s: err = %v, want ErrForbiddenTarget", url, err)
		}
	}

	// The allowed request connects after the refused ones were attempted;
	// the listen queue is FIFO, so any connection the refused attempts made
	// would be accepted first and show up in the count.
	open := NewClient(ClientOptions{Timeout: 5 * time.Second, AllowPrivate: true})
	for _, url := range []string{srv.URL, "http://localhost:" + port + "/"} {
		resp, err := open.Get(url)
		if err != nil {
			t.Fatalf("AllowPrivate GET %s: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Fatalf("AllowPrivate GET %s: %s %q", url, resp.Status, body)
		}
	}
	// One connection per host key (127.0.0.1 and localhost), none before.
	if n := ln.accepted.Load(); n != 2 {
		t.Errorf("server accepted %d connections, want 2, all from the allowed client", n)
	}
	if n := handled.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2", n)
	}
}

func TestClientRefusesIPv6Loopback(t *testing.T) {
	srv, ln := newCountingServer(t, "tcp6", "[::1]:0", http.NotFoundHandler())
	_, err := NewClient(ClientOptions{Timeout: 5 * time.Second}).Get(srv.URL)
	if !errors.Is(err, ErrForbiddenTarget) {
		t.Fatalf("GET %s: err = %v, want ErrForbiddenTarget", srv.URL, err)
	}
	if !strings.Contains(err.Error(), "dial") {
		t.Errorf("error %q does not say it failed at dial", err)
	}
	resp, err := NewClient(ClientOptions{Timeout: 5 * time.Second, AllowPrivate: true}).Get(srv.URL)
	if err != nil {
		t.Fatalf("AllowPrivate GET %s: %v", srv.URL, err)
	}
	resp.Body.Close()
	if n := ln.accepted.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		followed.Add(1)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	c := NewClient(ClientOptions{Timeout: 5 * time.Second, AllowPrivate: true})
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/hook", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Errorf("status = %s, want 302 Found", resp.Status)
	}
	if loc := resp.Header.Get("Location"); loc != "/elsewhere" {
		t.Errorf("Location = %q, want /elsewhere", loc)
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("redirect target was requested %d times, want 0", n)
	}
}
