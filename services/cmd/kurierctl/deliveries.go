package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// maxPage is the most deliveries one ListDeliveries call answers.
const maxPage = 1000

var deliveryCommands = []*command{
	{
		path:     "deliveries list",
		synopsis: "deliveries list --org <org-id> [--sub <subscription-id>] [--since 1h|<RFC 3339 time>] [--limit N] [--all]",
		about: "Lists logged delivery attempts, oldest first: the first page, or with --all every\n" +
			"page. STATUS is the receiver's HTTP status, or why no answer came.",
		setup: func(fs *flag.FlagSet) runFunc {
			var f logFlags
			f.bind(fs)
			limit := fs.Int("limit", 0, fmt.Sprintf("at most `N` deliveries a page, 1 to %d (default 100)", maxPage))
			all := fs.Bool("all", false, "list every page, not only the first")
			return func(ctx context.Context, s *session, _ []string) error {
				if err := f.check("deliveries list"); err != nil {
					return err
				}
				if *limit < 0 || *limit > maxPage {
					return usageErrorf("--limit must be 1 to %d, not %d", maxPage, *limit)
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				req := &adminv1.ListDeliveriesRequest{OrgId: f.org, SubscriptionId: f.sub, Since: f.since.ts, PageSize: int32(*limit)}
				resp, err := api.ListDeliveries(ctx, req)
				if err != nil {
					return err
				}
				if *all {
					for token := resp.GetNextPageToken(); token != ""; {
						req.PageToken = token
						page, err := api.ListDeliveries(ctx, req)
						if err != nil {
							return err
						}
						if page.GetNextPageToken() == token {
							return fmt.Errorf("the admin server answered page token %q with itself", token)
						}
						resp.Deliveries = append(resp.Deliveries, page.GetDeliveries()...)
						token = page.GetNextPageToken()
					}
					resp.NextPageToken = ""
				}
				if len(resp.GetDeliveries()) == 0 {
					s.out.note("No deliveries logged for %s; watch for new ones with: kurierctl deliveries tail --org %s", f.what(), f.org)
					if s.out.format == "table" {
						return nil
					}
				}
				if err := s.out.deliveries(resp, resp.GetDeliveries()...); err != nil {
					return err
				}
				if resp.GetNextPageToken() != "" {
					s.out.note("More deliveries follow; --all lists them all.")
				}
				return nil
			}
		},
	},
	{
		path:     "deliveries tail",
		synopsis: "deliveries tail --org <org-id> [--sub <subscription-id>] [--since 1h|<RFC 3339 time>]",
		about: "Prints delivery attempts as they happen, until stopped with Ctrl-C. With --since it\n" +
			"first prints those logged since then. With -o json it prints one JSON document a line.",
		stream: true,
		setup: func(fs *flag.FlagSet) runFunc {
			var f logFlags
			f.bind(fs)
			return func(ctx context.Context, s *session, _ []string) error {
				if err := f.check("deliveries tail"); err != nil {
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
					OrgId: f.org, SubscriptionId: f.sub, Since: timestamppb.Now(), PageSize: 1,
				})
				cancel()
				if err != nil {
					return stopped(ctx, err)
				}
				tail, err := api.TailDeliveries(ctx, &adminv1.TailDeliveriesRequest{OrgId: f.org, SubscriptionId: f.sub, Since: f.since.ts})
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

// logFlags are the flags that choose part of the delivery log.
type logFlags struct {
	org, sub string
	since    sinceFlag
}

func (f *logFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.org, "org", "", "the `org-id` whose deliveries to show (required)")
	fs.StringVar(&f.sub, "sub", "", "only this `subscription-id`'s deliveries")
	fs.Var(&f.since, "since", "only deliveries from this `time` on: a span back from now (30m, 12h, 7d) or an RFC 3339 time")
}

func (f *logFlags) check(path string) error {
	if f.org == "" {
		return usageErrorf("%s needs --org <org-id>", path)
	}
	return nil
}

// what names the part of the log chosen, for messages.
func (f *logFlags) what() string {
	s := "org " + f.org
	if f.sub != "" {
		s = "subscription " + f.sub
	}
	if f.since.ts != nil {
		s += " since " + when(f.since.ts)
	}
	return s
}

// sinceFlag is --since: a span back from now or a point in time.
type sinceFlag struct {
	ts *timestamppb.Timestamp
}

func (f *sinceFlag) String() string {
	if f == nil || f.ts == nil {
		return ""
	}
	return when(f.ts)
}

func (f *sinceFlag) Set(v string) error {
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
