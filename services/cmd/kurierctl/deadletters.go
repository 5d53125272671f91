package main

import (
	"context"
	"flag"
	"fmt"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

var deadLetterCommands = []*command{
	{
		path:     "deadletters list",
		synopsis: "deadletters list --org <org-id> [--sub <subscription-id>] [--limit N] [--all]",
		about: "Lists the payload deliveries Kurier gave up on, oldest first: their retries ran out,\n" +
			"or the receiver answered 410 Gone. TIME is when that happened. deadletters redeliver\n" +
			"queues them again.",
		setup: func(fs *flag.FlagSet) runFunc {
			var f orgFlags
			f.bind(fs, "dead letters")
			var pf pageFlags
			pf.bind(fs, "dead letters")
			return func(ctx context.Context, s *session, _ []string) error {
				if err := f.check("deadletters list"); err != nil {
					return err
				}
				if err := pf.check(); err != nil {
					return err
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				req := &adminv1.ListDeadLettersRequest{OrgId: f.org, SubscriptionId: f.sub, PageSize: int32(pf.limit)}
				resp := &adminv1.ListDeadLettersResponse{}
				err = readPages(pf.all, func(token string) (string, error) {
					req.PageToken = token
					page, err := api.ListDeadLetters(ctx, req)
					if err != nil {
						return "", err
					}
					resp.DeadLetters = append(resp.DeadLetters, page.GetDeadLetters()...)
					resp.NextPageToken = page.GetNextPageToken()
					return page.GetNextPageToken(), nil
				})
				if err != nil {
					return err
				}
				return s.out.listing(len(resp.GetDeadLetters()), resp.GetNextPageToken() != "", "dead letters",
					fmt.Sprintf("No dead letters for %s: every delivery got through or is still being retried.", f.what()),
					func() error { return s.out.deadLetters(resp, resp.GetDeadLetters()...) })
			}
		},
	},
	{
		path:     "deadletters redeliver",
		synopsis: "deadletters redeliver --sub <subscription-id> (--id <delivery-id> | --all | --since 1h|<RFC 3339 time> [--until <time>])",
		about: "Queues deliveries of a payload subscription again: one dead letter (--id), all its\n" +
			"dead letters (--all), or every event of its types stored in a time range (--since,\n" +
			"--until), such as while it was switched off. Dead letters keep their delivery id, so\n" +
			"receivers that deduplicate by webhook-id see them as the deliveries they missed.",
		setup: func(fs *flag.FlagSet) runFunc {
			sub := fs.String("sub", "", "the payload `subscription-id` to deliver to (required)")
			id := fs.String("id", "", "the dead letter's `delivery-id`, as deadletters list shows it")
			all := fs.Bool("all", false, "every dead letter of the subscription")
			var since, until timeFlag
			fs.Var(&since, "since", "the events stored from this `time` on: a span back from now (30m, 12h, 7d) or an RFC 3339 time")
			fs.Var(&until, "until", "the events stored up to this `time`, a span back from now or an RFC 3339 time (default now)")
			return func(ctx context.Context, s *session, _ []string) error {
				req := &adminv1.RedeliverRequest{SubscriptionId: *sub}
				var chosen []string
				if *id != "" {
					chosen = append(chosen, "--id")
					req.What = &adminv1.RedeliverRequest_DeliveryId{DeliveryId: *id}
				}
				if *all {
					chosen = append(chosen, "--all")
					req.What = &adminv1.RedeliverRequest_AllDeadLetters{AllDeadLetters: true}
				}
				if since.ts != nil {
					chosen = append(chosen, "--since")
					req.What = &adminv1.RedeliverRequest_Events{Events: &adminv1.TimeRange{Since: since.ts, Until: until.ts}}
				}
				switch {
				case *sub == "":
					return usageErrorf("deadletters redeliver needs --sub <subscription-id>")
				case len(chosen) == 0:
					return usageErrorf("deadletters redeliver needs --id <delivery-id>, --all or --since <time>")
				case len(chosen) > 1:
					return usageErrorf("%s and %s exclude each other: redeliver one thing at a time", chosen[0], chosen[1])
				case until.ts != nil && since.ts == nil:
					return usageErrorf("--until needs --since")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.Redeliver(ctx, req)
				if err != nil {
					return err
				}
				if s.out.format == "json" {
					return s.out.json(resp)
				}
				_, err = fmt.Fprintf(s.out.w, "queued %d\n", resp.GetQueued())
				return err
			}
		},
	},
}
