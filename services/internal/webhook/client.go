package webhook

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ClientOptions configure outgoing requests.
type ClientOptions struct {
	// Timeout bounds the whole request, body included. Zero means no limit,
	// as with http.Client, so callers should always set it.
	Timeout time.Duration
	// AllowPrivate (KURIER_ALLOW_PRIVATE_TARGETS) lets requests reach
	// loopback and private addresses, for local receivers and tests.
	AllowPrivate bool
	// MaxIdlePerHost defaults to 1024 when zero or negative: one receiver
	// may have many subscriptions, each with up to 100 requests in flight,
	// and connections past the idle limit are closed after each request
	// (http.Transport's own default of 2 would redo handshakes constantly).
	MaxIdlePerHost int
}

// ErrForbiddenTarget is wrapped in the dial error of a refused request, so
// errors.Is finds it through *url.Error and *net.OpError.
var ErrForbiddenTarget = errors.New("target address is not allowed")

const defaultMaxIdlePerHost = 1024

// NewClient returns the client for every outgoing webhook request. Unless
// o.AllowPrivate is set, it refuses to connect to addresses for which
// Forbidden is true, so a subscriber cannot point Kurier at its own
// infrastructure (SSRF).
func NewClient(o ClientOptions) *http.Client {
	perHost := o.MaxIdlePerHost
	if perHost <= 0 {
		perHost = defaultMaxIdlePerHost
	}
	dialer := &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
	}
	proxy := http.ProxyFromEnvironment
	if !o.AllowPrivate {
		// The check runs on the address actually connected to, after the
		// dialer's own resolution, so a name that resolves to a public
		// address when validated and to 127.0.0.1 when dialled (DNS
		// rebinding) is still caught. Resolving here ourselves would
		// reopen that window.
		dialer.Control = guardDial
		// Through a proxy the dial would go to the proxy, and the proxy
		// would reach the target unchecked.
		proxy = nil
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 proxy,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          4096,
			MaxIdleConnsPerHost:   perHost,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: o.Timeout,
		},
		// A redirect is the receiver's answer and is recorded as such;
		// following it would also let a receiver aim Kurier elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: o.Timeout,
	}
}

// guardDial is a net.Dialer.Control hook: it runs after the socket exists
// but before connect, so a refused target never sees a SYN.
func guardDial(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Fail closed: an address we cannot read is not one we can vouch for.
		return ErrForbiddenTarget
	}
	if Forbidden(ap.Addr()) {
		return ErrForbiddenTarget
	}
	return nil
}

var (
	// IPv6 forms that carry an IPv4 address in their last 32 bits and can
	// deliver to it: IPv4-compatible (deprecated, ::/96) and the NAT64
	// well-known prefix, which a NAT64 gateway translates to the IPv4
	// address. IPv4-mapped (::ffff:0:0/96) is handled by Unmap.
	ipv4Compatible = netip.MustParsePrefix("::/96")
	nat64          = netip.MustParsePrefix("64:ff9b::/96")

	// IPv4 ranges not covered by the netip.Addr predicates.
	forbiddenV4 = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),     // "this network"; 0.x can reach the local host
		netip.MustParsePrefix("100.64.0.0/10"), // CGNAT, carrier-internal
		netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
		netip.MustParsePrefix("198.18.0.0/15"), // benchmarking, used for internal labs
		netip.MustParsePrefix("240.0.0.0/4"),   // reserved, includes 255.255.255.255
	}
)

// Forbidden reports whether an outgoing webhook request must not connect to
// ip: loopback, private, link-local, multicast, unspecified and the special
// IPv4 ranges, in IPv4 form or embedded in an IPv6 address. The zero Addr is
// forbidden so that an unparsed address fails closed.
func Forbidden(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	// Prefix.Contains never matches a zoned address, which would let
	// "fe80::1%eth0"-style forms slip past the prefix checks below.
	ip = ip.WithZone("")
	if isForbidden(ip) {
		return true
	}
	if ip.Is4In6() {
		return isForbidden(ip.Unmap())
	}
	if ipv4Compatible.Contains(ip) || nat64.Contains(ip) {
		b := ip.As16()
		return isForbidden(netip.AddrFrom4([4]byte(b[12:])))
	}
	return false
}

func isForbidden(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() ||
		ip.IsLinkLocalUnicast() || ip.IsMulticast() {
		return true
	}
	if ip.Is4() {
		for _, p := range forbiddenV4 {
			if p.Contains(ip) {
				return true
			}
		}
	}
	return false
}
