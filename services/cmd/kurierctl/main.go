// Command kurierctl is Kurier's admin CLI: it manages organisations, their
// keys and subscriptions, and reads the delivery log, through the admin
// gRPC API (kurier.admin.v1.AdminService).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const (
	defaultServer = "localhost:9090"
	tokenHint     = "set KURIER_ADMIN_TOKEN or --token; `kurier all` keeps it in ./kurier-data/admin-token"
)

const globalHelp = `Global flags, accepted before or after the command:
  --server host:port    admin API address (env KURIER_ADMIN_SERVER, default ` + defaultServer + `)
  --token token         admin token (env KURIER_ADMIN_TOKEN)
  --tls                 speak TLS to the admin API, checking its certificate
                        against the system's CAs
  --ca file             CA certificates (PEM) to check the admin API's
                        certificate against; turns TLS on (env KURIER_CA)
  -o, --output format   table, json, or value=<field>: only that field of the
                        JSON answer, bare, such as value=secret or
                        value=subscription.subscriptionId (default table)
  --timeout duration    how long to wait for the server (default 10s); tail
                        waits for deliveries without limit, and export bounds
                        each call with it; sub create and sub update have a
                        --timeout of their own, so give this one before the
                        command words there
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runFunc carries out a command once its flags and arguments are parsed.
type runFunc func(ctx context.Context, s *session, args []string) error

// command is one leaf of the command tree, such as "org create".
type command struct {
	path     string   // the command words, space-separated
	args     []string // names of the positional arguments, all required
	synopsis string   // the usage line after "kurierctl "
	about    string
	// setup registers the command's own flags and returns the code that
	// runs it, which reads those flags through the closure.
	setup func(fs *flag.FlagSet) runFunc
	// stream marks a command that runs until it is stopped, or makes
	// calls without number, which --timeout must not cut short; it bounds
	// each call on its own where it should.
	stream bool
}

// commands lists every command in the order usage shows them.
var commands = func() []*command {
	cs := append([]*command{}, orgCommands...)
	cs = append(cs, orgStatsCommand)
	cs = append(cs, keyCommands...)
	cs = append(cs, subCommands...)
	cs = append(cs, subStatsCommand)
	cs = append(cs, applyCommand)
	cs = append(cs, deliveryCommands...)
	cs = append(cs, deadLetterCommands...)
	cs = append(cs, personCommands...)
	cs = append(cs, queueCommands...)
	cs = append(cs, typeCommands...)
	cs = append(cs, receiveCommand)
	cs = append(cs, &command{
		path:     "version",
		synopsis: "version",
		about:    "Prints kurierctl's version.",
		setup: func(*flag.FlagSet) runFunc {
			return func(_ context.Context, s *session, _ []string) error {
				_, err := fmt.Fprintln(s.out.w, "kurierctl", version)
				return err
			}
		},
	})
	// The closure reads cs when it runs, once the table is complete.
	cs = append(cs, completionCommand(func() []*command { return cs }))
	return cs
}()

// globals are the flags every command accepts.
type globals struct {
	server  string
	token   string
	tls     bool
	ca      string
	output  string // table or json, once checked
	field   string // with -o value=<field>, which check makes json
	timeout time.Duration
}

func defaultGlobals() globals {
	g := globals{
		server:  os.Getenv("KURIER_ADMIN_SERVER"),
		token:   os.Getenv("KURIER_ADMIN_TOKEN"),
		ca:      os.Getenv("KURIER_CA"),
		output:  "table",
		timeout: 10 * time.Second,
	}
	if g.server == "" {
		g.server = defaultServer
	}
	return g
}

// bind registers the global flags on fs. The current values become the
// defaults because the flag package writes a flag's default into its
// variable on registration, and values given before the command words
// must survive being registered again on the command's flag set.
//
// A flag fs already has is left to it: a command's own flag takes the
// place of a global one of the same name, such as sub create's --timeout,
// and the global one is then given before the command words.
func (g *globals) bind(fs *flag.FlagSet) {
	str := func(p *string, name string) {
		if fs.Lookup(name) == nil {
			fs.StringVar(p, name, *p, "")
		}
	}
	str(&g.server, "server")
	str(&g.token, "token")
	str(&g.ca, "ca")
	if fs.Lookup("tls") == nil {
		fs.BoolVar(&g.tls, "tls", g.tls, "")
	}
	str(&g.output, "o")
	str(&g.output, "output")
	if fs.Lookup("timeout") == nil {
		fs.DurationVar(&g.timeout, "timeout", g.timeout, "")
	}
}

func (g *globals) check() error {
	if field, ok := strings.CutPrefix(g.output, "value="); ok {
		if field == "" {
			return usageErrorf("--output value= needs a field, such as value=secret")
		}
		g.output, g.field = "json", field
	} else if g.output != "table" && g.output != "json" {
		return usageErrorf("--output must be table, json or value=<field>, not %q", g.output)
	}
	if g.timeout <= 0 {
		return usageErrorf("--timeout must be positive, not %v", g.timeout)
	}
	return nil
}

// usageError is a mistake in the command line. It exits with status 2
// rather than 1 so that scripts can tell "called wrongly" from "the call
// failed".
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// errNoToken is reported before dialing: every call would fail without it.
var errNoToken = errors.New("no admin token: " + tokenHint)

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Errors and help are printed by run, in kurierctl's own format and
	// without echoing the token as a flag default.
	fs.SetOutput(io.Discard)
	return fs
}

// nextWord parses global flags up to the next command word.
func nextWord(g *globals, args []string) (word string, rest []string, err error) {
	fs := newFlagSet("kurierctl")
	g.bind(fs)
	if err := fs.Parse(args); err != nil {
		return "", nil, err
	}
	rest = fs.Args()
	if len(rest) == 0 {
		return "", nil, nil
	}
	return rest[0], rest[1:], nil
}

// parseInterspersed parses flags wherever they appear among the
// positional arguments, which the flag package alone stops at. A "--"
// ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := defaultGlobals()
	first, rest, err := nextWord(&g, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout, commands, true)
		return 0
	case err != nil:
		return usageFailure(stderr, err.Error(), commands)
	case first == "":
		return usageFailure(stderr, "no command given", commands)
	case first == "help":
		printUsage(stdout, commands, true)
		return 0
	}

	var group []*command
	for _, c := range commands {
		if c.path == first {
			return runCommand(ctx, c, &g, rest, stdin, stdout, stderr)
		}
		if strings.HasPrefix(c.path, first+" ") {
			group = append(group, c)
		}
	}
	if group == nil {
		return usageFailure(stderr, fmt.Sprintf("unknown command %q", first), commands)
	}
	second, rest, err := nextWord(&g, rest)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout, group, true)
		return 0
	case err != nil:
		return usageFailure(stderr, err.Error(), group)
	case second == "":
		return usageFailure(stderr, first+" needs a subcommand", group)
	}
	for _, c := range group {
		if c.path == first+" "+second {
			return runCommand(ctx, c, &g, rest, stdin, stdout, stderr)
		}
	}
	return usageFailure(stderr, fmt.Sprintf("unknown command %q", first+" "+second), group)
}

func runCommand(ctx context.Context, c *command, g *globals, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// The command's own flags go on a set of their own first so that its
	// help can list them apart from the global ones.
	own := newFlagSet(c.path)
	runner := c.setup(own)
	fs := newFlagSet(c.path)
	own.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
	g.bind(fs)

	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(stdout, c, own)
		return 0
	}
	if err == nil {
		err = checkArgs(c, pos)
	}
	if err == nil {
		err = g.check()
	}
	if err != nil {
		return commandUsageFailure(stderr, c, err.Error())
	}

	s := &session{g: *g, in: stdin, out: &printer{w: stdout, errw: stderr, format: g.output, field: g.field}}
	defer s.close()
	if !c.stream {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	return report(stderr, c, g, runner(ctx, s, pos))
}

func checkArgs(c *command, pos []string) error {
	switch {
	case len(pos) < len(c.args):
		return usageErrorf("%s needs <%s>", c.path, c.args[len(pos)])
	case len(pos) > len(c.args) && len(c.args) == 0:
		return usageErrorf("%s takes no arguments, got %q", c.path, pos[0])
	case len(pos) > len(c.args):
		return usageErrorf("%s takes only <%s>, got also %q", c.path, strings.Join(c.args, "> <"), pos[len(c.args)])
	}
	for i, a := range pos {
		if a == "" {
			return usageErrorf("%s: <%s> must not be empty", c.path, c.args[i])
		}
	}
	return nil
}

// report turns the outcome of a command into its exit status, printing
// what went wrong with a hint where one helps.
func report(stderr io.Writer, c *command, g *globals, err error) int {
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		return commandUsageFailure(stderr, c, ue.msg)
	}
	if errors.Is(err, errNoToken) {
		fmt.Fprintln(stderr, "kurierctl:", err)
		return 2
	}
	st, ok := grpcStatus(err)
	if !ok {
		fmt.Fprintln(stderr, "kurierctl:", err)
		return 1
	}
	fmt.Fprintln(stderr, "kurierctl:", st.Message())
	switch st.Code() {
	case codes.Unauthenticated:
		fmt.Fprintln(stderr, "hint:", tokenHint)
	case codes.Unavailable:
		fmt.Fprintf(stderr, "hint: is the admin service running at %s? Set --server or KURIER_ADMIN_SERVER. Does it speak TLS (--tls, --ca) or not?\n", g.server)
	case codes.DeadlineExceeded:
		fmt.Fprintf(stderr, "hint: no answer within %v; is %s the admin service? A longer --timeout may help.\n", g.timeout, g.server)
	}
	return 1
}

// grpcStatus finds the status in err. Unlike status.FromError it keeps the
// server's own message when err is wrapped, which is what users should see.
func grpcStatus(err error) (*status.Status, bool) {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) && se.GRPCStatus() != nil {
		return se.GRPCStatus(), true
	}
	return nil, false
}

func printUsage(w io.Writer, cs []*command, full bool) {
	if full {
		fmt.Fprint(w, "kurierctl manages Kurier's organisations, keys and subscriptions, and reads the\n"+
			"delivery log, through the admin gRPC API.\n\n")
	}
	fmt.Fprintln(w, "Usage:")
	for _, c := range cs {
		fmt.Fprintln(w, "  kurierctl", c.synopsis)
	}
	if full {
		fmt.Fprint(w, "\n"+globalHelp+"\nRun \"kurierctl <command> -h\" for a command's details.\n")
	} else {
		fmt.Fprintln(w, "\nRun \"kurierctl help\" for the global flags.")
	}
}

func usageFailure(stderr io.Writer, msg string, cs []*command) int {
	fmt.Fprintln(stderr, "kurierctl:", msg)
	printUsage(stderr, cs, false)
	return 2
}

func commandUsageFailure(stderr io.Writer, c *command, msg string) int {
	fmt.Fprintln(stderr, "kurierctl:", msg)
	fmt.Fprintf(stderr, "Usage: kurierctl %s\nRun \"kurierctl %s -h\" for details.\n", c.synopsis, c.path)
	return 2
}

func printCommandHelp(w io.Writer, c *command, own *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: kurierctl %s\n\n%s\n\n", c.synopsis, c.about)
	var n int
	own.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "Flags:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		own.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			dashes := "--"
			if len(f.Name) == 1 {
				dashes = "-" // as in "-f file"
			}
			fmt.Fprintf(tw, "  %s%s %s\t%s\n", dashes, f.Name, name, usage)
		})
		tw.Flush()
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, globalHelp)
}

// session is what a command runs with: the settings, the input and output
// and, once asked for, the connection.
type session struct {
	g    globals
	in   io.Reader
	out  *printer
	conn *grpc.ClientConn
}

// api connects lazily, so that commands which fail their own checks or
// need no server never ask for a token.
func (s *session) api() (adminv1.AdminServiceClient, error) {
	if s.g.token == "" {
		return nil, errNoToken
	}
	conn, err := dial(s.g)
	if err != nil {
		return nil, err
	}
	s.conn = conn
	return adminv1.NewAdminServiceClient(conn), nil
}

func (s *session) close() {
	if s.conn != nil {
		_ = s.conn.Close()
	}
}

// dial makes the connection to the admin server. grpc.NewClient does no
// I/O: an unreachable server shows as Unavailable on the first call.
func dial(g globals) (*grpc.ClientConn, error) {
	creds, secure, err := transportCredentials(g)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(g.server,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(bearer{token: strings.TrimSpace(g.token), secure: secure}),
	)
	if err != nil {
		return nil, fmt.Errorf("admin server %q: %w", g.server, err)
	}
	return conn, nil
}

// transportCredentials is the one place that decides transport security.
func transportCredentials(g globals) (creds credentials.TransportCredentials, secure bool, err error) {
	switch {
	case g.ca != "":
		cfg, err := config.TrustCA(g.ca)
		if err != nil {
			return nil, false, fmt.Errorf("--ca %s: %w", g.ca, err)
		}
		return credentials.NewTLS(cfg), true, nil
	case g.tls:
		return credentials.NewTLS(&tls.Config{}), true, nil
	}
	return insecure.NewCredentials(), false, nil
}

// bearer sends the admin token with every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity lets the token travel in plaintext only while
// the connection itself is plaintext; once TLS is on, gRPC refuses to send
// the token over anything else.
func (b bearer) RequireTransportSecurity() bool { return b.secure }
