package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/dlog"
)

// maxPage is the most deliveries one ListDeliveries call answers.
const maxPage = 1000

var deliveryCommands = []*command{
	{
		path: "deliveries list",
		synopsis: "deliveries list --org <org-id> [--sub <subscription-id>] [--since 1h|<RFC 3339 time>] [--until 1h|<RFC 3339 time>] " +
			"[--outcome " + strings.Join(dlog.Outcomes, "|") + "] [--event <event-id>] [--limit N] [--all]",
		about: "Lists logged delivery attempts, oldest first: the first page, or with --all every\n" +
			"page. STATUS is the receiver's HTTP status, or why no answer came. With --outcome or\n" +
			"--event a page may hold fewer than --limit while more follow.",
		setup: func(fs *flag.FlagSet) runFunc {
			var f logFlags
			f.bind(fs)
			var until timeFlag
			fs.Var(&until, "until", "only deliveries logged before this `time`: a span back from now (30m, 12h, 7d) or an RFC 3339 time")
			var af attemptFlags
			af.bind(fs)
			var pf pageFlags
			pf.bind(fs, "deliveries")
			return func(ctx context.Context, s *session, _ []string) error {
				if err := f.check("deliveries list"); err != nil {
					return err
				}
				if f.since.ts != nil && until.ts != nil && !until.ts.AsTime().After(f.since.ts.AsTime()) {
					return usageErrorf("--until %s is not after --since %s", when(until.ts), when(f.since.ts))
				}
				if err := af.check(); err != nil {
					return err
				}
				if err := pf.check(); err != nil {
					return err
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				req := &adminv1.ListDeliveriesRequest{OrgId: f.org, SubscriptionId: f.sub, Since: f.since.ts, Until: until.ts,
					Outcome: af.outcome, EventId: af.event, PageSize: int32(pf.limit)}
				resp := &adminv1.ListDeliveriesResponse{}
				err = readPages(pf.all, func(token string) (string, error) {
					req.PageToken = token
					page, err := api.ListDeliveries(ctx, req)
					if err != nil {
						return "", err
					}
					resp.Deliveries = append(resp.Deliveries, page.GetDeliveries()...)
					resp.NextPageToken = page.GetNextPageToken()
					return page.GetNextPageToken(), nil
				})
				if err != nil {
					return err
				}
				what := f.what()
				if until.ts != nil {
					what += " until " + when(until.ts)
				}
				return s.out.listing(len(resp.GetDeliveries()), resp.GetNextPageToken() != "", "deliveries",
					fmt.Sprintf("No deliveries logged for %s%s; watch for new ones with: kurierctl deliveries tail --org %s", what, af.what(), f.org),
					func() error { return s.out.deliveries(resp, resp.GetDeliveries()...) })
			}
		},
	},
	{
		path:     "deliveries export",
		synopsis: "deliveries export --org <org-id> [--sub <subscription-id>] [--since 1h|<RFC 3339 time>] [--format jsonl] [-f <file>|-]",
		about: "Writes every logged delivery attempt, oldest first, as JSON Lines: one JSON document a\n" +
			"line, with the fields deliveries list -o json shows. It writes to standard output, or\n" +
			"with -f to a file, which appears only once the export is complete. --timeout bounds\n" +
			"each call to the server rather than the whole export.",
		stream: true,
		setup: func(fs *flag.FlagSet) runFunc {
			var f logFlags
			f.bind(fs)
			format := fs.String("format", "jsonl", "the output `format`: jsonl, the only one for now")
			file := fs.String("f", "-", "the `file` to write, - for standard output (the default)")
			return func(ctx context.Context, s *session, _ []string) error {
				if err := f.check("deliveries export"); err != nil {
					return err
				}
				if *format != "jsonl" {
					return usageErrorf("--format must be jsonl, the only export format for now, not %q", *format)
				}
				if *file == "" {
					return usageErrorf("-f needs a file name, or - for standard output")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				out, err := createOutput(*file, s.out.w)
				if err != nil {
					return err
				}
				lines := &printer{w: out, errw: s.out.errw, format: "json"}
				req := &adminv1.ListDeliveriesRequest{OrgId: f.org, SubscriptionId: f.sub, Since: f.since.ts, PageSize: maxPage}
				n := 0
				err = readPages(true, func(token string) (string, error) {
					req.PageToken = token
					call, cancel := context.WithTimeout(ctx, s.g.timeout)
					page, err := api.ListDeliveries(call, req)
					cancel()
					if err != nil {
						return "", err
					}
					for _, d := range page.GetDeliveries() {
						if err := lines.jsonLine(d); err != nil {
							return "", err
						}
						n++
					}
					return page.GetNextPageToken(), nil
				})
				if err := out.finish(err); err != nil {
					return err
				}
				if *file != "-" {
					s.out.note("Exported %d deliveries of %s to %s.", n, f.what(), *file)
				}
				return nil
			}
		},
	},
	{
		path: "deliveries tail",
		synopsis: "deliveries tail --org <org-id> [--sub <subscription-id>] [--since 1h|<RFC 3339 time>] " +
			"[--outcome " + strings.Join(dlog.Outcomes, "|") + "] [--event <event-id>]",
		about: "Prints delivery attempts as they happen, until stopped with Ctrl-C. With --since it\n" +
			"first prints those logged since then. With -o json it prints one JSON document a line.",
		stream: true,
		setup: func(fs *flag.FlagSet) runFunc {
			var f logFlags
			f.bind(fs)
			var af attemptFlags
			af.bind(fs)
			return func(ctx context.Context, s *session, _ []string) error {
				if err := f.check("deliveries tail"); err != nil {
					return err
				}
				if err := af.check(); err != nil {
					return err
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				// The server says nothing on a tail until a delivery comes.
				// Asking for the deliveries from now on first finds a wrong
				// org or subscription, or an unreachable server, within
				// --timeout and before anything is printed.
				check, cancel := context.WithTimeout(ctx, s.g.timeout)
				_, err = api.ListDeliveries(check, &adminv1.ListDeliveriesRequest{
					OrgId: f.org, SubscriptionId: f.sub, Since: timestamppb.Now(), PageSize: 1, Outcome: af.outcome, EventId: af.event,
				})
				cancel()
				if err != nil {
					return stopped(ctx, err)
				}
				tail, err := api.TailDeliveries(ctx, &adminv1.TailDeliveriesRequest{OrgId: f.org, SubscriptionId: f.sub, Since: f.since.ts,
					Outcome: af.outcome, EventId: af.event})
				if err != nil {
					return stopped(ctx, err)
				}
				var t *streamTable
				if s.out.format == "table" {
					if t, err = newStreamTable(s.out.w, deliveryWidths, deliveryHeader...); err != nil {
						return err
					}
				}
				for {
					d, err := tail.Recv()
					if errors.Is(err, io.EOF) {
						return errors.New("the admin server ended the tail; it may be shutting down")
					}
					if err != nil {
						return stopped(ctx, err)
					}
					if t != nil {
						err = t.row(deliveryCells(d)...)
					} else {
						err = s.out.jsonLine(d)
					}
					if err != nil {
						return err
					}
				}
			}
		},
	},
}

// stopped reports err unless it came from the user stopping the command,
// which is how a tail ends.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// orgFlags are --org and --sub, which choose an org's part of the
// delivery log or of its dead letters.
type orgFlags struct {
	org, sub string
}

// bind registers the flags; what names what they choose, such as
// "deliveries".
func (f *orgFlags) bind(fs *flag.FlagSet, what string) {
	fs.StringVar(&f.org, "org", "", "the `org-id` whose "+what+" to show (required)")
	fs.StringVar(&f.sub, "sub", "", "only this `subscription-id`'s "+what)
}

func (f *orgFlags) check(path string) error {
	if f.org == "" {
		return usageErrorf("%s needs --org <org-id>", path)
	}
	return nil
}

// what names the part chosen, for messages.
func (f *orgFlags) what() string {
	if f.sub != "" {
		return "subscription " + f.sub
	}
	return "org " + f.org
}

// logFlags are the flags that choose part of the delivery log.
type logFlags struct {
	orgFlags
	since timeFlag
}

func (f *logFlags) bind(fs *flag.FlagSet) {
	f.orgFlags.bind(fs, "deliveries")
	fs.Var(&f.since, "since", "only deliveries from this `time` on: a span back from now (30m, 12h, 7d) or an RFC 3339 time")
}

// what names the part of the log chosen, for messages.
func (f *logFlags) what() string {
	s := f.orgFlags.what()
	if f.since.ts != nil {
		s += " since " + when(f.since.ts)
	}
	return s
}

// attemptFlags are --outcome and --event, which choose attempts by what
// the log's subjects do not tell: how they ended and of which event.
type attemptFlags struct {
	outcome, event string
}

func (f *attemptFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.outcome, "outcome", "", "only attempts that ended so, an `outcome`: "+orList(dlog.Outcomes)+
		" (a ping counts as delivered when answered 2xx, else as dropped)")
	fs.Func("event", "only attempts of this `event-id`", func(v string) error {
		if v = strings.TrimSpace(v); v == "" {
			return errors.New("needs an event id")
		}
		f.event = v
		return nil
	})
}

func (f *attemptFlags) check() error {
	f.outcome = strings.TrimSpace(f.outcome)
	if f.outcome != "" && !slices.Contains(dlog.Outcomes, f.outcome) {
		return usageErrorf("--outcome must be %s, not %q", orList(dlog.Outcomes), f.outcome)
	}
	return nil
}

// what names the attempts chosen, for messages: "" when all are.
func (f *attemptFlags) what() string {
	var s string
	if f.outcome != "" {
		s += " with outcome " + f.outcome
	}
	if f.event != "" {
		s += " of event " + f.event
	}
	return s
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// pageFlags are --limit and --all of the lists that come in pages.
type pageFlags struct {
	limit int
	all   bool
}

// bind registers the flags; what names what is listed, such as
// "deliveries".
func (f *pageFlags) bind(fs *flag.FlagSet, what string) {
	fs.IntVar(&f.limit, "limit", 0, fmt.Sprintf("at most `N` %s a page, 1 to %d (default 100)", what, maxPage))
	fs.BoolVar(&f.all, "all", false, "list every page, not only the first")
}

func (f *pageFlags) check() error {
	if f.limit < 0 || f.limit > maxPage {
		return usageErrorf("--limit must be 1 to %d, not %d", maxPage, f.limit)
	}
	return nil
}

// readPages calls read for the first page and, when all is set, for every
// page after it, passing each the page token the one before answered,
// until one answers none.
func readPages(all bool, read func(token string) (next string, err error)) error {
	token := ""
	for {
		next, err := read(token)
		if err != nil || !all || next == "" {
			return err
		}
		if next == token {
			return fmt.Errorf("the admin server answered page token %q with itself", token)
		}
		token = next
	}
}

// output is where an export goes: standard output, or a file that appears
// under its name only once it is complete, so that a failed export leaves
// no partial file behind (nor replaces an older one).
type output struct {
	*bufio.Writer
	tmp  *os.File // nil for standard output
	name string
}

func createOutput(name string, stdout io.Writer) (*output, error) {
	if name == "-" {
		return &output{Writer: bufio.NewWriter(stdout)}, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return nil, err
	}
	return &output{Writer: bufio.NewWriter(tmp), tmp: tmp, name: name}, nil
}

// finish ends the output after writing it, with the error that stopped the
// writing if one did, and answers the first error.
func (o *output) finish(err error) error {
	if err == nil {
		err = o.Flush()
	}
	if o.tmp == nil {
		return err
	}
	if cerr := o.tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(o.tmp.Name(), o.name)
	}
	if err != nil {
		_ = os.Remove(o.tmp.Name())
	}
	return err
}

// timeFlag is --since or --until: a span back from now or a point in time.
type timeFlag struct {
	ts *timestamppb.Timestamp
}

func (f *timeFlag) String() string {
	if f == nil || f.ts == nil {
		return ""
	}
	return when(f.ts)
}

func (f *timeFlag) Set(v string) error {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		f.ts = timestamppb.New(t)
		return nil
	}
	d, err := parseSpan(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is neither a span such as 30m, 12h or 7d nor an RFC 3339 time such as 2025-01-31T08:00:00Z", v)
	}
	f.ts = timestamppb.New(time.Now().Add(-d))
	return nil
}

// parseSpan is time.ParseDuration with days as well, since log retention
// is counted in days.
func parseSpan(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}
