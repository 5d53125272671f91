package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

var subTestCommand = &command{
	path:     "sub test",
	args:     []string{"subscription-id"},
	synopsis: "sub test <subscription-id>",
	about: "Sends a kurier.test event through the subscription at once, as its deliveries go\n" +
		"(a ping's GET, a payload's signed POST in its format), and prints how the receiver\n" +
		"answered: its status, how long it took and the start of its answer. It works on a\n" +
		"switched-off subscription too, to check a fix before sub activate; it changes no\n" +
		"state, and the delivery log shows it with the outcome test. Queue subscriptions\n" +
		"make no requests: refused.",
	setup: func(*flag.FlagSet) runFunc {
		return func(ctx context.Context, s *session, args []string) error {
			api, err := s.api()
			if err != nil {
				return err
			}
			resp, err := api.SendTestEvent(ctx, &adminv1.SendTestEventRequest{SubscriptionId: args[0]})
			if err != nil {
				return err
			}
			return s.out.tested(resp)
		}
	},
}

// tested shows a test event's request and the receiver's answer, whose
// control characters (but line breaks and tabs) are blanked: a receiver
// must not drive the terminal.
func (p *printer) tested(resp *adminv1.SendTestEventResponse) error {
	if p.format == "json" {
		return p.json(resp)
	}
	took := resp.GetLatency().AsDuration().Round(100 * time.Microsecond)
	answer := fmt.Sprintf("%d in %v", resp.GetStatus(), took)
	if resp.GetError() != "" {
		answer = fmt.Sprintf("no answer after %v: %s", took, resp.GetError())
	}
	if _, err := fmt.Fprintf(p.w, "%s %s\n%s (event %s)\n", resp.GetMethod(), resp.GetUrl(), answer, resp.GetEventId()); err != nil {
		return err
	}
	body := strings.TrimRight(strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f {
			return ' '
		}
		return r
	}, resp.GetResponse()), "\n")
	if body == "" {
		return nil
	}
	_, err := fmt.Fprintf(p.w, "\n%s\n", body)
	return err
}
