package main

import (
	"context"
	"flag"
	"fmt"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

var queueCommands = []*command{
	{
		path:     "queue list",
		synopsis: "queue list --org <org-id>",
		about: "Lists an organisation's pull queues, oldest first, with the messages each holds\n" +
			"and the age of its oldest. Queues are made through the queue API (POST /api/queues).",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` whose queues to list (required)")
			return func(ctx context.Context, s *session, _ []string) error {
				if *org == "" {
					return usageErrorf("queue list needs --org <org-id>")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.ListQueues(ctx, &adminv1.ListQueuesRequest{OrgId: *org})
				if err != nil {
					return err
				}
				return s.out.listing(len(resp.GetQueues()), false, "queues",
					fmt.Sprintf("Org %s has no queues; a partner key makes one with POST /api/queues.", *org),
					func() error { return s.out.queues(resp, resp.GetQueues()...) })
			}
		},
	},
	{
		path:     "queue delete",
		args:     []string{"queue-id"},
		synopsis: "queue delete --org <org-id> <queue-id>",
		about:    "Deletes a queue with all its messages. There is no undo.",
		setup: func(fs *flag.FlagSet) runFunc {
			org := fs.String("org", "", "the `org-id` the queue belongs to (required)")
			return func(ctx context.Context, s *session, args []string) error {
				if *org == "" {
					return usageErrorf("queue delete needs --org <org-id>")
				}
				api, err := s.api()
				if err != nil {
					return err
				}
				resp, err := api.DeleteQueue(ctx, &adminv1.DeleteQueueRequest{OrgId: *org, QueueId: args[0]})
				if err != nil {
					return err
				}
				if s.out.format == "json" {
					return s.out.json(resp)
				}
				_, err = fmt.Fprintf(s.out.w, "Deleted queue %s.\n", args[0])
				return err
			}
		},
	},
}
